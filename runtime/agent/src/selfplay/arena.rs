//! The [`Arena`] seam: what the orchestrator needs from the game, the sandboxes and the
//! tools, in five verbs (injector world, verify, procedural bug, solver world,
//! evaluate) plus higher-order bugs.
//!
//! Owns: the types crossing the seam ([`World`], [`Verdict`], [`SolveOutcome`]). Does
//! not own: any rule of the game; the implementation over `ssr-game` lives in
//! [`super::game_arena`].

use crate::tools::Tools;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where one episode acts: its workspace and the tools bound to it. Dropping it
/// removes the workspace.
pub struct World {
    pub workspace: PathBuf,
    pub tools: Arc<dyn Tools>,
    /// Keeps the workspace alive (a temporary directory) until the world is dropped.
    pub guard: Box<dyn Send + Sync>,
}

/// Where a bug came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BugSource {
    Model,
    Procedural,
    HigherOrder,
}

/// The judgement on a bug, stored as `bugs/<id>/verdict.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub bug_id: String,
    pub source: BugSource,
    pub valid: bool,
    /// Why it was rejected (the first failing check), when it was.
    pub reason: Option<String>,
    /// A short machine-friendly code of the reason (for rejection counts).
    pub reason_code: Option<String>,
    /// 1 for first-order bugs, 2 for higher-order ones.
    pub order: u8,
    pub fail_to_pass: Vec<String>,
    pub pass_to_pass: Vec<String>,
    pub verify_ms: u64,
}

impl Verdict {
    pub fn rejected(
        bug_id: &str,
        source: BugSource,
        code: &str,
        reason: impl Into<String>,
    ) -> Self {
        Verdict {
            bug_id: bug_id.into(),
            source,
            valid: false,
            reason: Some(reason.into()),
            reason_code: Some(code.into()),
            order: 1,
            fail_to_pass: Vec::new(),
            pass_to_pass: Vec::new(),
            verify_ms: 0,
        }
    }
}

/// The score of one solver attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveOutcome {
    pub solved: bool,
    /// The solver's patch against its buggy workspace (empty when it changed nothing).
    pub patch: String,
    /// One line saying what happened (for transcripts and the report).
    pub summary: String,
    pub evaluate_ms: u64,
}

/// Why the arena could not do what was asked (distinct from a rejected bug or an
/// unsolved attempt, which are normal outcomes).
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

impl ArenaError {
    pub fn failed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ArenaError::Failed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// The game as the orchestrator sees it.
#[async_trait::async_trait]
pub trait Arena: Send + Sync {
    /// Name of the repository played on (for prompts).
    fn repo_name(&self) -> String;
    /// A fresh copy of the repository with history, and injector tools over it.
    async fn injector_world(&self, episode_id: &str) -> Result<World, ArenaError>;
    /// Reads the artifact the injector left in its world, verifies it from a fresh
    /// original, stores it in `bug_dir`.
    async fn verify_submission(
        &self,
        world: &World,
        bug_id: &str,
        bug_dir: &Path,
    ) -> Result<Verdict, ArenaError>;
    /// A model-free bug made with `seed`, verified and stored in `bug_dir`.
    async fn procedural_bug(
        &self,
        seed: u64,
        bug_id: &str,
        bug_dir: &Path,
    ) -> Result<Verdict, ArenaError>;
    /// The history-free buggy workspace of a stored bug with solver tools (oracle
    /// files read-only), and the task text.
    async fn solver_world(
        &self,
        bug_dir: &Path,
        episode_id: &str,
    ) -> Result<(World, String), ArenaError>;
    /// Scores the solver's changes to its world from a fresh original.
    async fn evaluate(&self, bug_dir: &Path, world: &World) -> Result<SolveOutcome, ArenaError>;
    /// A higher-order bug from a failed patch on a stored bug, stored in `dest_dir`.
    async fn higher_order(
        &self,
        parent_dir: &Path,
        failed_patch: &str,
        bug_id: &str,
        dest_dir: &Path,
    ) -> Result<Verdict, ArenaError>;
}
