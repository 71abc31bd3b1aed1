//! Built-in ("trusted") parsers of test logs: pytest `-rA`, `cargo test`, `go test -v`
//! and Python `unittest`. The verifier parses every log with these as well as with the
//! injector's `test_parser.py` and rejects the artifact when the two disagree on a
//! test's status (the parser-gaming cheat of `SSR_SPEC.md` section 11).
//!
//! Does not own: running tests (that is `testrun`), or the generated `test_parser.py`
//! files of the procedural injectors (`inject::scripts`, which emit Python twins of
//! these parsers).

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A recognised test-log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pytest,
    CargoTest,
    GoTest,
    Unittest,
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

static PYTEST_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+?)(?: - .*)?$").unwrap()
});
static PYTEST_SUMMARY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^=+ short test summary info =+$").unwrap());
static CARGO_RUNNING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*Running (?:unittests )?(\S+)").unwrap());
static CARGO_DOC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*Doc-tests (\S+)").unwrap());
static CARGO_TEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^test (.+?) \.\.\. (ok|FAILED|ignored)(?:,.*)?$").unwrap());
static CARGO_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^running \d+ tests?$").unwrap());
static GO_RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(").unwrap());
static UNITTEST_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\w+) \(([\w.]+)\) \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$",
    )
    .unwrap()
});
static UNITTEST_RAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^Ran \d+ tests? in ").unwrap());

/// Recognises the format of a log, or `None` when it is none of the four.
/// Order matters: pytest's summary is the most specific marker, then cargo's
/// `running N tests` header, then go's `--- PASS:` lines, then unittest's footer.
pub fn detect(log: &str) -> Option<LogFormat> {
    if log.lines().any(|l| PYTEST_SUMMARY.is_match(l.trim_end())) {
        return Some(LogFormat::Pytest);
    }
    if log.lines().any(|l| CARGO_HEADER.is_match(l.trim_end()))
        && log.lines().any(|l| CARGO_TEST.is_match(l.trim_end()))
    {
        return Some(LogFormat::CargoTest);
    }
    if log.lines().any(|l| GO_RESULT.is_match(l)) {
        return Some(LogFormat::GoTest);
    }
    if UNITTEST_RAN.is_match(log) {
        return Some(LogFormat::Unittest);
    }
    None
}

/// Detects the format and parses the log. Id schemes:
/// - pytest: the node id of the `-rA` summary (`tests/test_a.py::TestX::test_y`);
/// - cargo: `<target>::<test path>` where target is the path after `Running`
///   (`tests/parse.rs`, `src/lib.rs`) or `doc` for doc-tests;
/// - go: the test name (`TestFoo`, `TestFoo/sub`);
/// - unittest: `module.Class.test_name`.
pub fn parse_log(log: &str) -> Option<(LogFormat, TrustedResults)> {
    let format = detect(log)?;
    let results = match format {
        LogFormat::Pytest => parse_pytest(log),
        LogFormat::CargoTest => parse_cargo(log),
        LogFormat::GoTest => parse_go(log),
        LogFormat::Unittest => parse_unittest(log),
    };
    Some((format, results))
}

/// Worst status wins when an id appears twice (a test reported passed and then
/// erroring in teardown is failed).
fn record(map: &mut TrustedResults, id: String, status: TrustedStatus) {
    let rank = |s: TrustedStatus| match s {
        TrustedStatus::Other => 0,
        TrustedStatus::Passed => 1,
        TrustedStatus::Failed => 2,
    };
    match map.get(&id) {
        Some(old) if rank(*old) >= rank(status) => {}
        _ => {
            map.insert(id, status);
        }
    }
}

fn parse_pytest(log: &str) -> TrustedResults {
    let mut out = TrustedResults::new();
    let mut in_summary = false;
    for line in log.lines() {
        let line = line.trim_end();
        if PYTEST_SUMMARY.is_match(line) {
            in_summary = true;
            continue;
        }
        if !in_summary {
            continue;
        }
        if let Some(c) = PYTEST_LINE.captures(line) {
            let status = match &c[1] {
                "PASSED" | "XPASS" => TrustedStatus::Passed,
                "FAILED" | "ERROR" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            record(&mut out, c[2].to_string(), status);
        }
    }
    out
}

fn parse_cargo(log: &str) -> TrustedResults {
    let mut out = TrustedResults::new();
    let mut target = String::from("unknown");
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(c) = CARGO_DOC.captures(line) {
            target = format!("doc:{}", &c[1]);
            continue;
        }
        if let Some(c) = CARGO_RUNNING.captures(line) {
            target = c[1].to_string();
            continue;
        }
        if let Some(c) = CARGO_TEST.captures(line) {
            let status = match &c[2] {
                "ok" => TrustedStatus::Passed,
                "FAILED" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            record(&mut out, format!("{target}::{}", &c[1]), status);
        }
    }
    out
}

fn parse_go(log: &str) -> TrustedResults {
    let mut out = TrustedResults::new();
    for line in log.lines() {
        if let Some(c) = GO_RESULT.captures(line) {
            let status = match &c[1] {
                "PASS" => TrustedStatus::Passed,
                "FAIL" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            record(&mut out, c[2].to_string(), status);
        }
    }
    out
}

fn parse_unittest(log: &str) -> TrustedResults {
    let mut out = TrustedResults::new();
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(c) = UNITTEST_LINE.captures(line) {
            let name = &c[1];
            let qual = &c[2];
            // Python 3.11 prints `test_x (mod.Class.test_x)`; older versions print
            // `test_x (mod.Class)`. Normalise both to `mod.Class.test_x`.
            let id = if qual.ends_with(&format!(".{name}")) {
                qual.to_string()
            } else {
                format!("{qual}.{name}")
            };
            let status = match &c[3] {
                "ok" | "unexpected success" => TrustedStatus::Passed,
                "FAIL" | "ERROR" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            record(&mut out, id, status);
        }
    }
    out
}

/// One disagreement between the injector's parser and a trusted parser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The id as the injector's parser wrote it (or the trusted id when the injector
    /// left a failing test out).
    pub test: String,
    /// What the injector's parser said (`None`: absent).
    pub claimed: Option<String>,
    /// What the trusted parser read in the log.
    pub trusted: TrustedStatus,
}

/// True when `long` ends with `short` at an id boundary (`::`, `.`, `/`, space).
fn suffix_match(long: &str, short: &str) -> bool {
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
    if let Some(s) = trusted.get(id) {
        return vec![(trusted.get_key_value(id).unwrap().0, *s)];
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
/// pass/fail status (skipped tests are not compared), or (b) a test in `known` (the
/// set `P`, by the injector's ids) that the injector left out while the trusted
/// parser saw it fail: leaving a failing test out would fake "deleted by the
/// weakening" in check 6.
pub fn cross_check(
    claimed: &BTreeMap<String, String>,
    trusted: &TrustedResults,
    known: &[String],
) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for (id, value) in claimed {
        let claimed_pass = value == "passed";
        for (_, status) in matching(trusted, id) {
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
        if matching(trusted, id)
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

#[cfg(test)]
mod tests {
    use super::*;

    const PYTEST: &str = "\
============================= test session starts ==============================
collected 3 items

tests/test_a.py::test_one PASSED                                         [ 33%]
tests/test_a.py::TestX::test_two FAILED                                  [ 66%]
tests/test_b.py::test_three SKIPPED (why)                                [100%]

=========================== short test summary info ============================
PASSED tests/test_a.py::test_one
FAILED tests/test_a.py::TestX::test_two - AssertionError: assert 1 == 2
SKIPPED [1] tests/test_b.py:3: why
ERROR tests/test_b.py::test_four - ValueError
==================== 1 failed, 1 passed, 1 skipped in 0.03s ====================
";

    const CARGO: &str = "\
   Compiling ledger v0.1.0 (/repo)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.02s
     Running unittests src/lib.rs (target/debug/deps/ledger-abc)

running 1 test
test money::tests::adds ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/parse.rs (target/debug/deps/parse-def)

running 3 tests
test parses_amount ... ok
test rejects_garbage ... FAILED
test slow_one ... ignored, needs network

   Doc-tests ledger

running 1 test
test src/lib.rs - add (line 3) ... ok
";

    const GO: &str = "\
=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestSub
=== RUN   TestSub/neg
    --- FAIL: TestSub/neg (0.00s)
--- FAIL: TestSub (0.00s)
--- SKIP: TestNet (0.00s)
FAIL
";

    const UNITTEST: &str = "\
test_add (test_calc.TestCalc.test_add) ... ok
test_div (test_calc.TestCalc.test_div) ... FAIL
test_old (test_calc.TestOld) ... ERROR
test_skip (test_calc.TestCalc.test_skip) ... skipped 'no'

----------------------------------------------------------------------
Ran 4 tests in 0.001s

FAILED (failures=1, errors=1, skipped=1)
";

    fn check(log: &str, format: LogFormat, expected: &[(&str, TrustedStatus)]) {
        let (f, r) = parse_log(log).expect("format recognised");
        assert_eq!(f, format);
        let want: TrustedResults = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(r, want);
    }

    use TrustedStatus::*;

    #[test]
    fn pytest_summary_is_parsed() {
        check(
            PYTEST,
            LogFormat::Pytest,
            &[
                ("tests/test_a.py::test_one", Passed),
                ("tests/test_a.py::TestX::test_two", Failed),
                ("tests/test_b.py::test_four", Failed),
            ],
        );
    }

    #[test]
    fn cargo_targets_prefix_ids() {
        check(
            CARGO,
            LogFormat::CargoTest,
            &[
                ("src/lib.rs::money::tests::adds", Passed),
                ("tests/parse.rs::parses_amount", Passed),
                ("tests/parse.rs::rejects_garbage", Failed),
                ("tests/parse.rs::slow_one", Other),
                ("doc:ledger::src/lib.rs - add (line 3)", Passed),
            ],
        );
    }

    #[test]
    fn go_subtests_are_separate() {
        check(
            GO,
            LogFormat::GoTest,
            &[
                ("TestAdd", Passed),
                ("TestSub", Failed),
                ("TestSub/neg", Failed),
                ("TestNet", Other),
            ],
        );
    }

    #[test]
    fn unittest_old_and_new_qualnames() {
        check(
            UNITTEST,
            LogFormat::Unittest,
            &[
                ("test_calc.TestCalc.test_add", Passed),
                ("test_calc.TestCalc.test_div", Failed),
                ("test_calc.TestOld.test_old", Failed),
                ("test_calc.TestCalc.test_skip", Other),
            ],
        );
    }

    #[test]
    fn garbage_is_no_format() {
        assert_eq!(detect("hello\nworld\n"), None);
    }

    #[test]
    fn cross_check_matches_short_ids_and_flags_lies() {
        let (_, trusted) = parse_log(PYTEST).unwrap();
        let honest: BTreeMap<String, String> = [
            ("test_one", "passed"),
            ("tests/test_a.py::TestX::test_two", "failed"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(cross_check(&honest, &trusted, &[]).is_empty());
        let liar: BTreeMap<String, String> = [("TestX::test_two", "passed")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let d = cross_check(&liar, &trusted, &[]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].trusted, Failed);
        // Leaving a failing known test out is a disagreement too.
        let omit = BTreeMap::new();
        let d = cross_check(&omit, &trusted, &["test_a.py::TestX::test_two".into()]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].claimed, None);
    }
}
