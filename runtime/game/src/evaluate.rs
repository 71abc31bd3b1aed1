//! The evaluator (`SSR_SPEC.md` section 5): rebuild the buggy state from the original
//! repository plus the stored patches, apply the solver's patch, restore every oracle
//! file from the original, run the stored script and parser in the sandbox, and score
//! +1 only when every test of `P` is present and passed.
//!
//! Never trusts the solver's workspace: only its patch text crosses over. The script
//! and parser come from the stored artifact and are mounted read-only (see
//! `testrun`), so code the solver wrote cannot rewrite them.
//!
//! JSON of an [`Evaluation`] (`ssr evaluate --json`):
//! `{ "reward": 1.0 | -1.0, "solved": bool, "outcome": { "kind": "solved" | "empty_patch"
//! | "does_not_apply" | "timed_out" | "run_failed" | "tests_failing", ... },
//! "failing": [id], "missing": [id], "wall_ms": u64 }`.
//!
//! Does not own: producing the patch (the agent) or turning failures into new bugs
//! (`higher_order`).

use crate::artifact::{Artifact, check_repo_path};
use crate::config::VerifyConfig;
use crate::patch_ops;
use crate::reward::solver_reward;
use crate::testrun::{Harness, RunFailure, run_tests};
use crate::workspace::Workspace;
use serde::{Deserialize, Serialize};
use ssr_sandbox::Sandbox;
use std::path::Path;
use std::time::Instant;

/// Why an attempt scored what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalOutcome {
    /// Every test of `P` present and passed.
    Solved,
    /// The patch is empty (or only whitespace).
    EmptyPatch,
    /// The patch (or the stored state) does not apply.
    DoesNotApply { error: String },
    /// The test script ran past the hard timeout.
    TimedOut { error: String },
    /// The run gave no result (parser failure, sandbox error).
    RunFailed { error: String },
    /// Some tests of `P` failed or were missing.
    TestsFailing { failing: usize, missing: usize },
}

/// The score of one solver attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub reward: f64,
    pub solved: bool,
    pub outcome: EvalOutcome,
    /// Tests of `P` reported but not passed.
    pub failing: Vec<String>,
    /// Tests of `P` the parser did not report.
    pub missing: Vec<String>,
    pub wall_ms: u64,
}

impl Evaluation {
    fn new(outcome: EvalOutcome, failing: Vec<String>, missing: Vec<String>, t0: Instant) -> Self {
        let solved = outcome == EvalOutcome::Solved;
        Evaluation {
            reward: solver_reward(solved),
            solved,
            outcome,
            failing,
            missing,
            wall_ms: t0.elapsed().as_millis() as u64,
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let why = match &self.outcome {
            EvalOutcome::Solved => "every test of P passes".to_string(),
            EvalOutcome::EmptyPatch => "the patch is empty".to_string(),
            EvalOutcome::DoesNotApply { error } => format!("the patch does not apply: {error}"),
            EvalOutcome::TimedOut { error } => format!("the tests timed out: {error}"),
            EvalOutcome::RunFailed { error } => format!("the test run failed: {error}"),
            EvalOutcome::TestsFailing { failing, missing } => {
                let mut ids: Vec<&str> = self
                    .failing
                    .iter()
                    .chain(&self.missing)
                    .map(String::as_str)
                    .take(5)
                    .collect();
                if failing + missing > 5 {
                    ids.push("…");
                }
                format!(
                    "{failing} tests of P fail and {missing} are missing: {}",
                    ids.join(", ")
                )
            }
        };
        format!("reward {:+}: {why}", self.reward)
    }
}

/// The bug a solver attempt is scored against.
#[derive(Clone, Copy, Debug)]
pub struct BugState<'a> {
    pub artifact: &'a Artifact,
    /// The failed solver patch of a higher-order bug, applied after the weakening.
    pub higher_order_patch: Option<&'a str>,
    /// The set `P` (every test that must pass).
    pub tests: &'a [String],
}

/// Scores solver patches.
pub struct Evaluator<'a> {
    sandbox: &'a dyn Sandbox,
    cfg: VerifyConfig,
}

impl<'a> Evaluator<'a> {
    pub fn new(sandbox: &'a dyn Sandbox, cfg: VerifyConfig) -> Self {
        Evaluator { sandbox, cfg }
    }

    /// Builds original + bug + weakening (+ higher-order patch), applies `patch`,
    /// restores the oracle files, and runs the stored harness.
    pub fn evaluate(&self, original: &Path, bug: BugState<'_>, patch: &str) -> Evaluation {
        let t0 = Instant::now();
        let none = Vec::new;
        if patch.trim().is_empty() {
            return Evaluation::new(EvalOutcome::EmptyPatch, none(), none(), t0);
        }
        match patch_ops::files(patch) {
            Ok(f) if f.is_empty() => {
                return Evaluation::new(EvalOutcome::EmptyPatch, none(), none(), t0);
            }
            Ok(_) => {}
            Err(e) => {
                return Evaluation::new(
                    EvalOutcome::DoesNotApply {
                        error: e.to_string(),
                    },
                    none(),
                    none(),
                    t0,
                );
            }
        }
        let ws = match self.prepare(original, bug, patch) {
            Ok(ws) => ws,
            Err(error) => {
                return Evaluation::new(EvalOutcome::DoesNotApply { error }, none(), none(), t0);
            }
        };
        let run = run_tests(
            self.sandbox,
            &self.cfg,
            ws.path(),
            Harness {
                test_script: &bug.artifact.test_script,
                test_parser: &bug.artifact.test_parser,
            },
        );
        drop(ws);
        let run = match run {
            Ok(r) => r,
            Err(e @ RunFailure::ScriptTimedOut { .. }) => {
                return Evaluation::new(
                    EvalOutcome::TimedOut {
                        error: e.to_string(),
                    },
                    none(),
                    none(),
                    t0,
                );
            }
            Err(e) => {
                return Evaluation::new(
                    EvalOutcome::RunFailed {
                        error: e.to_string(),
                    },
                    none(),
                    none(),
                    t0,
                );
            }
        };
        let missing: Vec<String> = bug
            .tests
            .iter()
            .filter(|id| !run.claimed.contains_key(*id))
            .cloned()
            .collect();
        let failing: Vec<String> = bug
            .tests
            .iter()
            .filter(|id| run.claimed.contains_key(*id) && !run.passed(id))
            .cloned()
            .collect();
        let outcome = if missing.is_empty() && failing.is_empty() {
            EvalOutcome::Solved
        } else {
            EvalOutcome::TestsFailing {
                failing: failing.len(),
                missing: missing.len(),
            }
        };
        Evaluation::new(outcome, failing, missing, t0)
    }

    fn prepare(
        &self,
        original: &Path,
        bug: BugState<'_>,
        patch: &str,
    ) -> Result<Workspace, String> {
        let ws = Workspace::fresh(original, &self.cfg).map_err(|e| e.to_string())?;
        ws.apply("bug_inject.diff", &bug.artifact.bug_inject)
            .map_err(|e| e.to_string())?;
        ws.apply("test_weaken.diff", &bug.artifact.test_weaken)
            .map_err(|e| e.to_string())?;
        if let Some(ho) = bug.higher_order_patch {
            ws.apply("the higher-order patch", ho)
                .map_err(|e| e.to_string())?;
        }
        ws.apply("the solver patch", patch)
            .map_err(|e| e.to_string())?;
        // Oracle files always come back as in the original, whatever the patch did.
        for f in &bug.artifact.test_files {
            let f = check_repo_path(f).map_err(|e| format!("test_files.txt: {e}"))?;
            ws.restore(original, &f).map_err(|e| e.to_string())?;
        }
        Ok(ws)
    }
}
