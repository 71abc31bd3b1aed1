//! The one wasmtime [`Engine`] of a host: pooling allocator, epoch interruption, and the
//! ticker thread that advances the epoch and runs the wall-clock [`Watchdog`]'s checks.
//!
//! Does not own per-call deadlines (see `call`): it only provides the clock they count.

use crate::error::ToolHostError;
use crate::watchdog::Watchdog;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. The CPU limit is checked at this granularity; 2 ms
/// keeps the overshoot small while the ticker costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Largest linear memory any tool may have; the policy's `memory_bytes` is enforced
/// per call below it. The pooling allocator reserves address space (not memory) for
/// this many bytes per slot.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Per memory and table, how much is reset in place (kept resident) when a call's
/// instance goes back to the pool; beyond it, pages are discarded.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Concurrent instances the pool holds: calls in flight plus calls abandoned at their
/// wall-clock limit that are still unwinding.
const POOL_COMPONENT_INSTANCES: u32 = 64;

/// Calls a host runs at once (`in_flight`): three quarters of the pool, leaving a
/// quarter for calls abandoned at their wall-clock limit while they unwind, so a call
/// beyond the bound waits for a permit instead of failing on an exhausted pool.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = POOL_COMPONENT_INSTANCES as usize * 3 / 4;

/// The engine and its epoch ticker; dropping it stops the ticker.
pub struct ToolEngine {
    engine: Engine,
    watchdog: Arc<Watchdog>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ToolEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolEngine").finish_non_exhaustive()
    }
}

impl ToolEngine {
    pub fn new() -> Result<ToolEngine, ToolHostError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES)
            .total_core_instances(POOL_COMPONENT_INSTANCES * 8)
            .total_memories(POOL_COMPONENT_INSTANCES * 2)
            .total_tables(POOL_COMPONENT_INSTANCES * 8)
            .max_memory_size(MAX_MEMORY_BYTES)
            // A fresh instance per call must not mean fresh page faults per call: the
            // pages a call dirtied are reset to the memory image with `memset` (only
            // those, found with the PAGEMAP_SCAN ioctl where the kernel has it) and stay
            // mapped, instead of being discarded with `madvise` and faulted back in by
            // the next call. Isolation is the same: every byte is back to the image.
            .pagemap_scan(Enabled::Auto);
        // Without PAGEMAP_SCAN, keeping memory resident means a `memset` of the whole
        // kept size on every call (about as slow as the faults it saves): only with it.
        if pagemap_scan_available() {
            pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(KEEP_RESIDENT_BYTES);
        }
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| ToolHostError::Engine(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let watchdog = Arc::new(Watchdog::default());
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            let watchdog = watchdog.clone();
            std::thread::Builder::new()
                .name("ssr-epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                        watchdog.check(std::time::Instant::now());
                    }
                })
                .map_err(|e| ToolHostError::Engine(format!("epoch ticker thread: {e}")))?
        };
        Ok(ToolEngine {
            engine,
            watchdog,
            stop,
            ticker: Some(ticker),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn watchdog(&self) -> &Arc<Watchdog> {
        &self.watchdog
    }

    /// A key that changes whenever a precompiled component from another engine
    /// configuration or wasmtime version could not be loaded (or, worse, would be
    /// loaded wrongly) by this one: wasmtime's own compatibility hash plus this crate's
    /// version.
    pub fn compatibility_key(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// Whether the kernel has the PAGEMAP_SCAN ioctl (Linux 6.7 and later) and this process
/// may read its page map; wasmtime's `Enabled::Auto` probes the same at run time.
fn pagemap_scan_available() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    version >= (6, 7) && std::fs::File::open("/proc/self/pagemap").is_ok()
}

impl Drop for ToolEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
