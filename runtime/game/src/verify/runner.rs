//! Building the workspace of each repository state the verifier runs, and running a
//! set of states: one after another, or concurrently on a bounded set of scoped
//! threads (results in input order either way).
//!
//! Does not own: judging the runs (`checks`), or the run itself (`testrun`).

use super::Verifier;
use crate::artifact::Artifact;
use crate::config::VerifyConfig;
use crate::protected::{ProtectedSet, default_globs};
use crate::report::{Phase, RunRecord};
use crate::testrun::{Harness, RunFailure, TestRun, run_tests_protected};
use crate::workspace::{Workspace, WorkspaceBase};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Upper bound on concurrent runs in one phase: beyond the core count, extra runs
/// only slow each other down, but a few more than cores hides sandbox start-up.
const MAX_CONCURRENT_RUNS: usize = 8;

/// A state of the repository the game runs tests in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoState {
    Original,
    /// Original + bug.
    Bug,
    /// Original + bug + weakening.
    BugWeakened,
    /// Original + bug, with one changed file put back as in the original.
    BugRestored(String),
}

impl RepoState {
    pub(super) fn label(&self) -> String {
        match self {
            RepoState::Original => "original".into(),
            RepoState::Bug => "bug".into(),
            RepoState::BugWeakened => "bug+weaken".into(),
            RepoState::BugRestored(f) => format!("restore:{f}"),
        }
    }
}

/// Builds the workspace of `state` (a fresh snapshot of the original every time).
pub fn prepare_state(
    original: &Path,
    artifact: &Artifact,
    state: &RepoState,
    cfg: &VerifyConfig,
) -> Result<Workspace, String> {
    let base = WorkspaceBase::new(original, cfg).map_err(|e| e.to_string())?;
    prepare_from(&base, artifact, state)
}

/// [`prepare_state`] from an already prepared base.
pub(super) fn prepare_from(
    base: &WorkspaceBase,
    artifact: &Artifact,
    state: &RepoState,
) -> Result<Workspace, String> {
    let ws = base.fresh().map_err(|e| e.to_string())?;
    if *state != RepoState::Original {
        ws.apply("bug_inject.diff", &artifact.bug_inject)
            .map_err(|e| e.to_string())?;
    }
    match state {
        RepoState::BugWeakened => ws
            .apply("test_weaken.diff", &artifact.test_weaken)
            .map_err(|e| e.to_string())?,
        RepoState::BugRestored(f) => ws.restore(base.original(), f).map_err(|e| e.to_string())?,
        _ => {}
    }
    Ok(ws)
}

impl Verifier<'_> {
    /// Runs the harness of `artifact` on `state`, timing preparation and run.
    pub(super) fn run_state(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
        state: &RepoState,
        label: String,
        phase: Phase,
    ) -> (RunRecord, Result<TestRun, RunFailure>) {
        let t0 = Instant::now();
        let ws = prepare_from(base, artifact, state);
        let prep_ms = t0.elapsed().as_millis() as u64;
        // The oracle files and test infrastructure are read-only during every run.
        let protected = ProtectedSet::new(&artifact.test_files, &default_globs())
            .map_err(|e| RunFailure::Setup(e.to_string()));
        let result = ws
            .map_err(RunFailure::Setup)
            .and_then(|ws| Ok((ws, protected?)))
            .and_then(|(ws, protected)| {
                run_tests_protected(
                    self.sandbox,
                    &self.cfg,
                    ws.path(),
                    Harness {
                        test_script: &artifact.test_script,
                        test_parser: &artifact.test_parser,
                    },
                    Some(&protected),
                )
            });
        let (script_ms, parser_ms, passed, failed, error) = match &result {
            Ok(r) => {
                let p = r.claimed.values().filter(|v| *v == "passed").count();
                (r.script_ms, r.parser_ms, p, r.claimed.len() - p, None)
            }
            Err(e) => (0, 0, 0, 0, Some(e.to_string())),
        };
        let record = RunRecord {
            label,
            phase,
            prep_ms,
            script_ms,
            parser_ms,
            total_ms: t0.elapsed().as_millis() as u64,
            passed,
            failed,
            error,
            reporter_secret: result
                .as_ref()
                .ok()
                .and_then(|r| r.reporter.as_ref())
                .map(|r| r.secret.clone()),
        };
        (record, result)
    }

    /// Runs several states, concurrently when configured; results in input order.
    pub(super) fn run_many(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
        states: &[(RepoState, String)],
        phase: Phase,
    ) -> Vec<(RunRecord, Result<TestRun, RunFailure>)> {
        if !self.cfg.parallel || states.len() <= 1 {
            return states
                .iter()
                .map(|(s, l)| self.run_state(base, artifact, s, l.clone(), phase))
                .collect();
        }
        let slots: Vec<Mutex<Option<_>>> = states.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = states.len().min(MAX_CONCURRENT_RUNS);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((s, l)) = states.get(i) else { break };
                        let r = self.run_state(base, artifact, s, l.clone(), phase);
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every slot is filled by a worker")
            })
            .collect()
    }
}
