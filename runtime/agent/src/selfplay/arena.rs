//! The [`Arena`] seam: what the orchestrator needs from the game, the sandboxes and the
//! tools, in five verbs (injector world, verify, procedural bug, solver world,
//! evaluate) plus higher-order bugs.
//!
//! Owns: the types crossing the seam ([`World`], [`Judged`], [`SolveOutcome`],
//! [`ArenaError`]). Does not own: any rule of the game, or storage: an arena works on
//! bugs in memory ([`Bug`]) and the orchestrator asks the game's
//! [`ssr_game::BugStore`] to keep them. The implementation over `ssr-game` lives in
//! [`super::game_arena`], an in-memory one for tests in [`super::fake_arena`].

use crate::shutdown::Shutdown;
use crate::tools::Tools;
use crate::wasm_tools::WasmToolsError;
use serde::{Deserialize, Serialize};
pub use ssr_game::{AttemptScore, Bug, BugSource, Verdict};
pub use ssr_sandbox::Cancel;
use std::path::PathBuf;
use std::sync::Arc;

/// Where one episode acts: its workspace and the tools bound to it. Dropping it
/// removes the workspace.
pub struct World {
    pub workspace: PathBuf,
    pub tools: Arc<dyn Tools>,
    /// Keeps the workspace alive (a temporary directory) until the world is dropped.
    pub guard: Box<dyn Send + Sync>,
    /// Stops the command the episode's tools run now (its sandbox watches it).
    pub cancel: Cancel,
}

impl World {
    /// Cancels the world's running commands when `shutdown` is requested, until the
    /// returned guard is dropped: a cancelled episode leaves no sandbox process behind.
    pub fn cancel_on(&self, shutdown: &Shutdown) -> CancelOnShutdown {
        let (cancel, shutdown) = (self.cancel.clone(), shutdown.clone());
        CancelOnShutdown(tokio::spawn(async move {
            shutdown.requested().await;
            cancel.cancel();
        }))
    }
}

/// Ends the watch started by [`World::cancel_on`] when dropped.
pub struct CancelOnShutdown(tokio::task::JoinHandle<()>);

impl Drop for CancelOnShutdown {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A judged bug: the verdict, and the bug itself when there was one to judge (a
/// verified artifact, valid or not), whose verdict is then its report's
/// ([`Judged::made`]). A submission that could not be read, or a procedural injection
/// that found nothing, has a verdict and no bug ([`Judged::rejected`]).
#[derive(Clone, Debug)]
pub struct Judged {
    pub verdict: Verdict,
    pub bug: Option<Bug>,
}

impl Judged {
    /// A verified bug, its verdict read off its report (the one the bug store gives
    /// back for it).
    pub fn made(bug: Bug) -> Self {
        Judged {
            verdict: bug.verdict(),
            bug: Some(bug),
        }
    }

    /// A rejection with nothing to store but the verdict.
    pub fn rejected(verdict: Verdict) -> Self {
        Judged { verdict, bug: None }
    }
}

/// The score of one solver attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveOutcome {
    /// What it scores under the game's one rule (infra: no reward).
    pub score: AttemptScore,
    /// The solver's patch against its buggy workspace (empty when it changed nothing).
    pub patch: String,
    /// One line saying what happened (for transcripts and the report).
    pub summary: String,
    pub evaluate_ms: u64,
}

impl SolveOutcome {
    /// Whether the attempt solved its bug.
    pub fn solved(&self) -> bool {
        self.score.solved()
    }
}

/// Why the arena could not do what was asked (distinct from a rejected bug or an
/// unsolved attempt, which are normal outcomes). The game's errors keep their type.
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up the episode's tools: {0}")]
    Tools(#[from] WasmToolsError),
    #[error("building the solver workspace: {0}")]
    Episode(#[from] ssr_game::episode::EpisodeError),
    #[error("procedural injection: {0}")]
    Inject(#[from] ssr_game::inject::InjectError),
    #[error("sandbox: {0}")]
    Sandbox(#[from] ssr_sandbox::SandboxError),
    #[error("snapshotting the repository: {0}")]
    Snapshot(#[from] ssr_repo::snapshot::SnapshotError),
    #[error("{what}: the worker thread failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("the higher-order pool's lock is poisoned (a higher-order job panicked)")]
    PoolPoisoned,
}

/// The game as the orchestrator sees it. Every method works in memory; none stores.
#[async_trait::async_trait]
pub trait Arena: Send + Sync {
    /// Name of the repository played on (for prompts).
    fn repo_name(&self) -> String;
    /// A fresh copy of the repository with history, and injector tools over it.
    async fn injector_world(&self, episode_id: &str) -> Result<World, ArenaError>;
    /// Reads the artifact the injector submitted in its world and verifies it from a
    /// fresh original.
    async fn verify_submission(&self, world: &World, bug_id: &str) -> Result<Judged, ArenaError>;
    /// A model-free bug made with `seed`, verified.
    async fn procedural_bug(&self, seed: u64, bug_id: &str) -> Result<Judged, ArenaError>;
    /// The history-free buggy workspace of a bug with solver tools (oracle files
    /// read-only), and the task text.
    async fn solver_world(
        &self,
        bug: &Bug,
        episode_id: &str,
    ) -> Result<(World, String), ArenaError>;
    /// Scores the solver's changes to its world from a fresh original. A failure of
    /// the sandbox or of the stored state is an infra score, not an error: the round
    /// goes on without that attempt.
    async fn evaluate(&self, bug: &Bug, world: &World) -> Result<SolveOutcome, ArenaError>;
    /// A higher-order bug `bug_id` from a failed patch on bug `parent_id`.
    async fn higher_order(
        &self,
        parent_id: &str,
        parent: &Bug,
        failed_patch: &str,
        bug_id: &str,
    ) -> Result<Judged, ArenaError>;
}
