//! What a round's phases play with, passed to each of them: the settings, the policy,
//! the game, the bug store, where finished episodes are recorded, shutdown and
//! progress. No run directory: a round can be played for one request (the
//! environment server) as well as for `ssr selfplay`.
//!
//! Owns: [`Table`], the [`Journal`] seam (where a finished episode goes), an episode's
//! [`Done`] form and the [`Played`] result of a phase, and the per-episode sampling
//! settings derived from the run seed. Does not own: any phase (see the sibling
//! modules), the run directory's layout (`rundir`), or the bug store's (`ssr-game`).

use super::{Arena, Progress, SelfPlayConfig, SelfPlayError, derive_seed};
use crate::policy::{Policy, Sampling};
use crate::rundir::{EpisodeRecord, RunDir, RunDirError};
use crate::shutdown::Shutdown;
use crate::transcript::Transcript;
use ssr_game::BugStore;
use ssr_game::split::SplitJudge;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where finished episodes are recorded as they finish (so a killed run keeps them).
pub trait Journal: Send + Sync {
    fn record(&self, transcript: &Transcript, record: &EpisodeRecord) -> Result<(), RunDirError>;
}

impl Journal for RunDir {
    fn record(&self, transcript: &Transcript, record: &EpisodeRecord) -> Result<(), RunDirError> {
        self.record_episode(transcript, record)
    }
}

/// A journal in memory (a round played for one request, tests).
#[derive(Default)]
pub struct MemoryJournal {
    pub records: Mutex<Vec<EpisodeRecord>>,
}

impl Journal for MemoryJournal {
    fn record(&self, _: &Transcript, record: &EpisodeRecord) -> Result<(), RunDirError> {
        if let Ok(mut r) = self.records.lock() {
            r.push(record.clone());
        }
        Ok(())
    }
}

/// Everything a phase plays with. Cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Table {
    pub config: Arc<SelfPlayConfig>,
    pub policy: Arc<dyn Policy>,
    pub arena: Arc<dyn Arena>,
    pub bugs: BugStore,
    pub journal: Arc<dyn Journal>,
    pub shutdown: Shutdown,
    pub progress: Arc<dyn Progress>,
    /// Episodes already finished (a resumed run's index); empty for a fresh round.
    pub finished: Arc<BTreeMap<String, EpisodeRecord>>,
    /// The held-out split: bugs it holds out get no solver attempt (`None`: all play).
    pub split: Option<Arc<SplitJudge>>,
}

impl Table {
    /// The sampling settings of one episode (its seed derived from the run seed).
    pub fn sampling(&self, episode_id: &str) -> Sampling {
        Sampling {
            temperature: self.config.temperature,
            top_p: self.config.top_p,
            max_tokens: 0,
            stop: Vec::new(),
            seed: derive_seed(self.config.seed, episode_id),
        }
    }
}

/// One episode finished in this process or loaded from the index.
#[derive(Clone, Debug)]
pub struct Done {
    pub record: EpisodeRecord,
    /// `None` when loaded from the index (the run directory has it).
    pub transcript: Option<Transcript>,
    /// A solver attempt's patch, when it was played in this process (a resumed one's
    /// is in the bug store).
    pub patch: Option<String>,
}

impl Done {
    pub fn resumed(record: &EpisodeRecord) -> Self {
        Done {
            record: record.clone(),
            transcript: None,
            patch: None,
        }
    }
}

/// What a phase gives: its result, or `Interrupted` when shutdown stopped it (finished
/// episodes are recorded; a resumed run continues).
#[derive(Debug)]
pub enum Played<T> {
    Finished(T),
    Interrupted,
}

/// Awaits every task of a phase; `Interrupted` when any was stopped by shutdown.
pub async fn join_all<T: Send + 'static>(
    mut set: tokio::task::JoinSet<Result<Option<T>, SelfPlayError>>,
    progress: &dyn Progress,
    name: impl Fn(&T) -> String,
) -> Result<Played<Vec<T>>, SelfPlayError> {
    let mut out = Vec::new();
    let mut interrupted = false;
    while let Some(res) = set.join_next().await {
        match res.map_err(|e| SelfPlayError::Task(e.to_string()))?? {
            Some(x) => {
                progress.tick(&name(&x));
                out.push(x);
            }
            None => interrupted = true,
        }
    }
    Ok(if interrupted {
        Played::Interrupted
    } else {
        Played::Finished(out)
    })
}
