//! The verifier: the seven consistency checks of `SSR_SPEC.md` section 3 in order,
//! the first failure rejecting the artifact, with every test run in a fresh
//! workspace copied from the original repository and executed in the sandbox.
//!
//! Concurrency: the original runs (two, for the flakiness check) run together, and
//! the runs of checks 5, 6 and 7 (bug; bug + weakening; one per changed file with
//! that file restored) all run together on a bounded set of scoped threads; the
//! checks are then judged in order on the results. Set `VerifyConfig::parallel` to
//! false for the one-after-another baseline (`ssr bench verify` compares both).
//!
//! Does not own: the test-run mechanics (`testrun`), patch text (`patch_ops`), or
//! what happens to a valid bug next (`evaluate`, `episode`).

use crate::artifact::{Artifact, check_repo_path};
use crate::config::VerifyConfig;
use crate::patch_ops;
use crate::report::{Check, CheckResult, Phase, RejectCode, RunRecord, VerificationReport};
use crate::testrun::{Harness, RunFailure, TestRun, run_tests};
use crate::trusted::{self, LogFormat};
use crate::workspace::Workspace;
use ssr_sandbox::Sandbox;
use std::collections::BTreeSet;
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
    fn label(&self) -> String {
        match self {
            RepoState::Original => "original".into(),
            RepoState::Bug => "bug".into(),
            RepoState::BugWeakened => "bug+weaken".into(),
            RepoState::BugRestored(f) => format!("restore:{f}"),
        }
    }
}

/// Checks bug artifacts against an original repository.
pub struct Verifier<'a> {
    sandbox: &'a dyn Sandbox,
    cfg: VerifyConfig,
}

struct Rejection {
    check: Check,
    code: RejectCode,
    reason: String,
}

fn reject(check: Check, code: RejectCode, reason: impl Into<String>) -> Rejection {
    Rejection {
        check,
        code,
        reason: reason.into(),
    }
}

/// Builds the workspace of `state` (a fresh copy every time).
pub fn prepare_state(
    original: &Path,
    artifact: &Artifact,
    state: &RepoState,
    cfg: &VerifyConfig,
) -> Result<Workspace, String> {
    let ws = Workspace::fresh(original, cfg).map_err(|e| e.to_string())?;
    if *state != RepoState::Original {
        ws.apply("bug_inject.diff", &artifact.bug_inject)
            .map_err(|e| e.to_string())?;
    }
    match state {
        RepoState::BugWeakened => ws
            .apply("test_weaken.diff", &artifact.test_weaken)
            .map_err(|e| e.to_string())?,
        RepoState::BugRestored(f) => ws.restore(original, f).map_err(|e| e.to_string())?,
        _ => {}
    }
    Ok(ws)
}

fn list(ids: &[String], max: usize) -> String {
    let mut s: Vec<&str> = ids.iter().take(max).map(String::as_str).collect();
    if ids.len() > max {
        s.push("…");
    }
    s.join(", ")
}

impl<'a> Verifier<'a> {
    pub fn new(sandbox: &'a dyn Sandbox, cfg: VerifyConfig) -> Self {
        Verifier { sandbox, cfg }
    }

    pub fn config(&self) -> &VerifyConfig {
        &self.cfg
    }

    /// Runs the harness of `artifact` on `state`, timing preparation and run.
    fn run_state(
        &self,
        original: &Path,
        artifact: &Artifact,
        state: &RepoState,
        label: String,
        phase: Phase,
    ) -> (RunRecord, Result<TestRun, RunFailure>) {
        let t0 = Instant::now();
        let ws = prepare_state(original, artifact, state, &self.cfg);
        let prep_ms = t0.elapsed().as_millis() as u64;
        let result = ws.map_err(RunFailure::Setup).and_then(|ws| {
            run_tests(
                self.sandbox,
                &self.cfg,
                ws.path(),
                Harness {
                    test_script: &artifact.test_script,
                    test_parser: &artifact.test_parser,
                },
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
        };
        (record, result)
    }

    /// Runs several states, concurrently when configured; results in input order.
    fn run_many(
        &self,
        original: &Path,
        artifact: &Artifact,
        states: &[(RepoState, String)],
        phase: Phase,
    ) -> Vec<(RunRecord, Result<TestRun, RunFailure>)> {
        if !self.cfg.parallel || states.len() <= 1 {
            return states
                .iter()
                .map(|(s, l)| self.run_state(original, artifact, s, l.clone(), phase))
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
                        let r = self.run_state(original, artifact, s, l.clone(), phase);
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

    /// Verifies `artifact` against the repository at `original`.
    pub fn verify(&self, original: &Path, artifact: &Artifact) -> VerificationReport {
        let t0 = Instant::now();
        let mut report = VerificationReport {
            valid: false,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: Vec::new(),
            pass_to_pass: Vec::new(),
            log_format: None,
            parallel: self.cfg.parallel,
            wall_ms: 0,
        };
        let outcome = self.checks(original, artifact, &mut report);
        if let Err(r) = outcome {
            report.checks.push(CheckResult {
                check: r.check,
                passed: false,
                code: Some(r.code),
                reason: r.reason.clone(),
                ms: 0,
            });
            report.rejected_by = Some(r.check);
            report.code = Some(r.code);
            report.reason = Some(r.reason);
            report.fail_to_pass.clear();
            report.pass_to_pass.clear();
        } else {
            report.valid = true;
        }
        // The failing check's time is the time since the previous check ended.
        let accounted: u64 = report.checks.iter().map(|c| c.ms).sum();
        let wall = t0.elapsed().as_millis() as u64;
        if let Some(last) = report.checks.last_mut()
            && !last.passed
        {
            last.ms = wall.saturating_sub(accounted);
        }
        report.wall_ms = wall;
        report
    }

    fn pass(report: &mut VerificationReport, check: Check, reason: String, since: &mut Instant) {
        report.checks.push(CheckResult {
            check,
            passed: true,
            code: None,
            reason,
            ms: since.elapsed().as_millis() as u64,
        });
        *since = Instant::now();
    }

    fn checks(
        &self,
        original: &Path,
        artifact: &Artifact,
        report: &mut VerificationReport,
    ) -> Result<(), Rejection> {
        let cfg = &self.cfg;
        let mut since = Instant::now();

        // 1. Files.
        let bug_files = self.check_files(original, artifact)?;
        Self::pass(
            report,
            Check::Files,
            format!(
                "{} oracle files exist; the bug touches {} code files; both diffs apply",
                artifact.test_files.len(),
                bug_files.len()
            ),
            &mut since,
        );

        // 2 and 3. Original runs (run together when parallel).
        let states: Vec<(RepoState, String)> = (0..cfg.original_runs.max(1))
            .map(|i| (RepoState::Original, format!("original#{}", i + 1)))
            .collect();
        let runs = self.run_many(original, artifact, &states, Phase::Original);
        let mut results = Vec::new();
        for (rec, r) in runs {
            report.runs.push(rec);
            results.push(r);
        }
        let first = match &results[0] {
            Ok(r) => r,
            Err(e) => return Err(run_failure_on_original(e)),
        };
        if first.script_ms as f64 > cfg.soft_timeout_secs * 1000.0 {
            return Err(reject(
                Check::Parser,
                RejectCode::ScriptTooSlow,
                format!(
                    "the test script took {:.1} s on the original code, more than the {} s allowed",
                    first.script_ms as f64 / 1000.0,
                    cfg.soft_timeout_secs
                ),
            ));
        }
        if first.claimed.is_empty() {
            return Err(reject(
                Check::Parser,
                RejectCode::NoTests,
                "the parser reported no tests on the original code",
            ));
        }
        let bad: Vec<String> = first
            .claimed
            .iter()
            .filter(|(_, v)| *v != "passed" && *v != "failed")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !bad.is_empty() {
            return Err(reject(
                Check::Parser,
                RejectCode::BadStatusValue,
                format!("statuses other than passed/failed: {}", list(&bad, 5)),
            ));
        }
        report.log_format = first.trusted.as_ref().map(|t| t.0);
        self.cross_check(Check::Parser, "original", first, &[])?;
        Self::pass(
            report,
            Check::Parser,
            format!(
                "the parser reported {} tests{}",
                first.claimed.len(),
                match report.log_format {
                    Some(f) => format!(", in agreement with the trusted {} parser", format_name(f)),
                    None => ", log format not recognised by a trusted parser".into(),
                }
            ),
            &mut since,
        );

        // 3. Original passes, enough tests, not flaky.
        let failing: Vec<String> = first
            .claimed
            .iter()
            .filter(|(_, v)| *v != "passed")
            .map(|(k, _)| k.clone())
            .collect();
        if cfg.require_all_original_pass && !failing.is_empty() {
            return Err(reject(
                Check::OriginalPasses,
                RejectCode::OriginalFails,
                format!(
                    "{} tests fail on the original code: {}",
                    failing.len(),
                    list(&failing, 5)
                ),
            ));
        }
        let p: Vec<String> = first
            .claimed
            .iter()
            .filter(|(_, v)| *v == "passed")
            .map(|(k, _)| k.clone())
            .collect();
        if p.len() < cfg.min_passing_tests {
            return Err(reject(
                Check::OriginalPasses,
                RejectCode::TooFewTests,
                format!(
                    "{} tests pass on the original code, fewer than {}",
                    p.len(),
                    cfg.min_passing_tests
                ),
            ));
        }
        for (i, other) in results.iter().enumerate().skip(1) {
            let other = match other {
                Ok(r) => r,
                Err(e) => {
                    return Err(reject(
                        Check::OriginalPasses,
                        RejectCode::Flaky,
                        format!("original run #{} failed where run #1 succeeded: {e}", i + 1),
                    ));
                }
            };
            let ids: BTreeSet<&String> = first.claimed.keys().chain(other.claimed.keys()).collect();
            let differ: Vec<String> = ids
                .into_iter()
                .filter(|id| first.claimed.get(*id) != other.claimed.get(*id))
                .cloned()
                .collect();
            if !differ.is_empty() {
                return Err(reject(
                    Check::OriginalPasses,
                    RejectCode::Flaky,
                    format!(
                        "{} tests changed status between original runs #1 and #{}: {}",
                        differ.len(),
                        i + 1,
                        list(&differ, 5)
                    ),
                ));
            }
            self.cross_check(Check::OriginalPasses, "original (second run)", other, &[])?;
        }
        Self::pass(
            report,
            Check::OriginalPasses,
            format!(
                "{} tests pass on the original code in {} identical runs",
                p.len(),
                results.len()
            ),
            &mut since,
        );

        // 4. Scope.
        if bug_files.len() < cfg.min_changed_files {
            return Err(reject(
                Check::Scope,
                RejectCode::TooFewChangedFiles,
                format!(
                    "the bug changes {} code files, fewer than {}",
                    bug_files.len(),
                    cfg.min_changed_files
                ),
            ));
        }
        Self::pass(
            report,
            Check::Scope,
            format!("the bug changes {} code files", bug_files.len()),
            &mut since,
        );

        // 5, 6, 7: all runs at once, judged in order.
        let mut states = vec![
            (RepoState::Bug, RepoState::Bug.label()),
            (RepoState::BugWeakened, RepoState::BugWeakened.label()),
        ];
        for f in &bug_files {
            let s = RepoState::BugRestored(f.clone());
            states.push((s.clone(), s.label()));
        }
        let runs = self.run_many(original, artifact, &states, Phase::Mutated);
        let mut results = Vec::new();
        for (rec, r) in runs {
            report.runs.push(rec);
            results.push(r);
        }
        let mut results = results.into_iter();

        // 5.
        let bug = ok_run(
            Check::BugBreaksTests,
            "bug",
            results.next().expect("bug run"),
        )?;
        self.cross_check(Check::BugBreaksTests, "bug", &bug, &p)?;
        let f: Vec<String> = p.iter().filter(|id| !bug.passed(id)).cloned().collect();
        if f.len() < cfg.min_failing_tests {
            return Err(reject(
                Check::BugBreaksTests,
                RejectCode::BugBreaksNothing,
                format!(
                    "with the bug {} tests of P fail, fewer than {}",
                    f.len(),
                    cfg.min_failing_tests
                ),
            ));
        }
        if cfg.require_some_still_passing && f.len() == p.len() {
            return Err(reject(
                Check::BugBreaksTests,
                RejectCode::BugBreaksEverything,
                format!(
                    "with the bug all {} tests of P fail or vanish (a build or import error, not a bug)",
                    p.len()
                ),
            ));
        }
        Self::pass(
            report,
            Check::BugBreaksTests,
            format!(
                "the bug breaks {} of {} tests: {}",
                f.len(),
                p.len(),
                list(&f, 5)
            ),
            &mut since,
        );

        // 6.
        let weak = ok_run(
            Check::WeakeningHides,
            "bug+weaken",
            results.next().expect("weaken run"),
        )?;
        self.cross_check(Check::WeakeningHides, "bug+weaken", &weak, &p)?;
        let hidden: Vec<String> = f
            .iter()
            .filter(|id| !weak.claimed.contains_key(*id) || weak.passed(id))
            .cloned()
            .collect();
        if hidden.is_empty() {
            return Err(reject(
                Check::WeakeningHides,
                RejectCode::WeakeningHidesNothing,
                format!("with the weakening all {} broken tests still fail", f.len()),
            ));
        }
        Self::pass(
            report,
            Check::WeakeningHides,
            format!(
                "the weakening hides {} of {} broken tests",
                hidden.len(),
                f.len()
            ),
            &mut since,
        );

        // 7.
        for (file, r) in bug_files.iter().zip(results) {
            let label = format!("restore:{file}");
            let run = ok_run(Check::InverseMutation, &label, r)?;
            self.cross_check(Check::InverseMutation, &label, &run, &p)?;
            if !f.iter().any(|id| run.passed(id)) {
                return Err(reject(
                    Check::InverseMutation,
                    RejectCode::InverseRestoresNothing,
                    format!(
                        "restoring `{file}` alone makes no broken test pass again: the change to it is padding"
                    ),
                ));
            }
        }
        Self::pass(
            report,
            Check::InverseMutation,
            format!(
                "each of the {} changed files restores at least one broken test",
                bug_files.len()
            ),
            &mut since,
        );

        let fs: BTreeSet<&String> = f.iter().collect();
        report.fail_to_pass = f.clone();
        report.pass_to_pass = p.iter().filter(|id| !fs.contains(id)).cloned().collect();
        Ok(())
    }

    /// Check 1; returns the files the bug changes (sorted).
    fn check_files(&self, original: &Path, artifact: &Artifact) -> Result<Vec<String>, Rejection> {
        let c = Check::Files;
        if artifact.test_files.is_empty() {
            return Err(reject(
                c,
                RejectCode::NoTestFiles,
                "test_files.txt lists no file",
            ));
        }
        let mut oracle = BTreeSet::new();
        let canon_root = original.canonicalize().map_err(|e| {
            reject(
                c,
                RejectCode::TestFileMissing,
                format!("original repository: {e}"),
            )
        })?;
        for raw in &artifact.test_files {
            let rel = check_repo_path(raw).map_err(|e| {
                reject(
                    c,
                    RejectCode::PathOutsideRepo,
                    format!("test_files.txt: {e}"),
                )
            })?;
            let full = original.join(&rel);
            let meta = full.symlink_metadata();
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(reject(
                    c,
                    RejectCode::TestFileMissing,
                    format!(
                        "test file `{rel}` does not exist as a regular file in the original repository"
                    ),
                ));
            }
            // A directory symlink on the way could still lead out of the repository.
            let inside = full
                .canonicalize()
                .is_ok_and(|p| p.starts_with(&canon_root));
            if !inside {
                return Err(reject(
                    c,
                    RejectCode::PathOutsideRepo,
                    format!("test file `{rel}` resolves outside the repository"),
                ));
            }
            oracle.insert(rel);
        }
        let diff_paths = |name: &str, text: &str| {
            patch_ops::touched_paths(text).map_err(|e| match e {
                patch_ops::PatchError::BadPath(p) => {
                    reject(c, RejectCode::PathOutsideRepo, format!("{name}: {p}"))
                }
                other => reject(c, RejectCode::MalformedDiff, format!("{name}: {other}")),
            })
        };
        let weak = diff_paths("test_weaken.diff", &artifact.test_weaken)?;
        let bug = diff_paths("bug_inject.diff", &artifact.bug_inject)?;
        let unlisted: Vec<String> = weak.difference(&oracle).cloned().collect();
        if !unlisted.is_empty() {
            return Err(reject(
                c,
                RejectCode::WeakenTouchesUnlisted,
                format!(
                    "test_weaken.diff touches files not in test_files.txt: {}",
                    list(&unlisted, 5)
                ),
            ));
        }
        let clash: Vec<String> = bug
            .iter()
            .filter(|p| oracle.contains(*p) || weak.contains(*p))
            .cloned()
            .collect();
        if !clash.is_empty() {
            return Err(reject(
                c,
                RejectCode::BugTouchesTests,
                format!(
                    "bug_inject.diff touches oracle test files: {}",
                    list(&clash, 5)
                ),
            ));
        }
        // Both diffs must apply cleanly: the bug to the original, the weakening on top.
        prepare_state(original, artifact, &RepoState::BugWeakened, &self.cfg)
            .map_err(|e| reject(c, RejectCode::DiffDoesNotApply, e))?;
        Ok(bug.into_iter().collect())
    }

    fn cross_check(
        &self,
        check: Check,
        label: &str,
        run: &TestRun,
        known: &[String],
    ) -> Result<(), Rejection> {
        let Some((format, trusted)) = &run.trusted else {
            return Ok(());
        };
        let d = trusted::cross_check(&run.claimed, trusted, known);
        if d.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = d
            .iter()
            .take(5)
            .map(|x| {
                format!(
                    "{} (parser: {}, {}: {:?})",
                    x.test,
                    x.claimed.as_deref().unwrap_or("absent"),
                    format_name(*format),
                    x.trusted
                )
            })
            .collect();
        Err(reject(
            check,
            RejectCode::ParserDisagrees,
            format!(
                "in the {label} run the injector's parser disagrees with the trusted {} parser on {} tests: {}",
                format_name(*format),
                d.len(),
                shown.join("; ")
            ),
        ))
    }
}

fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Pytest => "pytest",
        LogFormat::CargoTest => "cargo test",
        LogFormat::GoTest => "go test",
        LogFormat::Unittest => "unittest",
    }
}

fn run_failure_on_original(e: &RunFailure) -> Rejection {
    let code = match e {
        RunFailure::ScriptTimedOut { .. } => RejectCode::ScriptTimeout,
        RunFailure::ParserTimedOut { .. } | RunFailure::ParserExit { .. } => {
            RejectCode::ParserFailed
        }
        RunFailure::ParserOutput { .. } => RejectCode::ParserBadOutput,
        RunFailure::Sandbox(_) | RunFailure::Setup(_) => RejectCode::RunFailed,
    };
    reject(Check::Parser, code, format!("on the original code: {e}"))
}

fn ok_run(check: Check, label: &str, r: Result<TestRun, RunFailure>) -> Result<TestRun, Rejection> {
    r.map_err(|e| {
        reject(
            check,
            RejectCode::RunFailed,
            format!("the {label} run failed: {e}"),
        )
    })
}
