//! One tool invocation: a fresh [`Store`] with the call's WASI context and grants, its
//! limits, and the thread that lets the host walk away at the wall-clock limit.
//!
//! Limits and how each is enforced:
//! - CPU: the engine's epoch ticks every [`crate::engine::EPOCH_TICK`]; the deadline
//!   callback compares the guest's own time (wall time minus time spent in host calls,
//!   measured by a call hook) with `cpu_ms`, so a long `exec` does not count. Wall time
//!   also counts waiting for a core, so on a loaded machine it can pass the limit while
//!   the guest has not: the stop is then confirmed with the thread's CPU clock (also an
//!   upper bound of the guest's time, since it includes host calls on this thread), read
//!   from the first tick on, so calls shorter than a tick never pay for it.
//! - Memory: a [`ResourceLimiter`] refuses growth beyond `memory_bytes` by trapping.
//! - Output: stdout/stderr are [`BoundedOutput`]s; the result text is cut by the caller.
//! - Host calls: the call hook counts every host call (WASI included).
//! - Resource table: [`ResourceTable::set_max_capacity`].
//! - Wall clock: past `wall_ms` the [`Watchdog`] sets the call's cancel flag, which traps
//!   the guest at its next epoch tick or host-call boundary, and signals the thread
//!   running the store on every tick, so a system call it is blocked in returns `EINTR`.
//!   Where the call runs ([`Placement`]): on the caller's thread when nothing the guest
//!   can do waits beyond what the signal interrupts (the hand-off to another thread cost
//!   a fifth of a small call); otherwise on a worker thread (kept between calls, see
//!   `workers`; the store is created and dropped inside the job), and at `wall_ms` the
//!   caller stops waiting and returns the limit error while the worker unwinds. Host
//!   calls are themselves bounded (`exec` by the remaining wall time).
//!
//! Does not own the grants' semantics (see `grants`, `exec`) or tool loading.

use crate::bindings::ssr::tool::exec::ExecResult;
use crate::bindings::{self, Host_Pre as HostPre};
use crate::error::LimitKind;
use crate::exec::ExecGrant;
use crate::grants::WorkspaceGrant;
use crate::output::BoundedOutput;
use crate::policy::CallLimits;
use crate::watchdog::{Watchdog, thread_cpu_time};
use crate::workers::Workers;
use crate::{Description, ToolError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Why the store stopped the guest, recorded before the trap is raised.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    pub kind: LimitKind,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} limit reached")]
struct LimitTrap(LimitKind);

struct Meter {
    started: Instant,
    deadline: Instant,
    cpu_limit: Duration,
    host_time: Duration,
    host_entered: Option<Instant>,
    host_calls: u64,
    max_host_calls: u64,
    cancelled: Arc<AtomicBool>,
    stop: Option<Stop>,
    /// At the first epoch tick: the thread's CPU clock and the guest time so far.
    cpu_base: Option<(Duration, Duration)>,
}

impl Meter {
    fn stop(&mut self, kind: LimitKind, detail: String) -> wasmtime::Error {
        if self.stop.is_none() {
            self.stop = Some(Stop { kind, detail });
        }
        wasmtime::Error::new(LimitTrap(kind))
    }

    fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_time)
    }

    /// The guest's time as the CPU limit counts it: the smaller of two upper bounds,
    /// wall time minus host calls, and (from the first tick on) the thread's CPU time.
    fn cpu_time(&mut self) -> Duration {
        let guest = self.guest_time();
        match self.cpu_base {
            None => {
                self.cpu_base = Some((thread_cpu_time(), guest));
                guest
            }
            Some(_) if guest <= self.cpu_limit => guest,
            Some((base_cpu, base_guest)) => {
                let cpu = thread_cpu_time().saturating_sub(base_cpu) + base_guest;
                cpu.min(guest)
            }
        }
    }
}

struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    hit: Option<String>,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(format!(
                "linear memory would grow from {current} to {desired} bytes, over the limit of {}",
                self.memory_bytes
            ));
            return Err(wasmtime::Error::new(LimitTrap(LimitKind::Memory)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(format!(
                "a table would grow from {current} to {desired} elements, over the limit of {}",
                self.table_elements
            ));
            return Err(wasmtime::Error::new(LimitTrap(LimitKind::Memory)));
        }
        Ok(true)
    }
}

/// The data of one call's store.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    workspace: Option<WorkspaceGrant>,
    exec: Option<ExecGrant>,
    meter: Meter,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::ssr::tool::types::Host for CallState {}

impl bindings::ssr::tool::workspace::Host for CallState {
    fn write_file(
        &mut self,
        path: String,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ToolError>> {
        Ok(match &self.workspace {
            Some(w) => w.write_file(&path, &contents),
            None => Err(no_write_grant(&path)),
        })
    }

    fn remove_file(&mut self, path: String) -> wasmtime::Result<Result<(), ToolError>> {
        Ok(match &self.workspace {
            Some(w) => w.remove_file(&path),
            None => Err(no_write_grant(&path)),
        })
    }
}

fn no_write_grant(path: &str) -> ToolError {
    ToolError::PermissionDenied(format!(
        "{path}: this tool has no write access to the repository"
    ))
}

impl bindings::ssr::tool::exec::Host for CallState {
    fn run(
        &mut self,
        command: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<ExecResult, ToolError>> {
        let Some(grant) = &self.exec else {
            return Ok(Err(ToolError::PermissionDenied(
                "this tool may not run commands in this role".into(),
            )));
        };
        grant
            .run(&command, timeout_ms, self.meter.deadline)
            .map_err(wasmtime::Error::new)
    }
}

/// Everything one call needs, built by the host from the grant and the episode.
pub(crate) struct CallSetup {
    pub wasi: WasiCtx,
    pub workspace: Option<WorkspaceGrant>,
    pub exec: Option<ExecGrant>,
    pub limits: CallLimits,
    pub stdout: BoundedOutput,
    pub stderr: BoundedOutput,
}

/// What to invoke.
pub(crate) enum Invocation {
    Describe,
    Call(String),
}

pub(crate) enum Answer {
    Described(Description),
    Called(Result<String, ToolError>),
}

/// How a call ended, before the host turns it into its public types.
pub(crate) struct Finished {
    pub answer: Result<Answer, Failure>,
    pub stdout: BoundedOutput,
    pub stderr: BoundedOutput,
    pub elapsed: Duration,
    pub profile: CallProfile,
}

/// Where the time of one call went, phase by phase (for `ssr bench tools` and
/// profiling; never needed to use a tool). Phases the call did not reach stay zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallProfile {
    /// Building the call's WASI context and grants: preopens, protected set, limits.
    pub setup: Duration,
    /// From handing the call to its worker thread until the worker began it.
    pub dispatch: Duration,
    /// Creating the store and instantiating the component (from the pool).
    pub instantiate: Duration,
    /// The guest's export (`call` or `describe`), host calls included.
    pub run: Duration,
    /// Of `run`: time inside host calls (WASI and `ssr:tool` imports)...
    pub host: Duration,
    /// ...and how many there were.
    pub host_calls: u64,
    /// Dropping the store (the instance goes back to the pool) and handing the answer
    /// back to the caller.
    pub teardown: Duration,
    /// The whole call as the caller saw it, setup included.
    pub total: Duration,
    /// The call ran on the caller's thread, without a hand-off to a worker.
    pub inline: bool,
    /// CPU time of the caller's thread over the whole call (filled by
    /// `crate::ToolHost::call` with a profile); when `inline`, all of the call's work.
    pub caller_cpu: Duration,
    /// CPU time of the thread that ran the store until it answered: with `inline` part of
    /// `caller_cpu`, otherwise the worker's (its store drop after answering excluded).
    pub worker_cpu: Duration,
}

pub(crate) enum Failure {
    Limit(Stop),
    Trap(String),
}

/// Where a call runs (see `placement` for the choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the caller's thread: no hand-off, the watchdog enforces the wall clock.
    Inline,
    /// On a worker thread the caller walks away from at the wall clock.
    Worker,
}

/// What a call runs with: the engine, its watchdog, the worker pool.
#[derive(Clone, Copy)]
pub(crate) struct Runner<'a> {
    pub engine: &'a Engine,
    pub watchdog: &'a Arc<Watchdog>,
    pub workers: &'a Workers,
}

type Reply = (Result<Answer, Failure>, CallProfile);

/// Runs one invocation where `placement` says, for at most `limits.wall_ms` from
/// `started` (when the caller began the call, before its setup). `measure_cpu`: fill the
/// profile's worker CPU time (a system call on each side).
pub(crate) fn run(
    runner: Runner<'_>,
    pre: &HostPre<CallState>,
    setup: CallSetup,
    invocation: Invocation,
    started: Instant,
    placement: Placement,
    measure_cpu: bool,
) -> Finished {
    let setup_done = Instant::now();
    let wall = Duration::from_millis(setup.limits.wall_ms);
    let cancelled = Arc::new(AtomicBool::new(false));
    let stdout = setup.stdout.clone();
    let stderr = setup.stderr.clone();
    let job = Job {
        engine: runner.engine.clone(),
        watchdog: runner.watchdog.clone(),
        pre: pre.clone(),
        setup,
        invocation,
        started,
        setup_done,
        cancelled: cancelled.clone(),
        // Inline, the caller's own measure covers the store's work: no second one.
        measure_cpu: measure_cpu && placement == Placement::Worker,
    };
    let (answer, mut profile) = match placement {
        Placement::Inline => {
            let mut reply = None;
            // A panic in a host call (wasmtime-wasi's `block_on` on a thread that drives
            // async tasks, when `CallOptions::blocking_thread` is misused) becomes the call's
            // error instead of the caller's panic.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.invoke(|r| reply = Some(r));
            }));
            match (ran, reply) {
                (Ok(()), Some(r)) => r,
                (Err(panic), _) => (
                    Err(Failure::Trap(format!(
                        "the call panicked on the caller's thread ({}); a call on a thread \
                         that drives async tasks must use `ToolHost::call`",
                        panic_message(panic.as_ref())
                    ))),
                    CallProfile::default(),
                ),
                (Ok(()), None) => (
                    Err(Failure::Trap("the call ended without an answer".into())),
                    CallProfile::default(),
                ),
            }
        }
        Placement::Worker => on_worker(runner.workers, job, wall, setup_done - started),
    };
    let answer = match answer {
        // The same words whichever side noticed the deadline first.
        Err(Failure::Limit(stop)) if stop.kind == LimitKind::WallClock => {
            Err(Failure::Limit(Stop {
                kind: LimitKind::WallClock,
                detail: format!("the call ran past its {} ms", wall.as_millis()),
            }))
        }
        other => other,
    };
    let elapsed = started.elapsed();
    profile.inline = placement == Placement::Inline;
    profile.setup = setup_done - started;
    profile.total = elapsed;
    // What the phases do not account for: dropping the store (inline), the channel and
    // waking up (worker).
    profile.teardown = elapsed
        .saturating_sub(profile.setup + profile.dispatch + profile.instantiate + profile.run);
    Finished {
        answer,
        stdout,
        stderr,
        elapsed,
        profile,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Hands `job` to a worker and waits for its answer until the wall clock runs out.
fn on_worker(workers: &Workers, job: Job, wall: Duration, spent: Duration) -> Reply {
    let cancelled = job.cancelled.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let submitted = workers.submit(Box::new(move || {
        job.invoke(|r| {
            let _ = tx.send(r);
        });
    }));
    let answer = match submitted {
        Err(e) => Err(Failure::Trap(format!(
            "could not start a thread for the call: {e}"
        ))),
        Ok(_) => match rx.recv_timeout(wall.saturating_sub(spent)) {
            Ok(reply) => return reply,
            Err(RecvTimeoutError::Disconnected) => Err(Failure::Trap(
                "the call's worker thread ended without an answer (a host fault)".into(),
            )),
            Err(RecvTimeoutError::Timeout) => {
                // The guest is abandoned: it traps at its next host-call boundary or
                // epoch tick, the watchdog interrupts a system call it is blocked in,
                // and its host calls are bounded by the same deadline.
                cancelled.store(true, Ordering::SeqCst);
                Err(Failure::Limit(Stop {
                    kind: LimitKind::WallClock,
                    detail: String::new(),
                }))
            }
        },
    };
    (answer, CallProfile::default())
}

/// One call's work, from store creation to its drop, on whichever thread runs it.
struct Job {
    engine: Engine,
    watchdog: Arc<Watchdog>,
    pre: HostPre<CallState>,
    setup: CallSetup,
    invocation: Invocation,
    started: Instant,
    setup_done: Instant,
    cancelled: Arc<AtomicBool>,
    measure_cpu: bool,
}

impl Job {
    /// Runs the call and gives `reply` the answer before the store is dropped (a
    /// worker's caller does not wait for the drop).
    fn invoke(self, reply: impl FnOnce(Reply)) {
        let began = Instant::now();
        let cpu_began = if self.measure_cpu {
            thread_cpu_time()
        } else {
            Duration::ZERO
        };
        let limits = self.setup.limits;
        let deadline = self.started + Duration::from_millis(limits.wall_ms);
        let _watch = self.watchdog.watch(deadline, self.cancelled.clone());
        let mut profile = CallProfile {
            dispatch: began.saturating_duration_since(self.setup_done),
            ..CallProfile::default()
        };
        let state = CallState::new(
            self.setup,
            Meter {
                started: began,
                deadline,
                cpu_limit: Duration::from_millis(limits.cpu_ms),
                host_time: Duration::ZERO,
                host_entered: None,
                host_calls: 0,
                max_host_calls: limits.host_calls,
                cancelled: self.cancelled,
                stop: None,
                cpu_base: None,
            },
        );
        let mut store = metered_store(&self.engine, state);

        let pre = self.pre;
        let invocation = self.invocation;
        let result = (|| -> wasmtime::Result<Answer> {
            let instance = pre.instantiate(&mut store)?;
            let instantiated = Instant::now();
            profile.instantiate = instantiated - began;
            let tool = instance.ssr_tool_tool();
            let answer = match invocation {
                Invocation::Describe => Answer::Described(tool.call_describe(&mut store)?),
                Invocation::Call(args) => Answer::Called(tool.call_call(&mut store, &args)?),
            };
            profile.run = instantiated.elapsed();
            Ok(answer)
        })();
        profile.host = store.data().meter.host_time;
        profile.host_calls = store.data().meter.host_calls;
        if self.measure_cpu {
            profile.worker_cpu = thread_cpu_time().saturating_sub(cpu_began);
        }
        // Answer first: on a worker, dropping the store (the instance's memory goes
        // back to the pool) is not the caller's wait.
        reply((classify(result, &store, &limits), profile));
        drop(store);
    }
}

/// A store for one call with its limits wired in: the memory limiter, the epoch
/// callback (wall-clock cancel, CPU limit) and the call hook (host-call count and time,
/// cancel at host-call boundaries).
fn metered_store(engine: &Engine, state: CallState) -> Store<CallState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let m = &mut ctx.data_mut().meter;
        if m.cancelled.load(Ordering::Relaxed) {
            return Err(m.stop(
                LimitKind::WallClock,
                "stopped at the wall-clock limit".into(),
            ));
        }
        let guest = m.cpu_time();
        if guest > m.cpu_limit {
            let detail = format!(
                "ran {} ms of guest code, limit {} ms",
                guest.as_millis(),
                m.cpu_limit.as_millis()
            );
            return Err(m.stop(LimitKind::Cpu, detail));
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store.call_hook(|mut ctx, hook| {
        let m = &mut ctx.data_mut().meter;
        match hook {
            CallHook::CallingHost => {
                if m.cancelled.load(Ordering::Relaxed) {
                    return Err(m.stop(
                        LimitKind::WallClock,
                        "stopped at the wall-clock limit before a host call".into(),
                    ));
                }
                m.host_calls += 1;
                if m.host_calls > m.max_host_calls {
                    let detail = format!("more than {} host calls", m.max_host_calls);
                    return Err(m.stop(LimitKind::HostCalls, detail));
                }
                m.host_entered = Some(Instant::now());
            }
            CallHook::ReturningFromHost => {
                if let Some(t) = m.host_entered.take() {
                    m.host_time += t.elapsed();
                }
                if m.cancelled.load(Ordering::Relaxed) {
                    return Err(m.stop(
                        LimitKind::WallClock,
                        "stopped at the wall-clock limit during a host call".into(),
                    ));
                }
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
        }
        Ok(())
    });
    store
}

impl CallState {
    /// The state of one call: its WASI context and grants from `setup`, its resource
    /// table and memory limits, and `meter`.
    fn new(setup: CallSetup, meter: Meter) -> CallState {
        let limits = setup.limits;
        let mut table = ResourceTable::new();
        table.set_max_capacity(usize::try_from(limits.table_entries).unwrap_or(usize::MAX));
        CallState {
            wasi: setup.wasi,
            table,
            limiter: CallLimiter {
                memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                table_elements: 1 << 20,
                hit: None,
            },
            workspace: setup.workspace,
            exec: setup.exec,
            meter,
        }
    }
}

/// Turns the export's result into the answer or the limit that stopped it.
fn classify(
    result: wasmtime::Result<Answer>,
    store: &Store<CallState>,
    limits: &CallLimits,
) -> Result<Answer, Failure> {
    match result {
        Ok(answer) => Ok(answer),
        Err(e) => {
            let data = store.data();
            if let Some(stop) = &data.meter.stop {
                return Err(Failure::Limit(stop.clone()));
            }
            if let Some(detail) = &data.limiter.hit {
                return Err(Failure::Limit(Stop {
                    kind: LimitKind::Memory,
                    detail: detail.clone(),
                }));
            }
            let message = format!("{e:#}");
            if message.contains("resource table has no free keys") {
                return Err(Failure::Limit(Stop {
                    kind: LimitKind::ResourceTable,
                    detail: format!("more than {} live resources", limits.table_entries),
                }));
            }
            Err(Failure::Trap(message))
        }
    }
}
