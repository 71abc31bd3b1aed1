//! The evaluator (`SSR_SPEC.md` section 5): rebuild the buggy state from the original
//! repository plus the stored patches, apply the solver's patch, restore every oracle
//! file from the original, run the stored script and parser in the sandbox, and score
//! +1 only when every test of `P` is present and passed.
//!
//! Never trusts the solver's workspace: only its patch text crosses over. The script
//! and parser come from the stored artifact and are mounted read-only (see
//! `testrun`), so code the solver wrote cannot rewrite them. Sections of the patch
//! that touch an oracle file or test infrastructure (the [`ProtectedSet`] the solver
//! episode grants read-only: a new `conftest.py`, `sitecustomize.py`, `*.pth`, pytest
//! or cargo configuration, `build.rs`, ...) are dropped before applying, and named in
//! `dropped`. A test counts as passed only when the stored parser says so *and* the
//! trusted parser of the log's format does not contradict it (see `trusted`: a fake
//! `PASSED` line, or a run whose framework summary is missing or inconsistent, does
//! not pass a test).
//!
//! Forged results (`SSR_SPEC.md` section 11): the run mounts the protected files
//! read-only and checks them after; the trusted reporter and its canaries judge the
//! pytest run (`testrun`, `reporter`); the solver patch is scanned for runner
//! tampering (`scan`), its findings noted. A run with signs of tampering (or a scan
//! finding, under `VerifyConfig::reject_tampering_findings`) is
//! [`EvalOutcome::Tampered`], −1, whatever its tests say.
//!
//! What an outcome scores is `score`'s one rule ([`AttemptScore::of`]): infra first
//! ([`EvalOutcome::Infra`]: the sandbox could not run a command, preparing the run
//! failed on the host, or the stored bug state (bug, weakening, higher-order patch,
//! oracle files) does not rebuild: no reward), then tampered (−1), then ±1. Failures
//! the attempt caused stay −1: its patch does not apply, the tests time out, or the
//! stored parser fails on the log the code under test produced
//! ([`EvalOutcome::RunFailed`]).
//!
//! JSON of an [`Evaluation`] (`ssr evaluate --json`):
//! `{ "reward": 1.0 | -1.0 | null, "solved": bool, "outcome": { "kind": "solved" | "empty_patch"
//! | "does_not_apply" | "timed_out" | "run_failed" | "infra" | "tampered" | "tests_failing", ... },
//! "failing": [id], "missing": [id], "dropped": [path], "notes": [string], "wall_ms": u64 }`.
//!
//! Does not own: producing the patch (the agent) or turning failures into new bugs
//! (`higher_order`).

use crate::artifact::{Artifact, check_repo_path};
use crate::config::VerifyConfig;
use crate::patch_ops::{self, Patch};
use crate::protected::{ProtectedSet, default_globs};
use crate::scan::scan_patch;
use crate::score::AttemptScore;
use crate::testrun::{Harness, RunFailure, TestRun, run_tests_protected};
use crate::trusted::LogFormat;
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
    /// The solver's patch does not apply (or is not a patch).
    DoesNotApply { error: String },
    /// The test script ran past the hard timeout.
    TimedOut { error: String },
    /// The stored parser failed on the log the code under test produced (it exited
    /// non-zero, timed out, or printed no JSON object of strings): −1.
    RunFailed { error: String },
    /// Not the attempt's doing: the sandbox could not run a command, preparing the run
    /// failed on the host, or the stored bug state does not rebuild. No reward.
    Infra { error: String },
    /// The run shows signs that the code under test forged its result (a canary
    /// with the wrong outcome or none, a report contradicting a test's own call, a
    /// protected file written during the run), or the patch scan found runner
    /// tampering and `VerifyConfig::reject_tampering_findings` is set.
    Tampered { notes: Vec<String> },
    /// Some tests of `P` failed or were missing.
    TestsFailing { failing: usize, missing: usize },
}

/// The score of one solver attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The reward ([`AttemptScore::reward`]): `None` for an infra outcome.
    pub reward: Option<f64>,
    pub solved: bool,
    pub outcome: EvalOutcome,
    /// Tests of `P` reported but not passed.
    pub failing: Vec<String>,
    /// Tests of `P` the parser did not report.
    pub missing: Vec<String>,
    /// Paths whose sections of the solver patch were dropped (oracle files and test
    /// infrastructure), sorted.
    #[serde(default)]
    pub dropped: Vec<String>,
    /// What else the scoring noticed (an incomplete run, a log in another format).
    #[serde(default)]
    pub notes: Vec<String>,
    pub wall_ms: u64,
    /// The run's canary secret (hex), when a pytest session loaded the trusted
    /// reporter: the record of which canaries it ran. Never shown to a policy.
    #[serde(default)]
    pub reporter_secret: Option<String>,
}

impl Evaluation {
    fn new(outcome: EvalOutcome, failing: Vec<String>, missing: Vec<String>, t0: Instant) -> Self {
        let score = AttemptScore::of(&outcome);
        Evaluation {
            reward: score.reward(),
            solved: score.solved(),
            outcome,
            failing,
            missing,
            dropped: Vec::new(),
            notes: Vec::new(),
            wall_ms: t0.elapsed().as_millis() as u64,
            reporter_secret: None,
        }
    }

    fn with(mut self, dropped: Vec<String>, notes: Vec<String>) -> Self {
        self.dropped = dropped;
        self.notes = notes;
        self
    }

    /// What the attempt scores under the one rule (`score`).
    pub fn score(&self) -> AttemptScore {
        AttemptScore::of(&self.outcome)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let why = match &self.outcome {
            EvalOutcome::Solved => "every test of P passes".to_string(),
            EvalOutcome::EmptyPatch => "the patch is empty".to_string(),
            EvalOutcome::DoesNotApply { error } => format!("the patch does not apply: {error}"),
            EvalOutcome::TimedOut { error } => format!("the tests timed out: {error}"),
            EvalOutcome::RunFailed { error } => {
                format!("the parser failed on the run's log: {error}")
            }
            EvalOutcome::Infra { error } => {
                format!("infrastructure failure, not scored: {error}")
            }
            EvalOutcome::Tampered { notes } => {
                format!("the run was tampered with: {}", notes.join("; "))
            }
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
        let mut line = match self.reward {
            Some(r) => format!("reward {r:+}: {why}"),
            None => format!("no reward: {why}"),
        };
        if !self.dropped.is_empty() {
            line.push_str(&format!(
                " (dropped the patch's sections for protected files: {})",
                self.dropped.join(", ")
            ));
        }
        for note in &self.notes {
            line.push_str(&format!("; {note}"));
        }
        line
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
    protected_globs: Vec<String>,
    expected_format: Option<LogFormat>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator protecting the default test infrastructure
    /// ([`crate::protected::DEFAULT_PROTECTED_GLOBS`]).
    pub fn new(sandbox: &'a dyn Sandbox, cfg: VerifyConfig) -> Self {
        Evaluator {
            sandbox,
            cfg,
            protected_globs: default_globs(),
            expected_format: None,
        }
    }

    /// Protects these infrastructure globs instead: pass the solver episode's
    /// `EpisodeConfig::protected_globs`, so the set made read-only and the set dropped
    /// from patches are one.
    pub fn with_protected_globs(mut self, globs: Vec<String>) -> Self {
        self.protected_globs = globs;
        self
    }

    /// The log format the verifier recognised on this bug (`VerificationReport::
    /// log_format`). When set, a run whose log a trusted parser does not read as that
    /// format counts as incomplete: no test passes.
    pub fn expecting_log_format(mut self, format: Option<LogFormat>) -> Self {
        self.expected_format = format;
        self
    }

    /// The protected set of a bug: its oracle files and this evaluator's globs.
    pub fn protected_set(
        &self,
        artifact: &Artifact,
    ) -> Result<ProtectedSet, crate::protected::GlobError> {
        ProtectedSet::new(&artifact.test_files, &self.protected_globs)
    }

    /// Builds original + bug + weakening (+ higher-order patch), applies `patch`
    /// without its protected sections, restores the oracle files, and runs the stored
    /// harness.
    pub fn evaluate(&self, original: &Path, bug: BugState<'_>, patch: &str) -> Evaluation {
        let t0 = Instant::now();
        let scored = self.screen(bug.artifact, patch).and_then(|screened| {
            let run = self.run(original, bug, &screened)?;
            Ok(self.score_run(bug, &run, screened, t0))
        });
        scored.unwrap_or_else(|early| early.into_evaluation(t0))
    }

    /// What happens to the patch before any run: parsed, its protected sections
    /// dropped, the rest scanned for runner tampering. `Err` is the outcome of a patch
    /// that needs no run (empty, not a patch, only protected sections, or rejected
    /// for the scan's findings).
    fn screen(&self, artifact: &Artifact, patch: &str) -> Result<Screened, Early> {
        if patch.trim().is_empty() {
            return Err(Early::new(EvalOutcome::EmptyPatch));
        }
        let parsed = patch_ops::parse(patch).map_err(|e| {
            Early::new(EvalOutcome::DoesNotApply {
                error: e.to_string(),
            })
        })?;
        // The operator's globs, not the attempt: nothing was run.
        let protected = self.protected_set(artifact).map_err(|e| {
            Early::new(EvalOutcome::Infra {
                error: format!("protected globs: {e}"),
            })
        })?;
        let (kept, dropped) = parsed.partition(|f| !f.paths().any(|p| protected.contains(p)));
        let dropped: Vec<String> = dropped
            .files
            .iter()
            .flat_map(|f| f.paths().map(str::to_owned).collect::<Vec<_>>())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if kept.is_empty() {
            return Err(Early::new(EvalOutcome::EmptyPatch).with(dropped, Vec::new()));
        }
        // Only the kept sections are scanned: dropped ones never reach the run.
        let findings: Vec<String> = scan_patch(&kept.to_string())
            .iter()
            .map(|f| f.note())
            .collect();
        if self.cfg.reject_tampering_findings && !findings.is_empty() {
            // No run can make such a patch score: skip it.
            return Err(Early::new(EvalOutcome::Tampered {
                notes: findings.clone(),
            })
            .with(dropped, findings));
        }
        Ok(Screened {
            kept,
            dropped,
            findings,
            protected,
        })
    }

    /// The stored harness run on the rebuilt state with the screened patch, the
    /// protected files read-only. `Err` is the outcome when no run results came back
    /// (the state does not build, the patch does not apply, the run failed).
    fn run(
        &self,
        original: &Path,
        bug: BugState<'_>,
        screened: &Screened,
    ) -> Result<TestRun, Early> {
        let early = |outcome| Early::new(outcome).with(screened.dropped.clone(), Vec::new());
        let ws = self
            .prepare(original, bug, &screened.kept)
            .map_err(|e| match e {
                Unprepared::Patch(error) => early(EvalOutcome::DoesNotApply { error }),
                Unprepared::State(error) => early(EvalOutcome::Infra { error }),
            })?;
        let run = run_tests_protected(
            self.sandbox,
            &self.cfg,
            ws.path(),
            Harness {
                test_script: &bug.artifact.test_script,
                test_parser: &bug.artifact.test_parser,
            },
            Some(&screened.protected),
        );
        drop(ws);
        run.map_err(|e| match e {
            RunFailure::ScriptTimedOut { .. } => early(EvalOutcome::TimedOut {
                error: e.to_string(),
            }),
            e => {
                let error = e.to_string();
                early(if run_failure_is_infra(&e) {
                    EvalOutcome::Infra { error }
                } else {
                    EvalOutcome::RunFailed { error }
                })
            }
        })
    }

    /// Scores a run that came back: tampering outranks the tests; else solved when
    /// every test of `P` is present and passes (as the trusted parser allows).
    fn score_run(
        &self,
        bug: BugState<'_>,
        run: &TestRun,
        screened: Screened,
        t0: Instant,
    ) -> Evaluation {
        let Screened {
            dropped, findings, ..
        } = screened;
        let secret = run.reporter.as_ref().map(|r| r.secret.clone());
        let (nothing_passes, judged) = self.judge(run);
        let passes = |id: &str| !nothing_passes && run.passed_trusted(id);
        let missing: Vec<String> = bug
            .tests
            .iter()
            .filter(|id| !run.claimed.contains_key(*id))
            .cloned()
            .collect();
        let failing: Vec<String> = bug
            .tests
            .iter()
            .filter(|id| run.claimed.contains_key(*id) && !passes(id))
            .cloned()
            .collect();
        let mut notes = run.tampered.clone();
        notes.extend(run.notes.iter().cloned());
        notes.extend(judged);
        notes.extend(findings.iter().cloned());
        // Tampering outranks the tests: a forged run scores −1 whatever they say.
        let outcome = if !run.tampered.is_empty()
            || (self.cfg.reject_tampering_findings && !findings.is_empty())
        {
            let mut why = run.tampered.clone();
            why.extend(findings);
            EvalOutcome::Tampered { notes: why }
        } else if missing.is_empty() && failing.is_empty() {
            EvalOutcome::Solved
        } else {
            EvalOutcome::TestsFailing {
                failing: failing.len(),
                missing: missing.len(),
            }
        };
        let mut e = Evaluation::new(outcome, failing, missing, t0).with(dropped, notes);
        e.reporter_secret = secret;
        e
    }

    /// Whether no test of the run may count as passed (the log is not the format the
    /// verifier saw), and notes on why tests cannot pass.
    fn judge(&self, run: &TestRun) -> (bool, Vec<String>) {
        let mut notes = Vec::new();
        let seen = run.trusted.as_ref().map(|t| t.format);
        if let Some(want) = self.expected_format
            && seen != Some(want)
        {
            notes.push(format!(
                "the log is not a complete {} log as at verification ({}), so no test counts as passed",
                want.name(),
                seen.map_or("format not recognised", LogFormat::name)
            ));
            return (true, notes);
        }
        if let Some(t) = &run.trusted
            && let Some(why) = &t.incomplete
        {
            notes.push(format!(
                "the {} run is incomplete ({why}), so no test counts as passed",
                t.format.name()
            ));
        }
        (false, notes)
    }

    /// The workspace of the run: original, stored state, the solver's patch, oracle
    /// files restored. Says whose failure it was when it cannot be built.
    fn prepare(
        &self,
        original: &Path,
        bug: BugState<'_>,
        patch: &Patch,
    ) -> Result<Workspace, Unprepared> {
        let state = |e: String| Unprepared::State(format!("the stored bug state: {e}"));
        let ws = Workspace::fresh(original, &self.cfg).map_err(|e| state(e.to_string()))?;
        ws.apply("bug_inject.diff", &bug.artifact.bug_inject)
            .map_err(|e| state(e.to_string()))?;
        ws.apply("test_weaken.diff", &bug.artifact.test_weaken)
            .map_err(|e| state(e.to_string()))?;
        if let Some(ho) = bug.higher_order_patch {
            ws.apply("the higher-order patch", ho)
                .map_err(|e| state(e.to_string()))?;
        }
        patch_ops::apply_patch(ws.path(), patch)
            .map_err(|e| Unprepared::Patch(format!("applying the solver patch: {e}")))?;
        // Oracle files always come back as in the original, whatever the patch did.
        for f in &bug.artifact.test_files {
            let f = check_repo_path(f).map_err(|e| state(format!("test_files.txt: {e}")))?;
            ws.restore(original, &f).map_err(|e| state(e.to_string()))?;
        }
        Ok(ws)
    }
}

/// The solver's patch once screened: the sections that reach the run, the paths of
/// those dropped (sorted), the scan's findings on the kept ones, and the protected
/// set the run mounts read-only.
struct Screened {
    kept: Patch,
    dropped: Vec<String>,
    findings: Vec<String>,
    protected: ProtectedSet,
}

/// An attempt scored without test results: its outcome, dropped paths and notes.
struct Early {
    outcome: EvalOutcome,
    dropped: Vec<String>,
    notes: Vec<String>,
}

impl Early {
    fn new(outcome: EvalOutcome) -> Self {
        Early {
            outcome,
            dropped: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn with(mut self, dropped: Vec<String>, notes: Vec<String>) -> Self {
        self.dropped = dropped;
        self.notes = notes;
        self
    }

    fn into_evaluation(self, t0: Instant) -> Evaluation {
        Evaluation::new(self.outcome, Vec::new(), Vec::new(), t0).with(self.dropped, self.notes)
    }
}

/// Why the run's workspace could not be built, by whose doing.
enum Unprepared {
    /// The solver's patch does not apply: the attempt's failure (−1).
    Patch(String),
    /// The original plus the stored state (a snapshot, the bug, the weakening, the
    /// higher-order patch, the oracle files) does not rebuild: infra.
    State(String),
}

/// Whether a test run's failure is the infrastructure's (no reward) rather than the
/// attempt's (−1). Exhaustive, so a new kind of failure must be placed.
fn run_failure_is_infra(e: &RunFailure) -> bool {
    match e {
        // The sandbox could not run a command, or the host could not prepare or read
        // the run's files: nothing the code under test did.
        RunFailure::Sandbox(_) | RunFailure::Setup(_) => true,
        // The code under test ran; what it produced broke the parser or ran too long.
        RunFailure::ScriptTimedOut { .. }
        | RunFailure::ParserTimedOut { .. }
        | RunFailure::ParserExit { .. }
        | RunFailure::ParserOutput { .. } => false,
    }
}
