//! The seven checks of `SSR_SPEC.md` section 3 in order, one function each, judged
//! on the runs, and the cross-check of every run against the trusted parsers.
//!
//! [`Verifier::checks`] is the order: check 1 (`files`, plus the scan of the bug for
//! runner tampering), the original runs, checks 2 and 3 on them, check 4, the runs of
//! checks 5 to 7 (all at once), then checks 5, 6 and 7 on their results. Each check
//! takes what the earlier ones established (`P`, then `F`) and returns what the later
//! ones need; the first rejection ends the verification.
//!
//! Does not own: the file checks of check 1 (`files`), or running the states
//! (`runner`).

use super::runner::RepoState;
use super::{Rejection, Verifier, list, reject};
use crate::artifact::Artifact;
use crate::report::{Check, CheckResult, Phase, RejectCode, VerificationReport};
use crate::testrun::{RunFailure, TestRun};
use crate::trusted;
use crate::workspace::WorkspaceBase;
use std::collections::BTreeSet;
use std::time::Instant;

/// The report being filled, and when the previous check ended: a passed check's time
/// is the time since then (runs included), so the times add up to the wall time.
struct Judging<'r> {
    report: &'r mut VerificationReport,
    since: Instant,
}

impl Judging<'_> {
    fn pass(&mut self, check: Check, reason: String) {
        self.report.checks.push(CheckResult {
            check,
            passed: true,
            code: None,
            reason,
            ms: self.since.elapsed().as_millis() as u64,
        });
        self.since = Instant::now();
    }
}

/// The results of some runs, in the order of their states; the runs' records go to
/// the report.
type RunResults = Vec<Result<TestRun, RunFailure>>;

impl Verifier<'_> {
    /// Checks 1 to 7 in order. On success the report holds every check passed, every
    /// run, the scan's notes, the log format, `FAIL_TO_PASS = F` and
    /// `PASS_TO_PASS = P \ F`.
    pub(super) fn checks(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
        report: &mut VerificationReport,
    ) -> Result<(), Rejection> {
        let mut j = Judging {
            report,
            since: Instant::now(),
        };
        let bug_files = self.check_files(base, artifact)?;
        self.check_bug_scan(artifact, &bug_files, &mut j)?;
        // 2 and 3 judge the same runs (run together when parallel).
        let states: Vec<(RepoState, String)> = (0..self.cfg.original_runs.max(1))
            .map(|i| (RepoState::Original, format!("original#{}", i + 1)))
            .collect();
        let originals = self.run_states(base, artifact, &states, Phase::Original, &mut j);
        let first = self.check_parser(&originals, &mut j)?;
        let p = self.check_original_passes(first, &originals, &mut j)?;
        self.check_scope(&bug_files, &mut j)?;
        // 5, 6, 7: all runs at once, judged in order.
        let mut states = vec![
            (RepoState::Bug, RepoState::Bug.label()),
            (RepoState::BugWeakened, RepoState::BugWeakened.label()),
        ];
        for f in &bug_files {
            let s = RepoState::BugRestored(f.clone());
            states.push((s.clone(), s.label()));
        }
        let mut mutated = self
            .run_states(base, artifact, &states, Phase::Mutated, &mut j)
            .into_iter();
        let f = self.check_bug_breaks_tests(mutated.next().expect("bug run"), &p, &mut j)?;
        self.check_weakening_hides(mutated.next().expect("weaken run"), &f, &p, &mut j)?;
        self.check_inverse_mutation(&bug_files, mutated, &f, &p, &mut j)?;

        let fs: BTreeSet<&String> = f.iter().collect();
        j.report.pass_to_pass = p.iter().filter(|id| !fs.contains(id)).cloned().collect();
        j.report.fail_to_pass = f;
        Ok(())
    }

    /// Runs `states`, records the runs in the report and returns their results.
    fn run_states(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
        states: &[(RepoState, String)],
        phase: Phase,
        j: &mut Judging<'_>,
    ) -> RunResults {
        let runs = self.run_many(base, artifact, states, phase);
        let mut results = Vec::new();
        for (rec, r) in runs {
            j.report.runs.push(rec);
            results.push(r);
        }
        results
    }

    /// The rest of check 1, once the files check passed: the scan of the artifact (bug,
    /// test weakening, test script) for runner tampering, its findings noted (and rejecting, when so configured).
    fn check_bug_scan(
        &self,
        artifact: &Artifact,
        bug_files: &[String],
        j: &mut Judging<'_>,
    ) -> Result<(), Rejection> {
        j.report.notes = crate::scan::scan_artifact(artifact)
            .iter()
            .map(|f| f.note())
            .collect();
        if self.cfg.reject_tampering_findings && !j.report.notes.is_empty() {
            return Err(reject(
                Check::Files,
                RejectCode::Tampered,
                format!(
                    "the bug tampers with the test runner: {}",
                    list(&j.report.notes, 5)
                ),
            ));
        }
        j.pass(
            Check::Files,
            format!(
                "{} oracle files exist; the bug touches {} code files; both diffs apply",
                artifact.test_files.len(),
                bug_files.len()
            ),
        );
        Ok(())
    }

    /// Check 2 on the first original run: it succeeded in time, and its parser
    /// reported tests, only `passed` or `failed`, agreeing with the trusted parser.
    /// Returns that run.
    fn check_parser<'o>(
        &self,
        originals: &'o RunResults,
        j: &mut Judging<'_>,
    ) -> Result<&'o TestRun, Rejection> {
        let cfg = &self.cfg;
        let first = match &originals[0] {
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
        j.report.log_format = first.trusted.as_ref().map(|t| t.format);
        self.cross_check(Check::Parser, "original", first, &[])?;
        let agreement = match j.report.log_format {
            Some(f) => format!(", in agreement with the trusted {} parser", f.name()),
            None => ", log format not recognised by a trusted parser".into(),
        };
        j.pass(
            Check::Parser,
            format!(
                "the parser reported {} tests{agreement}",
                first.claimed.len()
            ),
        );
        Ok(first)
    }

    /// Check 3: on the original every test passes (when required), at least
    /// `min_passing_tests` do, and every other original run agrees with the first.
    /// Returns `P`, the tests passing on the original.
    fn check_original_passes(
        &self,
        first: &TestRun,
        originals: &RunResults,
        j: &mut Judging<'_>,
    ) -> Result<Vec<String>, Rejection> {
        let cfg = &self.cfg;
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
        for (i, other) in originals.iter().enumerate().skip(1) {
            self.check_same_as_first(first, i, other)?;
        }
        j.pass(
            Check::OriginalPasses,
            format!(
                "{} tests pass on the original code in {} identical runs",
                p.len(),
                originals.len()
            ),
        );
        Ok(p)
    }

    /// Part of check 3: original run `i` (from 0) succeeded, gave every test the
    /// status the first run gave it, and agrees with the trusted parser.
    fn check_same_as_first(
        &self,
        first: &TestRun,
        i: usize,
        other: &Result<TestRun, RunFailure>,
    ) -> Result<(), Rejection> {
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
        self.cross_check(Check::OriginalPasses, "original (second run)", other, &[])
    }

    /// Check 4: the bug changes at least `min_changed_files` code files.
    fn check_scope(&self, bug_files: &[String], j: &mut Judging<'_>) -> Result<(), Rejection> {
        if bug_files.len() < self.cfg.min_changed_files {
            return Err(reject(
                Check::Scope,
                RejectCode::TooFewChangedFiles,
                format!(
                    "the bug changes {} code files, fewer than {}",
                    bug_files.len(),
                    self.cfg.min_changed_files
                ),
            ));
        }
        j.pass(
            Check::Scope,
            format!("the bug changes {} code files", bug_files.len()),
        );
        Ok(())
    }

    /// Check 5: with the bug, at least `min_failing_tests` tests of `P` fail or
    /// vanish, and (when required) not all of them. Returns `F`, those tests.
    fn check_bug_breaks_tests(
        &self,
        run: Result<TestRun, RunFailure>,
        p: &[String],
        j: &mut Judging<'_>,
    ) -> Result<Vec<String>, Rejection> {
        let cfg = &self.cfg;
        let bug = ok_run(Check::BugBreaksTests, "bug", run)?;
        self.cross_check(Check::BugBreaksTests, "bug", &bug, p)?;
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
        j.pass(
            Check::BugBreaksTests,
            format!(
                "the bug breaks {} of {} tests: {}",
                f.len(),
                p.len(),
                list(&f, 5)
            ),
        );
        Ok(f)
    }

    /// Check 6: with the bug and the weakening, at least one test of `F` passes or is
    /// gone.
    fn check_weakening_hides(
        &self,
        run: Result<TestRun, RunFailure>,
        f: &[String],
        p: &[String],
        j: &mut Judging<'_>,
    ) -> Result<(), Rejection> {
        let weak = ok_run(Check::WeakeningHides, "bug+weaken", run)?;
        self.cross_check(Check::WeakeningHides, "bug+weaken", &weak, p)?;
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
        j.pass(
            Check::WeakeningHides,
            format!(
                "the weakening hides {} of {} broken tests",
                hidden.len(),
                f.len()
            ),
        );
        Ok(())
    }

    /// Check 7: restoring any one changed file alone makes at least one test of `F`
    /// pass again (no padding). `runs` are the restore runs, in `bug_files` order.
    fn check_inverse_mutation(
        &self,
        bug_files: &[String],
        runs: impl Iterator<Item = Result<TestRun, RunFailure>>,
        f: &[String],
        p: &[String],
        j: &mut Judging<'_>,
    ) -> Result<(), Rejection> {
        for (file, r) in bug_files.iter().zip(runs) {
            let label = format!("restore:{file}");
            let run = ok_run(Check::InverseMutation, &label, r)?;
            self.cross_check(Check::InverseMutation, &label, &run, p)?;
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
        j.pass(
            Check::InverseMutation,
            format!(
                "each of the {} changed files restores at least one broken test",
                bug_files.len()
            ),
        );
        Ok(())
    }

    fn cross_check(
        &self,
        check: Check,
        label: &str,
        run: &TestRun,
        known: &[String],
    ) -> Result<(), Rejection> {
        if !run.tampered.is_empty() {
            return Err(reject(
                check,
                RejectCode::Tampered,
                format!(
                    "the {label} run was tampered with: {}",
                    list(&run.tampered, 5)
                ),
            ));
        }
        let Some(trusted) = &run.trusted else {
            return Ok(());
        };
        let name = trusted.format.name();
        let d = trusted::cross_check(&run.claimed, trusted, known);
        if d.is_empty() {
            return Ok(());
        }
        if let Some(why) = &trusted.incomplete {
            return Err(reject(
                check,
                RejectCode::IncompleteRun,
                format!(
                    "the {label} run is incomplete for the trusted {name} parser ({why}), so no test counts as passed, but the injector's parser reports {} passing: {}",
                    d.len(),
                    list(&d.iter().map(|x| x.test.clone()).collect::<Vec<_>>(), 5)
                ),
            ));
        }
        let shown: Vec<String> = d
            .iter()
            .take(5)
            .map(|x| {
                format!(
                    "{} (parser: {}, {name}: {:?})",
                    x.test,
                    x.claimed.as_deref().unwrap_or("absent"),
                    x.trusted
                )
            })
            .collect();
        Err(reject(
            check,
            RejectCode::ParserDisagrees,
            format!(
                "in the {label} run the injector's parser disagrees with the trusted {name} parser on {} tests: {}",
                d.len(),
                shown.join("; ")
            ),
        ))
    }
}

fn run_failure_on_original(e: &RunFailure) -> Rejection {
    let code = match e {
        RunFailure::ScriptTimedOut { .. } => RejectCode::ScriptTimeout,
        RunFailure::ParserTimedOut { .. } | RunFailure::ParserExit { .. } => {
            RejectCode::ParserFailed
        }
        RunFailure::ParserOutput { .. } => RejectCode::ParserBadOutput,
        RunFailure::Sandbox(_) | RunFailure::Setup(_) => RejectCode::Infra,
    };
    reject(Check::Parser, code, format!("on the original code: {e}"))
}

fn ok_run(check: Check, label: &str, r: Result<TestRun, RunFailure>) -> Result<TestRun, Rejection> {
    r.map_err(|e| {
        // The sandbox or the host failing is infra, not the artifact's doing.
        let code = match e {
            RunFailure::Sandbox(_) | RunFailure::Setup(_) => RejectCode::Infra,
            RunFailure::ScriptTimedOut { .. }
            | RunFailure::ParserTimedOut { .. }
            | RunFailure::ParserExit { .. }
            | RunFailure::ParserOutput { .. } => RejectCode::RunFailed,
        };
        reject(check, code, format!("the {label} run failed: {e}"))
    })
}
