//! The machine-readable result of verification (`VerificationReport`), serialised as
//! JSON by `ssr verify --json` and stored next to each bug.
//!
//! JSON shape (all keys always present; `null` where noted):
//! ```text
//! { "valid": bool,
//!   "rejected_by": null | "files" | "parser" | "original_passes" | "scope"
//!                  | "bug_breaks_tests" | "weakening_hides" | "inverse_mutation",
//!   "code": null | RejectCode (snake_case, see the enum),
//!   "reason": null | string,
//!   "checks": [ { "check", "passed", "code", "reason", "ms" } ... ],   // in order, up to the first failure
//!   "runs":   [ { "label", "phase", "prep_ms", "script_ms", "parser_ms", "total_ms",
//!                 "passed", "failed", "error" } ... ],
//!   "fail_to_pass": [test id], "pass_to_pass": [test id],             // empty unless valid
//!   "log_format": null | "pytest" | "cargo_test" | "go_test" | "unittest",
//!   "parallel": bool, "wall_ms": u64 }
//! ```
//!
//! Does not own: producing the report (that is `verify`).

use crate::trusted::LogFormat;
use serde::{Deserialize, Serialize};

/// The seven checks of `SSR_SPEC.md` section 3, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Files,
    Parser,
    OriginalPasses,
    Scope,
    BugBreaksTests,
    WeakeningHides,
    InverseMutation,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::Files,
        Check::Parser,
        Check::OriginalPasses,
        Check::Scope,
        Check::BugBreaksTests,
        Check::WeakeningHides,
        Check::InverseMutation,
    ];

    /// 1-based number of the check in the spec.
    pub fn number(self) -> usize {
        Check::ALL.iter().position(|c| *c == self).unwrap_or(0) + 1
    }
}

/// Why a check failed, as a stable code for machines (the `reason` says it for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// Check 1: `test_files.txt` is empty.
    NoTestFiles,
    /// Check 1: a path is absolute, leaves the repository or names `.git`.
    PathOutsideRepo,
    /// Check 1: an oracle file does not exist (as a regular file) in the original.
    TestFileMissing,
    /// Check 1: a diff cannot be read.
    MalformedDiff,
    /// Check 1: the weakening touches a file not listed in `test_files.txt`.
    WeakenTouchesUnlisted,
    /// Check 1: the bug touches an oracle file or a file the weakening touches.
    BugTouchesTests,
    /// Check 1: a diff does not apply cleanly.
    DiffDoesNotApply,
    /// Check 2: the test script ran past the hard timeout.
    ScriptTimeout,
    /// Check 2: the test script took longer than the soft limit on the original.
    ScriptTooSlow,
    /// Check 2: the parser exited non-zero or timed out.
    ParserFailed,
    /// Check 2: the parser's output is not a JSON object of strings.
    ParserBadOutput,
    /// Check 2: the parser reported no tests.
    NoTests,
    /// Check 2: a status other than `passed`/`failed`.
    BadStatusValue,
    /// Any run: the injector's parser disagrees with a trusted parser.
    ParserDisagrees,
    /// Any run: the trusted parser finds the log incomplete (the framework's final
    /// summary missing, or its counts not matching the per-test lines), so no test
    /// counts as passed, while the injector's parser reports passing tests.
    IncompleteRun,
    /// Check 3: a test fails on the original code.
    OriginalFails,
    /// Check 3: fewer than `min_passing_tests` tests.
    TooFewTests,
    /// Check 3: statuses differ between the two original runs.
    Flaky,
    /// Check 4: fewer than `min_changed_files` code files changed.
    TooFewChangedFiles,
    /// Checks 5–7: the run of that state failed (timeout, parser crash).
    RunFailed,
    /// Any check: the sandbox could not run a command or the host could not prepare
    /// the run (`ssr_game::score`'s infra): not the artifact's fault, so no verdict on
    /// it; an injector whose bug got this has no reward.
    Infra,
    /// Check 5: fewer than `min_failing_tests` tests of `P` fail.
    BugBreaksNothing,
    /// Check 5: no test of `P` passes with the bug.
    BugBreaksEverything,
    /// Check 6: every test of `F` still fails with the weakening.
    WeakeningHidesNothing,
    /// Check 7: restoring one changed file makes no test of `F` pass (padding).
    InverseRestoresNothing,
    /// Any run: the code under test forged its result (a canary with the wrong
    /// outcome or none, a report contradicting a test's own call, a protected file
    /// written during the run); or, under `VerifyConfig::reject_tampering_findings`,
    /// check 1's scan of the bug found runner tampering.
    Tampered,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: Check,
    pub passed: bool,
    pub code: Option<RejectCode>,
    pub reason: String,
    pub ms: u64,
}

/// Which group of runs a run belongs to (runs of one phase may run concurrently).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Original,
    Mutated,
}

/// Timings and counts of one test run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `original#1`, `bug`, `bug+weaken`, `restore:<file>`.
    pub label: String,
    pub phase: Phase,
    /// Building the workspace (copy, patches, restores).
    pub prep_ms: u64,
    pub script_ms: u64,
    pub parser_ms: u64,
    /// From the start of preparation to the parsed result, sandbox starts included.
    pub total_ms: u64,
    pub passed: usize,
    pub failed: usize,
    /// Why the run gave no result, when it did not.
    pub error: Option<String>,
    /// The run's canary secret (hex, from the OS random source), when a pytest
    /// session loaded the trusted reporter: the record of which canaries it ran.
    #[serde(default)]
    pub reporter_secret: Option<String>,
}

/// The verifier's verdict on one artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationReport {
    pub valid: bool,
    pub rejected_by: Option<Check>,
    pub code: Option<RejectCode>,
    pub reason: Option<String>,
    pub checks: Vec<CheckResult>,
    pub runs: Vec<RunRecord>,
    /// `F`: tests of `P` that the bug breaks (sorted).
    pub fail_to_pass: Vec<String>,
    /// `P \ F` (sorted).
    pub pass_to_pass: Vec<String>,
    pub log_format: Option<LogFormat>,
    pub parallel: bool,
    pub wall_ms: u64,
    /// Findings of the scan of `bug_inject.diff` for runner tampering (`scan`).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl VerificationReport {
    /// The set `P`: every test the original passes.
    pub fn all_tests(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .fail_to_pass
            .iter()
            .chain(&self.pass_to_pass)
            .cloned()
            .collect();
        p.sort();
        p
    }

    /// Sum over runs of script + parser time: the test work the verification did.
    pub fn test_time_sum_ms(&self) -> u64 {
        self.runs.iter().map(|r| r.script_ms + r.parser_ms).sum()
    }

    /// The critical path of the test work: per phase, the longest run when runs
    /// were concurrent, the sum when they were not.
    pub fn critical_path_ms(&self) -> u64 {
        [Phase::Original, Phase::Mutated]
            .iter()
            .map(|ph| {
                let it = self
                    .runs
                    .iter()
                    .filter(|r| r.phase == *ph)
                    .map(|r| r.script_ms + r.parser_ms);
                if self.parallel {
                    it.max().unwrap_or(0)
                } else {
                    it.sum()
                }
            })
            .sum()
    }

    /// One line for people: `valid (F=2, P\F=18)` or `rejected by check 5 ...`.
    pub fn summary(&self) -> String {
        if self.valid {
            format!(
                "valid bug: {} FAIL_TO_PASS, {} PASS_TO_PASS ({} ms)",
                self.fail_to_pass.len(),
                self.pass_to_pass.len(),
                self.wall_ms
            )
        } else {
            let check = self.rejected_by.map(|c| c.number()).unwrap_or(0);
            format!(
                "rejected by check {check} ({}): {}",
                self.rejected_by
                    .map(|c| serde_json::to_string(&c).unwrap_or_default())
                    .unwrap_or_default()
                    .trim_matches('"'),
                self.reason.as_deref().unwrap_or("")
            )
        }
    }
}
