//! The wall-clock watchdog: stops a call's thread at its deadline, whether the guest is
//! running its own code or is blocked inside a host call, without a second thread per
//! call.
//!
//! Each running call registers its deadline, its cancel flag and the thread that runs
//! its store. The engine's epoch ticker (which wakes every [`crate::EPOCH_TICK`] anyway)
//! checks the registered calls; once a deadline has passed it sets the call's cancel
//! flag (the guest traps at its next epoch check or host-call boundary, see `call`) and,
//! on every tick until the call ends, sends the thread [`SIGNAL`]. The signal's handler
//! does nothing and is installed without `SA_RESTART`, so a system call the thread is
//! blocked in (opening or reading a FIFO the model made in the repository, say) returns
//! `EINTR`; the host call fails, and the call hook traps the guest on its way back.
//!
//! What a signal cannot interrupt is a host call that waits on another thread (a WASI
//! stream read done on tokio's blocking pool, a guest's `poll` on a clock): such a call
//! is only safe on a worker thread the caller can walk away from. `call` runs a call on
//! the caller's own thread only when its guest cannot wait like that (see
//! `placement`).
//!
//! Does not own the deadlines' values (the policy's `wall_ms`) or the trap (`call`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The signal that interrupts a blocked system call. `SIGURG` is ignored by default, so
/// a stray one harms nothing, and no library this host links uses it.
const SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn on_signal(_: libc::c_int) {}

/// Whether the interrupting signal's handler is (now) installed. Installs it on first
/// use, unless the process already handles the signal in its own way: then blocked
/// system calls cannot be interrupted and only worker threads are safe.
pub(crate) fn signal_available() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(install_handler)
}

fn install_handler() -> bool {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: sigaction with valid pointers; the handler is async-signal-safe (it
    // does nothing).
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(SIGNAL, std::ptr::null(), &mut old) != 0 {
            return false;
        }
        if old.sa_sigaction == handler {
            return true;
        }
        if old.sa_sigaction != libc::SIG_DFL {
            return false;
        }
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        // No SA_RESTART: the point is that a blocked system call returns EINTR.
        new.sa_flags = 0;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(SIGNAL, &new, std::ptr::null_mut()) == 0
    }
}

/// Whether the current thread would receive the signal (it is not blocked in the
/// thread's signal mask).
pub(crate) fn signal_unblocked_here() -> bool {
    // SAFETY: pthread_sigmask only reads the current mask into `current`.
    unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current) == 0
            && libc::sigismember(&current, SIGNAL) == 0
    }
}

/// Unblocks the signal on the current thread (worker threads inherit their creator's
/// mask, which may block it).
pub(crate) fn unblock_signal_here() {
    // SAFETY: a valid set holding one signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, SIGNAL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Consumes an instance of the signal sent to this thread but not yet delivered, so it
/// cannot interrupt a later, unrelated system call of the caller.
fn drain_pending_signal() {
    // SAFETY: valid sets and a zero timeout; the mask is restored as it was.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, SIGNAL);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == SIGNAL {}
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// The CPU time the current thread has used (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

struct Watched {
    id: u64,
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
    thread: libc::pthread_t,
    signals: u32,
    ticks_past: u32,
}

/// Ticks past the deadline with a signal on each; after them, one every this many.
const BACKOFF_TICKS: u32 = 50;

/// The calls being watched; shared by the host and its epoch ticker.
#[derive(Default)]
pub(crate) struct Watchdog {
    calls: Mutex<Vec<Watched>>,
    next_id: AtomicU64,
}

impl Watchdog {
    /// Watches the current thread until the guard drops: past `deadline`, `cancelled`
    /// is set and the thread is signalled on every tick.
    pub(crate) fn watch(&self, deadline: Instant, cancelled: Arc<AtomicBool>) -> WatchGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watched = Watched {
            id,
            deadline,
            cancelled,
            // SAFETY: always valid; the entry is removed (under the lock the ticker
            // signals under) before this thread can end.
            thread: unsafe { libc::pthread_self() },
            signals: 0,
            ticks_past: 0,
        };
        self.lock().push(watched);
        WatchGuard { dog: self, id }
    }

    /// One tick of the ticker thread.
    pub(crate) fn check(&self, now: Instant) {
        let mut calls = self.lock();
        for c in calls.iter_mut().filter(|c| now >= c.deadline) {
            c.cancelled.store(true, Ordering::SeqCst);
            c.ticks_past += 1;
            // Every tick at first (a signal can land just before the thread enters the
            // system call), then every [`BACKOFF_TICKS`]: a thread waiting where no
            // signal reaches (an abandoned worker in a WASI poll) is not woken 500
            // times a second for as long as it waits.
            let due = c.ticks_past <= BACKOFF_TICKS || c.ticks_past % BACKOFF_TICKS == 0;
            if due && signal_available() {
                // SAFETY: the thread is alive: its entry is removed under this lock
                // before the thread can return from the call.
                unsafe { libc::pthread_kill(c.thread, SIGNAL) };
                c.signals += 1;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends the watch of one call (on the thread that started it).
pub(crate) struct WatchGuard<'a> {
    dog: &'a Watchdog,
    id: u64,
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        let signalled = {
            let mut calls = self.dog.lock();
            match calls.iter().position(|c| c.id == self.id) {
                Some(i) => calls.swap_remove(i).signals > 0,
                None => false,
            }
        };
        if signalled {
            drain_pending_signal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_read_is_interrupted_at_the_deadline() {
        assert!(signal_available());
        let dog = Arc::new(Watchdog::default());
        let ticker = {
            let dog = dog.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    std::thread::sleep(Duration::from_millis(2));
                    dog.check(Instant::now());
                    if Arc::strong_count(&dog) == 1 {
                        return;
                    }
                }
            })
        };
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let cancelled = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (result, errno) = {
            let _guard = dog.watch(started + Duration::from_millis(50), cancelled.clone());
            // A blocking read with no data: only the signal ends it.
            let mut buf = [0u8; 1];
            // SAFETY: a valid fd and buffer.
            let r = unsafe {
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&reader),
                    buf.as_mut_ptr().cast(),
                    1,
                )
            };
            (r, std::io::Error::last_os_error().raw_os_error())
        };
        assert_eq!(result, -1);
        assert_eq!(errno, Some(libc::EINTR));
        assert!(cancelled.load(Ordering::SeqCst));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(dog);
        ticker.join().unwrap();
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let a = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_time() > a, "{x}");
    }
}
