//! A generation queue served by one thread that decodes every request in flight
//! together (continuous batching for a server: requests join the running batch between
//! steps and leave it when they end).
//!
//! Owns: [`Batcher`] (the queue, its worker thread and the thread's shutdown), the
//! admission bound (`max_batch`), and [`Pending`] (a caller's handle on its result).
//! Does not own: the batch itself (`infer::batch`), nor any async runtime: callers
//! wait on [`Pending::wait`] from a thread that may block (a server uses
//! `spawn_blocking`).
//!
//! Locking: the worker holds a read lock on the engine while its batch is non-empty
//! and releases it when the batch drains, so a writer (new weights after a training
//! step) waits for the sequences in flight, never swaps weights under them. Under an
//! endless stream of requests the writer waits as long; a server that trains while it
//! serves would need a drain point.

use super::batch::DecodeBatch;
use super::{Engine, EngineError, GenerateOptions, Generation};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

/// Why a queued generation did not come back.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the engine's lock is poisoned (a thread panicked while replacing weights)")]
    Poisoned,
    #[error("the batching thread has stopped")]
    Stopped,
    #[error("could not start the batching thread")]
    Spawn(#[source] std::io::Error),
}

type Reply = SyncSender<Result<Generation, BatcherError>>;

/// One queued generation.
struct Request {
    prompt: Vec<u32>,
    opts: GenerateOptions,
    reply: Reply,
}

/// The queue and its worker thread. Dropping it lets the worker finish the sequences in
/// flight and waits for it.
pub struct Batcher {
    /// `None` only while dropping (closing the queue ends the worker).
    queue: Option<Sender<Request>>,
    worker: Option<JoinHandle<()>>,
}

/// A queued generation's result, when it comes.
pub struct Pending(Receiver<Result<Generation, BatcherError>>);

impl Pending {
    /// Blocks until the generation ends.
    pub fn wait(self) -> Result<Generation, BatcherError> {
        self.0.recv().map_err(|_| BatcherError::Stopped)?
    }
}

impl Batcher {
    /// Starts the worker: at most `max_batch` sequences decode together (at least 1);
    /// more requests wait in the queue, in order.
    pub fn spawn(engine: Arc<RwLock<Engine>>, max_batch: usize) -> Result<Self, BatcherError> {
        let (queue, requests) = mpsc::channel();
        let max_batch = max_batch.max(1);
        let worker = std::thread::Builder::new()
            .name("ssr-batcher".into())
            .spawn(move || serve(&engine, &requests, max_batch))
            .map_err(BatcherError::Spawn)?;
        Ok(Batcher {
            queue: Some(queue),
            worker: Some(worker),
        })
    }

    /// Queues a generation of `prompt`.
    pub fn submit(&self, prompt: Vec<u32>, opts: GenerateOptions) -> Result<Pending, BatcherError> {
        let (reply, result) = mpsc::sync_channel(1);
        self.queue
            .as_ref()
            .ok_or(BatcherError::Stopped)?
            .send(Request {
                prompt,
                opts,
                reply,
            })
            .map_err(|_| BatcherError::Stopped)?;
        Ok(Pending(result))
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(w) = self.worker.take() {
            // A worker that panicked has already dropped every reply: callers see
            // `Stopped`; nothing more to report here.
            let _ = w.join();
        }
    }
}

/// The worker: waits for a request, then decodes until nothing is in flight, admitting
/// queued requests between steps.
fn serve(engine: &RwLock<Engine>, requests: &Receiver<Request>, max_batch: usize) {
    while let Ok(first) = requests.recv() {
        let Ok(engine) = engine.read() else {
            let _ = first.reply.send(Err(BatcherError::Poisoned));
            continue;
        };
        let mut batch = DecodeBatch::new(&engine);
        admit(&mut batch, first);
        while !batch.is_empty() {
            while batch.len() < max_batch {
                match requests.try_recv() {
                    Ok(r) => admit(&mut batch, r),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            for (reply, result) in batch.step() {
                // The caller may have stopped waiting; its result is dropped.
                let _ = reply.send(result.map_err(BatcherError::from));
            }
        }
    }
}

fn admit(batch: &mut DecodeBatch<'_, Reply>, r: Request) {
    if let Some((reply, result)) = batch.join(r.reply, &r.prompt, &r.opts) {
        let _ = reply.send(result.map_err(BatcherError::from));
    }
}
