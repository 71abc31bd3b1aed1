//! Built-in ("trusted") parsers of test logs: pytest `-rA`, `cargo test`, `go test -v`
//! and Python `unittest`. The verifier parses every log with these as well as with the
//! injector's `test_parser.py` and rejects the artifact when the two disagree on a
//! test's status (the parser-gaming cheat of `SSR_SPEC.md` section 11); the evaluator
//! counts a test as passed only when both say so.
//!
//! Hardening against fake status lines (code under test can print anything into the
//! log, e.g. `tests/test_x.py::test_a PASSED` at import or inside a test):
//! - a test with a failing status anywhere in the log is failed, whatever else says;
//! - the same id reported twice with different statuses is failed;
//! - pytest statuses are read only from the final `short test summary info` section;
//! - the framework's final summary line is required (pytest `=== N passed ... in Xs ===`,
//!   cargo `test result:` closing every `running N tests` block, go `ok`/`FAIL` after the
//!   last test, unittest `Ran N tests` with `OK`/`FAILED (...)`), and its counts must
//!   match the per-test statuses read; otherwise the run is *incomplete* and every
//!   test counts as not passed ([`TrustedParse::incomplete`]).
//!
//! Residual limit of the log alone: code that hijacks the test process itself (prints
//! a complete fake summary with matching counts, then exits; or monkeypatches the
//! framework's reporter) still forges a consistent log. For pytest, unittest and
//! cargo test the trusted reporter (`reporter`, merged in `testrun`) closes that with
//! canaries and events that do not travel through the log; for go test the read-only
//! tests and the patch scan (`scan`) are the remaining layers.
//!
//! Does not own: running tests (that is `testrun`), or the generated `test_parser.py`
//! files of the procedural injectors (`inject::scripts`, which emit Python twins of
//! these parsers).

mod formats;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use formats::detect;

/// A recognised test-log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pytest,
    CargoTest,
    GoTest,
    Unittest,
}

impl LogFormat {
    /// The framework's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Pytest => "pytest",
            LogFormat::CargoTest => "cargo test",
            LogFormat::GoTest => "go test",
            LogFormat::Unittest => "unittest",
        }
    }
}

/// A test's status as read by a trusted parser. Skipped and expected-failure tests
/// are `Other`: the game's JSON has no value for them, so they are not cross-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedStatus {
    Passed,
    Failed,
    Other,
}

/// Statuses keyed by test id, in the id scheme of each format (documented on
/// [`parse_log`]).
pub type TrustedResults = BTreeMap<String, TrustedStatus>;

/// A trusted parser's reading of one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedParse {
    pub format: LogFormat,
    pub results: TrustedResults,
    /// Why the run counts as incomplete (final summary missing, or its counts do not
    /// match the per-test statuses); `None` for a complete run. In an incomplete run
    /// every test counts as not passed.
    pub incomplete: Option<String>,
}

impl TrustedParse {
    /// Whether the trusted reading lets the test `id` (an injector id) count as
    /// passed: the run is complete and no matching trusted test has another status.
    /// An id the trusted parser did not see is left to the injector's parser.
    pub fn allows_pass(&self, id: &str) -> bool {
        self.incomplete.is_none()
            && matching(&self.results, id)
                .iter()
                .all(|(_, s)| *s == TrustedStatus::Passed)
    }
}

/// Detects the format and parses the log. Id schemes:
/// - pytest: the node id of the `-rA` summary (`tests/test_a.py::TestX::test_y`);
/// - cargo: `<target>::<test path>` where target is the path after `Running`
///   (`tests/parse.rs`, `src/lib.rs`) or `doc:<crate>` for doc-tests;
/// - go: the test name (`TestFoo`, `TestFoo/sub`);
/// - unittest: `module.Class.test_name`.
pub fn parse_log(log: &str) -> Option<TrustedParse> {
    let format = detect(log)?;
    let (results, incomplete) = match format {
        LogFormat::Pytest => formats::parse_pytest(log),
        LogFormat::CargoTest => formats::parse_cargo(log),
        LogFormat::GoTest => formats::parse_go(log),
        LogFormat::Unittest => formats::parse_unittest(log),
    };
    Some(TrustedParse {
        format,
        results,
        incomplete,
    })
}

/// Records a status. A failing status always wins; two different statuses for one id
/// (a duplicated, conflicting entry) make it failed.
pub(crate) fn record(map: &mut TrustedResults, id: String, status: TrustedStatus) {
    match map.get(&id) {
        Some(old) if *old == status => {}
        Some(_) => {
            map.insert(id, TrustedStatus::Failed);
        }
        None => {
            map.insert(id, status);
        }
    }
}

/// One disagreement between the injector's parser and a trusted parser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The id as the injector's parser wrote it (or the trusted id when the injector
    /// left a failing test out).
    pub test: String,
    /// What the injector's parser said (`None`: absent).
    pub claimed: Option<String>,
    /// What the trusted parser read in the log (`Failed` for every test of an
    /// incomplete run).
    pub trusted: TrustedStatus,
}

/// True when `long` ends with `short` at an id boundary (`::`, `.`, `/`, space).
pub(crate) fn suffix_match(long: &str, short: &str) -> bool {
    if long == short {
        return true;
    }
    match long.strip_suffix(short) {
        Some(prefix) => {
            prefix.ends_with("::")
                || prefix.ends_with('.')
                || prefix.ends_with('/')
                || prefix.ends_with(' ')
        }
        None => false,
    }
}

/// The trusted ids an injector id refers to: the exact id, else every trusted id the
/// injector id is a boundary suffix of, or that is a boundary suffix of it (parsers
/// name tests differently: `test_a` vs `tests/test_x.py::test_a`).
fn matching<'a>(trusted: &'a TrustedResults, id: &str) -> Vec<(&'a String, TrustedStatus)> {
    if let Some((k, s)) = trusted.get_key_value(id) {
        return vec![(k, *s)];
    }
    trusted
        .iter()
        .filter(|(t, _)| suffix_match(t, id) || suffix_match(id, t))
        .map(|(t, s)| (t, *s))
        .collect()
}

/// Cross-checks the injector's claimed statuses against the trusted ones.
///
/// A disagreement is (a) a claimed id whose matching trusted tests have a different
/// pass/fail status (skipped tests are not compared), (b) a test in `known` (the set
/// `P`, by the injector's ids) that the injector left out while the trusted parser saw
/// it fail: leaving a failing test out would fake "deleted by the weakening" in check
/// 6, or (c) in an incomplete run, every test the injector's parser says passed.
pub fn cross_check(
    claimed: &BTreeMap<String, String>,
    trusted: &TrustedParse,
    known: &[String],
) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for (id, value) in claimed {
        let claimed_pass = value == "passed";
        if trusted.incomplete.is_some() {
            if claimed_pass {
                out.push(Disagreement {
                    test: id.clone(),
                    claimed: Some(value.clone()),
                    trusted: TrustedStatus::Failed,
                });
            }
            continue;
        }
        for (_, status) in matching(&trusted.results, id) {
            let differs = match status {
                TrustedStatus::Passed => !claimed_pass,
                TrustedStatus::Failed => claimed_pass,
                TrustedStatus::Other => false,
            };
            if differs {
                out.push(Disagreement {
                    test: id.clone(),
                    claimed: Some(value.clone()),
                    trusted: status,
                });
                break;
            }
        }
    }
    for id in known {
        if claimed.contains_key(id) {
            continue;
        }
        if matching(&trusted.results, id)
            .iter()
            .any(|(_, s)| *s == TrustedStatus::Failed)
        {
            out.push(Disagreement {
                test: id.clone(),
                claimed: None,
                trusted: TrustedStatus::Failed,
            });
        }
    }
    out
}
