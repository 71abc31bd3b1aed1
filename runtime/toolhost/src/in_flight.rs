//! The host's bound on calls in flight: a counting semaphore every call holds a permit
//! of from its start to its answer.
//!
//! Why here and not in the caller: the bound protects the engine's instance pool
//! ([`crate::engine::MAX_CALLS_IN_FLIGHT`] is derived from its size), so the host that
//! owns the pool owns the bound, whoever calls it. Blocking on purpose: calls are
//! synchronous, and async callers already run them in `spawn_blocking`.
//!
//! Owns: [`CallsInFlight`] and its permits. Does not own: what a call does.

use std::sync::{Condvar, Mutex, MutexGuard};

/// A counting semaphore over calls.
#[derive(Debug)]
pub(crate) struct CallsInFlight {
    running: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// One call's permit; dropping it lets the next waiting call go.
#[derive(Debug)]
pub(crate) struct Permit<'a>(&'a CallsInFlight);

impl CallsInFlight {
    pub fn new(max: usize) -> CallsInFlight {
        CallsInFlight {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Waits until fewer than `max` calls run, then counts this one.
    pub fn acquire(&self) -> Permit<'_> {
        let mut running = self.lock();
        while *running >= self.max {
            running = self
                .freed
                .wait(running)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        Permit(self)
    }

    /// Calls running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        *self.lock()
    }

    /// The count stays right even if a thread panicked holding the lock: it only
    /// ever changes by one under it.
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.lock() -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn no_more_than_max_calls_run_at_once_and_all_finish() {
        let bound = Arc::new(CallsInFlight::new(3));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (bound, peak) = (bound.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _permit = bound.acquire();
                    peak.fetch_max(bound.running(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(bound.running(), 0, "every permit came back");
    }
}
