//! Cooperative shutdown: one [`ShutdownHandle`] (held by whoever listens for Ctrl-C)
//! and any number of cloned [`Shutdown`] receivers in tasks.
//!
//! Owns: the "stop now" signal. Does not own: what stopping means for a task; episodes
//! end with `Cancelled` and are not recorded, so a resumed run runs them again.

use tokio::sync::watch;

/// Sends the stop signal.
#[derive(Debug)]
pub struct ShutdownHandle {
    tx: watch::Sender<bool>,
}

/// Receives the stop signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new signal pair.
pub fn channel() -> (ShutdownHandle, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownHandle { tx }, Shutdown { rx })
}

impl ShutdownHandle {
    pub fn request(&self) {
        let _ = self.tx.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// A receiver that is never signalled (tests, one-off calls).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever so `requested` pends instead of returning.
        std::mem::forget(tx);
        Shutdown { rx }
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown is requested; pends forever once the handle is gone.
    pub async fn requested(&self) {
        let mut rx = self.rx.clone();
        if *rx.borrow() {
            return;
        }
        loop {
            if rx.changed().await.is_err() {
                // Handle dropped without a request: nobody can stop us any more.
                std::future::pending::<()>().await;
            }
            if *rx.borrow() {
                return;
            }
        }
    }
}
