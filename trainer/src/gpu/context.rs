//! The device context: probing for CUDA without panicking, opening a device, its stream
//! and cuBLAS handle, loading compiled kernel modules, and host/device copies.
//!
//! Does not own: what any kernel computes (the op modules) or how sources compile
//! (`compile.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};

use super::compile::{self, Kernel, KernelSource};
use super::error::GpuError;

/// Which CUDA libraries the dynamic loader can find on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibraryProbe {
    pub driver: bool,
    pub nvrtc: bool,
    pub cublas: bool,
    pub nccl: bool,
}

impl LibraryProbe {
    /// Looks for each library without resolving any symbol.
    pub fn run() -> Self {
        // SAFETY: each `is_culib_present` only tries `libloading::Library::new` on the
        // library's candidate names and drops the handle; it calls no CUDA function. The
        // "unsafe" is libloading's: running a library's initialisers, which the CUDA
        // libraries make safe to do.
        unsafe {
            LibraryProbe {
                driver: cudarc::driver::sys::is_culib_present(),
                nvrtc: cudarc::nvrtc::sys::is_culib_present(),
                cublas: cudarc::cublas::sys::is_culib_present(),
                nccl: cudarc::nccl::sys::is_culib_present(),
            }
        }
    }

    /// `Err(NoGpu)` naming the first missing library the compute path needs (NCCL is only
    /// needed for data parallelism and is checked by the communicator).
    pub fn require_compute(&self) -> Result<(), GpuError> {
        let missing = [
            ("driver (libcuda)", self.driver),
            ("NVRTC (libnvrtc)", self.nvrtc),
            ("cuBLAS (libcublas)", self.cublas),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n)
        .collect::<Vec<_>>();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(GpuError::NoGpu {
                reason: format!("CUDA library not found: {}", missing.join(", ")),
            })
        }
    }
}

/// The name the emulated CUDA device (gpu-emu/, a CPU stand-in for CI) reports. It is
/// never a GPU: `--device auto` does not select it and the benchmarks refuse it.
pub const EMULATED_DEVICE_NAME: &str = "ssr-emu";

/// Facts about the opened device that the benchmarks and launch code read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
    pub total_memory: usize,
}

/// An opened GPU: context, one stream, a cuBLAS handle on that stream, and the loaded
/// kernel modules. All work is issued on the one stream, so ops are ordered without events.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    info: DeviceInfo,
    arch: String,
    cache_dir: PathBuf,
    modules: Mutex<HashMap<KernelSource, Arc<CudaModule>>>,
    functions: Mutex<HashMap<Kernel, CudaFunction>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("info", &self.info)
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens device 0. `Err(GpuError::NoGpu)` when there is no driver, library or device.
    pub fn open() -> Result<Gpu, GpuError> {
        Self::open_ordinal(0)
    }

    /// Opens device `ordinal` (one process per GPU under data parallelism).
    pub fn open_ordinal(ordinal: usize) -> Result<Gpu, GpuError> {
        LibraryProbe::run().require_compute()?;
        // cudarc resolves every symbol of the configured CUDA version when it first loads a
        // library and panics if one is missing (a driver older than CUDA 13.0). Turn that
        // into the typed error instead of taking the process down.
        let opened = std::panic::catch_unwind(|| Self::open_unchecked(ordinal));
        match opened {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "CUDA library failed to load".to_string());
                Err(GpuError::NoGpu { reason: msg })
            }
        }
    }

    fn open_unchecked(ordinal: usize) -> Result<Gpu, GpuError> {
        let count = match CudaContext::device_count() {
            Ok(n) => n,
            Err(e) => {
                return Err(GpuError::NoGpu {
                    reason: format!("cuInit/cuDeviceGetCount failed: {e}"),
                });
            }
        };
        if count <= 0 {
            return Err(GpuError::NoGpu {
                reason: "the CUDA driver reports no device".into(),
            });
        }
        if ordinal >= count as usize {
            return Err(GpuError::NoGpu {
                reason: format!("device {ordinal} requested, {count} present"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(GpuError::driver("open context"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(GpuError::cublas("create handle"))?;
        let cc = ctx
            .compute_capability()
            .map_err(GpuError::driver("compute capability"))?;
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(GpuError::driver("multiprocessor count"))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().map_err(GpuError::driver("device name"))?,
            compute_capability: cc,
            multiprocessors: sms,
            total_memory: ctx.total_mem().map_err(GpuError::driver("total memory"))?,
        };
        // The emulator runs real NVRTC PTX but reports itself as sm_90: its PTX goes to a
        // folder of its own so an emulated run never fills a real GPU's kernel cache.
        let mut cache_dir = compile::default_cache_dir();
        if info.name == EMULATED_DEVICE_NAME {
            cache_dir = cache_dir.join(EMULATED_DEVICE_NAME);
        }
        Ok(Gpu {
            arch: compile::arch_flag(cc.0, cc.1),
            ctx,
            stream,
            blas,
            info,
            cache_dir,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// True on the emulated device (gpu-emu/): correct results, no GPU performance.
    pub fn is_emulated(&self) -> bool {
        self.info.name == EMULATED_DEVICE_NAME
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub(crate) fn blas(&self) -> &CudaBlas {
        &self.blas
    }

    /// The NVRTC architecture flag in use (e.g. `--gpu-architecture=sm_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The kernel function, compiling (or reading from the cache) and loading its module on
    /// first use.
    pub fn function(&self, k: Kernel) -> Result<CudaFunction, GpuError> {
        if let Some(f) = lock(&self.functions).get(&k) {
            return Ok(f.clone());
        }
        let module = self.module(k.source())?;
        let f = module
            .load_function(k.symbol())
            .map_err(GpuError::driver("load kernel function"))?;
        lock(&self.functions).insert(k, f.clone());
        Ok(f)
    }

    /// Compiles and loads every kernel source now (so benchmarks keep NVRTC out of timings).
    pub fn warm_up(&self) -> Result<(), GpuError> {
        for s in KernelSource::ALL {
            self.module(s)?;
        }
        Ok(())
    }

    fn module(&self, src: KernelSource) -> Result<Arc<CudaModule>, GpuError> {
        if let Some(m) = lock(&self.modules).get(&src) {
            return Ok(m.clone());
        }
        let ptx = compile::compile(src, &self.arch, &self.cache_dir)?;
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(GpuError::driver("load module"))?;
        lock(&self.modules).insert(src, m.clone());
        Ok(m)
    }

    /// Copies a host slice to a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
        self.stream
            .clone_htod(host)
            .map_err(GpuError::driver("copy to device"))
    }

    /// Copies a device buffer to a new host vector (synchronises the stream).
    pub fn download<T: DeviceRepr>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>, GpuError> {
        self.stream
            .clone_dtoh(dev)
            .map_err(GpuError::driver("copy to host"))
    }

    /// A zero-filled device buffer of `n` elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>, GpuError> {
        self.stream
            .alloc_zeros(n)
            .map_err(GpuError::driver("allocate"))
    }

    /// Makes this device's context current on the calling thread. Callers that may run on
    /// another thread than the one that opened the device (tokio blocking threads, a
    /// trainer behind a mutex) call it first: cuBLAS through the raw handle uses the
    /// thread's current context.
    pub fn bind_to_thread(&self) -> Result<(), GpuError> {
        self.ctx
            .bind_to_thread()
            .map_err(GpuError::driver("bind context to thread"))
    }

    /// Waits for all work issued so far.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(GpuError::driver("synchronize"))
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), GpuError> {
        self.ctx
            .mem_get_info()
            .map_err(GpuError::driver("memory info"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means another thread panicked mid-insert of a complete value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
