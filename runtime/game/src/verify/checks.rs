//! Checks 2 to 7 judged on the runs, in order, and the cross-check of every run
//! against the trusted parsers.
//!
//! Does not own: check 1 (`files`), or running the states (`runner`).

use super::runner::RepoState;
use super::{Rejection, Verifier, list, reject};
use crate::artifact::Artifact;
use crate::report::{Check, Phase, RejectCode, VerificationReport};
use crate::testrun::{RunFailure, TestRun};
use crate::trusted;
use crate::workspace::WorkspaceBase;
use std::collections::BTreeSet;
use std::time::Instant;

impl Verifier<'_> {
    pub(super) fn checks(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
        report: &mut VerificationReport,
    ) -> Result<(), Rejection> {
        let cfg = &self.cfg;
        let mut since = Instant::now();

        // 1. Files, and the scan of the bug for runner tampering.
        let bug_files = self.check_files(base, artifact)?;
        report.notes = crate::scan::scan_artifact(artifact)
            .iter()
            .map(|f| f.note())
            .collect();
        if cfg.reject_tampering_findings && !report.notes.is_empty() {
            return Err(reject(
                Check::Files,
                RejectCode::Tampered,
                format!(
                    "the bug tampers with the test runner: {}",
                    list(&report.notes, 5)
                ),
            ));
        }
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
        let runs = self.run_many(base, artifact, &states, Phase::Original);
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
        report.log_format = first.trusted.as_ref().map(|t| t.format);
        self.cross_check(Check::Parser, "original", first, &[])?;
        Self::pass(
            report,
            Check::Parser,
            format!(
                "the parser reported {} tests{}",
                first.claimed.len(),
                match report.log_format {
                    Some(f) => format!(", in agreement with the trusted {} parser", f.name()),
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
        let runs = self.run_many(base, artifact, &states, Phase::Mutated);
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
