//! The threads that run tool calls, kept between calls.
//!
//! Why: a call that may wait where the watchdog's signal cannot reach (a custom tool's
//! WASI poll, an `exec`), or that comes from a thread driving async tasks, runs off the
//! caller's thread so the caller can walk away at the wall-clock limit even when the
//! guest is blocked in a host call (see `placement`; the standard
//! tools run on the caller's thread). Spawning a thread per
//! call (and tearing it down) cost more than the rest of a small call together, so idle
//! workers wait for the next call instead. Nothing of a call survives in its worker:
//! the store, the instance and the WASI context are created and dropped inside the job.
//!
//! A worker abandoned at the wall clock is busy until its guest stops; it rejoins the
//! idle list then, and meanwhile the next call gets another (new) worker. At most
//! [`MAX_IDLE`] idle workers are kept; dropping [`Workers`] ends the idle ones, and busy
//! ones end when their job does.
//!
//! Does not own the limits or the wait (see `call`).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};

/// One unit of work: a whole call, from store creation to its drop.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Idle workers kept; more than the calls a host runs at once only holds stacks.
const MAX_IDLE: usize = 8;

/// What a worker receives: the job and the sender that reaches it again, which it puts
/// back in the idle list when the job is done (so an idle worker's only sender is in
/// the list, and dropping the list ends it).
struct Message(Job, Sender<Message>);
type IdleList = Mutex<Vec<Sender<Message>>>;

pub(crate) struct Workers {
    idle: Arc<IdleList>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

impl Workers {
    pub(crate) fn new() -> Workers {
        Workers {
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `job` on an idle worker, or on a new one when none is idle.
    pub(crate) fn submit(&self, mut job: Job) -> std::io::Result<()> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(tx) = idle else { break };
            match tx.send(Message(job, tx.clone())) {
                Ok(()) => return Ok(()),
                // The worker is gone (it cannot be, while its sender was idle, unless
                // its thread died): take the job back and try the next one.
                Err(mpsc::SendError(Message(j, _))) => job = j,
            }
        }
        let (tx, rx) = mpsc::channel::<Message>();
        let idle = Arc::downgrade(&self.idle);
        std::thread::Builder::new()
            .name("ssr-tool-call".into())
            .spawn(move || work(rx, idle))?;
        tx.send(Message(job, tx.clone()))
            .map_err(|_| std::io::Error::other("the new tool worker exited at once"))
    }
}

fn work(rx: Receiver<Message>, idle: Weak<IdleList>) {
    // The wall-clock watchdog signals a worker blocked in a host call; the mask this
    // thread inherited from its creator may block that signal.
    crate::watchdog::unblock_signal_here();
    while let Ok(Message(job, tx)) = rx.recv() {
        job();
        let Some(list) = idle.upgrade() else { return };
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() >= MAX_IDLE {
            return;
        }
        list.push(tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn workers_are_reused_and_end_with_the_pool() {
        let workers = Workers::new();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for _ in 0..3 {
            let tx = tx.clone();
            workers
                .submit(Box::new(move || {
                    let _ = tx.send(std::thread::current().id());
                }))
                .unwrap();
            threads.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
            // Wait for the worker to rejoin the idle list before the next call.
            for _ in 0..500 {
                if !workers.idle.lock().unwrap().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(
            threads.iter().all(|t| *t == threads[0]),
            "one worker served all calls"
        );
        assert_eq!(workers.idle.lock().unwrap().len(), 1);
        let weak = Arc::downgrade(&workers.idle);
        drop(workers);
        assert!(
            weak.upgrade().is_none(),
            "the idle list is gone with the pool"
        );
    }

    #[test]
    fn a_busy_worker_does_not_block_the_next_call() {
        let workers = Workers::new();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        workers
            .submit(Box::new(move || {
                let _ = release_rx.recv_timeout(Duration::from_secs(5));
            }))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        workers
            .submit(Box::new(move || {
                let _ = tx.send(());
            }))
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        let _ = release_tx.send(());
    }
}
