//! Running episodes and the server's capacity.
//!
//! Owns: slots (a request over capacity is refused at once, never queued), the
//! registry of running episodes by id (duplicates refused, cancel by id, the episode's
//! tools for MCP calls), and the guarantee that an episode's entry and slot are
//! released exactly when its task ends ([`Running`]'s `Drop`). Does not own: playing
//! episodes (`engine`).

use crate::error::ApiError;
use async_trait::async_trait;
use ssr_agent::selfplay::arena::Bug;
use ssr_agent::selfplay::{Arena, ArenaError, Judged, SolveOutcome, World};
use ssr_agent::shutdown::{self, Shutdown, ShutdownHandle};
use ssr_agent::tools::Tools;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// One registered episode.
struct Entry {
    cancel: Arc<ShutdownHandle>,
    finished: watch::Receiver<bool>,
    tools: Option<Arc<dyn Tools>>,
}

/// The episodes running now, and the slots they hold.
pub struct Registry {
    slots: usize,
    permits: Arc<Semaphore>,
    episodes: Mutex<HashMap<String, Entry>>,
}

/// A running episode's hold on its slot and its registry entry; dropping it (the
/// episode's task ended, however) frees both and wakes whoever waits to cancel it.
pub struct Running {
    pub id: String,
    /// The episode's stop signal (cancel, client gone, deadline).
    pub shutdown: Shutdown,
    cancel: Arc<ShutdownHandle>,
    registry: Arc<Registry>,
    finished: watch::Sender<bool>,
    _slot: OwnedSemaphorePermit,
}

impl Running {
    /// Asks the episode to stop (its sandboxes are killed, its workspace removed).
    pub fn cancel(&self) {
        self.cancel.request();
    }

    /// Runs `work` (the episode) to its end; past `max` it is asked to stop, and what
    /// it gives after stopping (a cancelled result) is returned.
    pub async fn finish_by<F: Future>(&self, max: Duration, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        match tokio::time::timeout(max, &mut work).await {
            Ok(v) => v,
            Err(_) => {
                self.cancel();
                work.await
            }
        }
    }

    /// Turns true when the episode has ended and its sandbox is gone.
    pub fn finished(&self) -> watch::Receiver<bool> {
        self.finished.subscribe()
    }

    /// A handle that cancels the episode when dropped unless disarmed: the episode
    /// of a client that went away ends.
    pub fn cancel_guard(&self) -> CancelGuard {
        CancelGuard(Some(self.cancel.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.episodes.lock() {
            map.remove(&self.id);
        }
        let _ = self.finished.send(true);
    }
}

/// Cancels an episode when dropped, unless [`CancelGuard::disarm`]ed.
pub struct CancelGuard(Option<Arc<ShutdownHandle>>);

impl CancelGuard {
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.request();
        }
    }
}

impl Registry {
    pub fn new(slots: usize) -> Arc<Registry> {
        Arc::new(Registry {
            slots,
            permits: Arc::new(Semaphore::new(slots)),
            episodes: Mutex::new(HashMap::new()),
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn slots_free(&self) -> usize {
        self.permits.available_permits()
    }

    pub fn running(&self) -> usize {
        self.episodes.lock().map_or(0, |m| m.len())
    }

    /// Takes `slots` slots and registers episode (or round) `id`; refused at once when
    /// the id is running (`DUPLICATE_ID`) or too few slots are free
    /// (`CAPACITY_REACHED`). The id is checked first: a client retries on capacity
    /// (the Python dispatcher does), and a duplicate answered 429 would be retried
    /// until the first episode ended, then played twice.
    pub fn begin(self: &Arc<Self>, id: &str, slots: usize) -> Result<Running, ApiError> {
        let mut map = self
            .episodes
            .lock()
            .map_err(|_| ApiError::Infra("the episode registry's lock is poisoned".into()))?;
        if map.contains_key(id) {
            return Err(ApiError::Duplicate(format!(
                "episode `{id}` is running already"
            )));
        }
        let slot = self
            .permits
            .clone()
            .try_acquire_many_owned(slots.clamp(1, self.slots.max(1)) as u32)
            .map_err(|_| ApiError::CapacityReached(self.slots))?;
        let (handle, shutdown) = shutdown::channel();
        let cancel = Arc::new(handle);
        let (finished, rx) = watch::channel(false);
        map.insert(
            id.to_string(),
            Entry {
                cancel: cancel.clone(),
                finished: rx,
                tools: None,
            },
        );
        Ok(Running {
            id: id.to_string(),
            shutdown,
            cancel,
            registry: self.clone(),
            finished,
            _slot: slot,
        })
    }

    /// Cancels episode `id` and waits until its task has ended (its sandboxes killed and
    /// its workspace removed), at most `wait`. False when it did not end in time.
    pub async fn cancel(&self, id: &str, wait: Duration) -> Result<bool, ApiError> {
        let mut finished = {
            let map = self
                .episodes
                .lock()
                .map_err(|_| ApiError::Infra("the episode registry's lock is poisoned".into()))?;
            let entry = map
                .get(id)
                .ok_or_else(|| ApiError::UnknownEpisode(format!("no running episode `{id}`")))?;
            entry.cancel.request();
            entry.finished.clone()
        };
        let ended = tokio::time::timeout(wait, finished.wait_for(|f| *f)).await;
        Ok(matches!(ended, Ok(Ok(_))) || matches!(ended, Ok(Err(_))))
    }

    /// Cancels every running episode and waits until all have ended, at most `wait`
    /// each (a server stopping).
    pub async fn cancel_all(&self, wait: Duration) {
        let ids: Vec<String> = self
            .episodes
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            let _ = self.cancel(&id, wait).await;
        }
    }

    /// Records the tools of episode `id`'s workspace (for `tools/call` over MCP).
    pub fn set_tools(&self, id: &str, tools: Arc<dyn Tools>) {
        if let Ok(mut map) = self.episodes.lock()
            && let Some(e) = map.get_mut(id)
        {
            e.tools = Some(tools);
        }
    }

    /// The tools of episode `id`'s workspace, once it has one.
    pub fn tools(&self, id: &str) -> Option<Arc<dyn Tools>> {
        self.episodes
            .lock()
            .ok()
            .and_then(|m| m.get(id).and_then(|e| e.tools.clone()))
    }
}

/// The repository's arena as one episode sees it, recording the episode's tools in
/// the registry when its workspace is made (so `tools/call` over MCP can reach it).
pub struct WatchedArena {
    pub inner: Arc<dyn Arena>,
    pub registry: Arc<Registry>,
    pub episode_id: String,
}

#[async_trait]
impl Arena for WatchedArena {
    fn repo_name(&self) -> String {
        self.inner.repo_name()
    }

    async fn injector_world(&self, episode_id: &str) -> Result<World, ArenaError> {
        let w = self.inner.injector_world(episode_id).await?;
        self.registry.set_tools(&self.episode_id, w.tools.clone());
        Ok(w)
    }

    async fn verify_submission(&self, world: &World, bug_id: &str) -> Result<Judged, ArenaError> {
        self.inner.verify_submission(world, bug_id).await
    }

    async fn procedural_bug(&self, seed: u64, bug_id: &str) -> Result<Judged, ArenaError> {
        self.inner.procedural_bug(seed, bug_id).await
    }

    async fn solver_world(
        &self,
        bug: &Bug,
        episode_id: &str,
    ) -> Result<(World, String), ArenaError> {
        let (w, task) = self.inner.solver_world(bug, episode_id).await?;
        self.registry.set_tools(&self.episode_id, w.tools.clone());
        Ok((w, task))
    }

    async fn evaluate(&self, bug: &Bug, world: &World) -> Result<SolveOutcome, ArenaError> {
        self.inner.evaluate(bug, world).await
    }

    async fn higher_order(
        &self,
        parent_id: &str,
        parent: &Bug,
        failed_patch: &str,
        bug_id: &str,
    ) -> Result<Judged, ArenaError> {
        self.inner
            .higher_order(parent_id, parent, failed_patch, bug_id)
            .await
    }
}
