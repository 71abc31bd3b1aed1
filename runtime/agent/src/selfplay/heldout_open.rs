//! The composition root of `ssr heldout`: from a request it loads the held-out bugs
//! (checked first: bad input fails before any model loads), finds their repository,
//! applies the split, builds the policy as `ssr selfplay` does (every policy kind) and
//! the real game, and plays the evaluation on a scratch table.
//!
//! Owns: which repository the bugs are played on (`--repo`, else the one their
//! `bug.json` names, which must be the same for all). Does not own: the metrics or the
//! episodes (`heldout`), parsing or printing (the binary).

use super::heldout::{self, HeldoutError, HeldoutPlan, HeldoutReport};
use super::open::{OpenError, build_arena, build_policy};
use super::table::{MemoryJournal, Table};
use super::{PolicyKind, PolicySources, Progress, SelfPlayConfig, SelfPlayError};
use crate::shutdown::Shutdown;
use ssr_game::BugStore;
use ssr_game::split::{Split, SplitError, SplitJudge};
use std::path::PathBuf;
use std::sync::Arc;

/// A held-out evaluation to run.
pub struct HeldoutRequest {
    /// Budgets, sampling, syntax, seed, concurrency, tools and test environment.
    pub config: SelfPlayConfig,
    pub policy: PolicyKind,
    pub sources: PolicySources,
    /// The bugs (`ssr inject`'s layout).
    pub bugs: PathBuf,
    /// With a split, only the bugs it holds out are played.
    pub split: Option<PathBuf>,
    /// The repository; default: the one the bugs' `bug.json` names.
    pub repo: Option<PathBuf>,
    pub plan: HeldoutPlan,
    pub shutdown: Shutdown,
    pub progress: Arc<dyn Progress>,
}

/// A finished evaluation.
#[derive(Debug, serde::Serialize)]
pub struct HeldoutRun {
    pub repo: PathBuf,
    /// Valid bugs of the directory the split did not hold out (not played).
    pub not_held_out: usize,
    pub report: HeldoutReport,
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum HeldoutRunError {
    #[error(transparent)]
    Bugs(#[from] HeldoutError),
    #[error("the bugs come from different repositories ({0} and {1}): pass --repo")]
    Repos(String, String),
    #[error("repository {0} does not exist (pass --repo)")]
    NoRepo(PathBuf),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("a scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    #[error(transparent)]
    Play(#[from] SelfPlayError),
}

/// Runs the evaluation; `None` when shutdown stopped it.
pub async fn run_heldout(req: HeldoutRequest) -> Result<Option<HeldoutRun>, HeldoutRunError> {
    let mut bugs = heldout::load_bugs(&req.bugs)?;
    let repo = match &req.repo {
        Some(r) => r.clone(),
        None => {
            let first = &bugs[0].1.meta.repo_path;
            if let Some((_, other)) = bugs.iter().find(|(_, b)| &b.meta.repo_path != first) {
                return Err(HeldoutRunError::Repos(
                    first.clone(),
                    other.meta.repo_path.clone(),
                ));
            }
            PathBuf::from(first)
        }
    };
    let repo = repo
        .canonicalize()
        .map_err(|_| HeldoutRunError::NoRepo(repo.clone()))?;
    let total = bugs.len();
    if let Some(path) = &req.split {
        let judge = SplitJudge::open(Split::read(path)?, &repo)?;
        bugs = heldout::held_out_only(bugs, &judge, &req.bugs)?;
    }
    let (policy, _) = build_policy(req.policy, &req.sources)?;
    let scratch = tempfile::Builder::new()
        .prefix("ssr-heldout-")
        .tempdir()
        .map_err(HeldoutRunError::Scratch)?;
    // On the host: held-out evaluation on an image is not offered (no `--image` here).
    let arena = build_arena(&req.config, &repo, &scratch.path().join("work"), None)?;
    let table = Table {
        config: Arc::new(req.config),
        policy,
        arena,
        bugs: BugStore::new(scratch.path().join("bugs")),
        journal: Arc::new(MemoryJournal::default()),
        shutdown: req.shutdown,
        progress: req.progress.clone(),
        finished: Arc::new(Default::default()),
        split: None,
    };
    let n = bugs.len() as u64 * u64::from(req.plan.attempts);
    req.progress
        .phase(0, "held-out", n + u64::from(req.plan.injector_episodes));
    let Some(report) = heldout::evaluate(&table, &bugs, &req.plan).await? else {
        return Ok(None);
    };
    Ok(Some(HeldoutRun {
        repo,
        not_held_out: total - bugs.len(),
        report,
    }))
}
