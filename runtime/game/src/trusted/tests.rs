//! Unit tests of the trusted parsers: each format read right, and each way of faking a
//! status line refused.

use super::*;
use TrustedStatus::*;

const PYTEST: &str = "\
============================= test session starts ==============================
collected 4 items

tests/test_a.py::test_one PASSED                                         [ 25%]
tests/test_a.py::TestX::test_two FAILED                                  [ 50%]
tests/test_b.py::test_three SKIPPED (why)                                [ 75%]
tests/test_b.py::test_four ERROR                                         [100%]

=========================== short test summary info ============================
PASSED tests/test_a.py::test_one
FAILED tests/test_a.py::TestX::test_two - AssertionError: assert 1 == 2
SKIPPED [1] tests/test_b.py:3: why
ERROR tests/test_b.py::test_four - ValueError
=============== 1 failed, 1 passed, 1 skipped, 1 error in 0.03s ================
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

failures:

---- rejects_garbage stdout ----
thread 'rejects_garbage' panicked at tests/parse.rs:9:5

failures:
    rejects_garbage

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests ledger

running 1 test
test src/lib.rs - add (line 3) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
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
FAIL\texample.com/calc\t0.002s
";

const UNITTEST: &str = "\
test_add (test_calc.TestCalc.test_add) ... ok
test_div (test_calc.TestCalc.test_div) ... FAIL
test_old (test_calc.TestOld) ... ERROR
test_skip (test_calc.TestCalc.test_skip) ... skipped 'no'

======================================================================
ERROR: test_old (test_calc.TestOld)
----------------------------------------------------------------------
ZeroDivisionError: division by zero

======================================================================
FAIL: test_div (test_calc.TestCalc.test_div)
----------------------------------------------------------------------
AssertionError: 1 != 2

----------------------------------------------------------------------
Ran 4 tests in 0.001s

FAILED (failures=1, errors=1, skipped=1)
";

fn parse(log: &str) -> TrustedParse {
    parse_log(log).expect("format recognised")
}

fn check(log: &str, format: LogFormat, expected: &[(&str, TrustedStatus)]) {
    let p = parse(log);
    assert_eq!(p.format, format);
    assert_eq!(p.incomplete, None, "{log}");
    let want: TrustedResults = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(p.results, want);
}

fn claims(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

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
fn pytest_quiet_final_line_without_equals_is_accepted() {
    let log = "\
=========================== short test summary info ============================
PASSED t.py::a
1 passed in 0.01s
";
    check(log, LogFormat::Pytest, &[("t.py::a", Passed)]);
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

/// Regression (red-team suite): a test binary whose stdout went through a pipe the
/// code under test put in front of it printed its lines after cargo's next
/// `Doc-tests` line; they were read as doc-tests' ids, out of reach of the cargo
/// reporter's judgement of the binary.
#[test]
fn cargo_lines_delayed_past_the_next_running_line_belong_to_their_block() {
    let log = "     Running tests/ops.rs (target/debug/deps/ops-1)

running 2 tests
test subs ... ok
   Doc-tests calc
test adds ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s


running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
    check(
        log,
        LogFormat::CargoTest,
        &[
            ("tests/ops.rs::subs", Passed),
            ("tests/ops.rs::adds", Passed),
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
fn unittest_status_after_output_or_docstring_is_read() {
    let log = "\
test_a (m.C.test_a) ... hello from the test
ok
test_b (m.C.test_b)
Adds two numbers. ... ok

----------------------------------------------------------------------
Ran 2 tests in 0.001s

OK
";
    check(
        log,
        LogFormat::Unittest,
        &[("m.C.test_a", Passed), ("m.C.test_b", Passed)],
    );
}

#[test]
fn garbage_is_no_format() {
    assert_eq!(detect("hello\nworld\n"), None);
}

#[test]
fn cross_check_matches_short_ids_and_flags_lies() {
    let trusted = parse(PYTEST);
    let honest = claims(&[
        ("test_one", "passed"),
        ("tests/test_a.py::TestX::test_two", "failed"),
    ]);
    assert!(cross_check(&honest, &trusted, &[]).is_empty());
    let liar = claims(&[("TestX::test_two", "passed")]);
    let d = cross_check(&liar, &trusted, &[]);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].trusted, Failed);
    // Leaving a failing known test out is a disagreement too.
    let d = cross_check(
        &BTreeMap::new(),
        &trusted,
        &["test_a.py::TestX::test_two".into()],
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].claimed, None);
}

/// Solver code printed `PASSED` lines (a whole fake summary section) at import, before
/// pytest's real report: only the final section counts, and the real FAILED wins.
#[test]
fn fake_passed_lines_at_import_do_not_pass_a_failing_test() {
    let log = "\
============================= test session starts ==============================
=========================== short test summary info ============================
PASSED tests/test_x.py::test_a
tests/test_x.py::test_a PASSED
============================== 1 passed in 0.01s ===============================
collected 2 items

tests/test_x.py::test_a FAILED                                           [ 50%]
tests/test_x.py::test_b PASSED                                           [100%]

=========================== short test summary info ============================
PASSED tests/test_x.py::test_b
FAILED tests/test_x.py::test_a - assert 1 == 2
========================= 1 failed, 1 passed in 0.02s ==========================
";
    let p = parse(log);
    assert_eq!(p.incomplete, None);
    assert_eq!(p.results["tests/test_x.py::test_a"], Failed);
    assert!(!p.allows_pass("tests/test_x.py::test_a"));
    assert!(p.allows_pass("tests/test_x.py::test_b"));
}

/// Solver code printed fake lines from inside a test and then killed the process before
/// pytest's own summary: without the final line the run is incomplete.
#[test]
fn fake_passed_lines_inside_a_test_without_final_line_make_the_run_incomplete() {
    let log = "\
============================= test session starts ==============================
collected 1 item

tests/test_x.py::test_a
=========================== short test summary info ============================
PASSED tests/test_x.py::test_a
";
    let p = parse(log);
    assert!(p.incomplete.is_some());
    assert!(!p.allows_pass("tests/test_x.py::test_a"));
    let d = cross_check(&claims(&[("tests/test_x.py::test_a", "passed")]), &p, &[]);
    assert_eq!(d.len(), 1);
}

/// A fake PASSED line slipped into the real summary section no longer matches the
/// final line's counts.
#[test]
fn fake_line_in_the_real_section_breaks_the_count_cross_check() {
    let log = "\
=========================== short test summary info ============================
PASSED tests/test_x.py::test_b
PASSED tests/test_x.py::test_a
=============================== 1 passed in 0.02s ===============================
";
    let p = parse(log);
    assert!(
        p.incomplete.as_deref().unwrap().contains("1 passed"),
        "{p:?}"
    );
    assert!(!p.allows_pass("tests/test_x.py::test_b"));
}

#[test]
fn conflicting_duplicates_are_failed() {
    let log = "\
=========================== short test summary info ============================
PASSED t.py::a
XFAIL t.py::a
=================== 1 passed, 1 xfailed in 0.02s ===================
";
    let p = parse(log);
    assert_eq!(p.results["t.py::a"], Failed);
}

#[test]
fn cargo_block_without_result_or_with_wrong_counts_is_incomplete() {
    let cut = CARGO.split("failures:").next().unwrap();
    assert!(parse(cut).incomplete.is_some());
    let forged = CARGO.replace(
        "test parses_amount ... ok\n",
        "test parses_amount ... ok\ntest forged ... ok\n",
    );
    let p = parse(&forged);
    assert!(
        p.incomplete.as_deref().unwrap().contains("tests/parse.rs"),
        "{p:?}"
    );
    // A fake `ok` for a test that really failed: the failing status wins.
    let fake_ok = CARGO.replace(
        "test rejects_garbage ... FAILED\n",
        "test rejects_garbage ... FAILED\ntest rejects_garbage ... ok\n",
    );
    assert_eq!(
        parse(&fake_ok).results["tests/parse.rs::rejects_garbage"],
        Failed
    );
}

#[test]
fn go_without_package_line_or_ok_with_failures_is_incomplete() {
    let cut = GO
        .replace("FAIL\texample.com/calc\t0.002s\n", "")
        .replace("FAIL\n", "");
    assert!(parse(&cut).incomplete.is_some());
    let lying = GO.replace("FAIL\texample.com/calc", "ok  \texample.com/calc");
    let lying = lying.replace("\nFAIL\nok", "\nok");
    assert!(parse(&lying).incomplete.is_some());
}

#[test]
fn unittest_counts_must_match() {
    let extra = UNITTEST.replace(
        "test_add (test_calc.TestCalc.test_add) ... ok\n",
        "test_add (test_calc.TestCalc.test_add) ... ok\ntest_fake (test_calc.TestCalc.test_fake) ... ok\n",
    );
    assert!(parse(&extra).incomplete.is_some());
    let no_end = UNITTEST.replace("FAILED (failures=1, errors=1, skipped=1)\n", "");
    assert!(parse(&no_end).incomplete.is_some());
    let says_ok = UNITTEST.replace("FAILED (failures=1, errors=1, skipped=1)", "OK");
    assert!(parse(&says_ok).incomplete.is_some());
}

/// A real pytest 9 `-rA` log (captured, paths shortened) of parametrized tests whose
/// ids hold spaces, ` - `, brackets, quotes and escaped non-ASCII, a class mixed with
/// functions, an xfail, a skip and a warnings summary.
const PYTEST_SPACED_IDS: &str = r#"============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /tmp/rp/py
plugins: anyio-4.16.0
collected 13 items

test_ids.py ........F.xs.                                                [100%]

=================================== FAILURES ===================================
____________________________ TestMixed.test_m[p q] _____________________________
test_ids.py:14: in test_m
    assert v == "p q x"
E   AssertionError: assert 'p q' == 'p q x'
E     
E     - p q x
E     ?    --
E     + p q
=============================== warnings summary ===============================
test_ids.py::test_warn
  /repo/test_ids.py:30: UserWarning: careful
    warnings.warn("careful")

-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html
==================================== PASSES ====================================
=========================== short test summary info ============================
PASSED test_ids.py::test_p[a b]
PASSED test_ids.py::test_p[x - y]
PASSED test_ids.py::test_p[[br]]
PASSED test_ids.py::test_p[it's "q"]
PASSED test_ids.py::test_p[caf\xe9 \xfcn\xef]
PASSED test_ids.py::test_p[s5]
PASSED test_ids.py::test_ids[first case]
PASSED test_ids.py::test_ids[second - case]
PASSED test_ids.py::test_plain
PASSED test_ids.py::test_warn
SKIPPED [1] test_ids.py:24: no
XFAIL test_ids.py::test_xf[x y] - known
FAILED test_ids.py::TestMixed::test_m[p q] - AssertionError: assert 'p q' == ...
======== 1 failed, 10 passed, 1 skipped, 1 xfailed, 1 warning in 0.08s =========
"#;

/// Regression (issue 16): ids with spaces were cut at the first space, the summary
/// section then counted fewer passes than the final line, and a run that passed in
/// full was called incomplete.
#[test]
fn pytest_ids_with_spaces_brackets_quotes_and_non_ascii_parse_in_full() {
    check(
        PYTEST_SPACED_IDS,
        LogFormat::Pytest,
        &[
            ("test_ids.py::test_p[a b]", Passed),
            ("test_ids.py::test_p[x - y]", Passed),
            ("test_ids.py::test_p[[br]]", Passed),
            ("test_ids.py::test_p[it's \"q\"]", Passed),
            ("test_ids.py::test_p[caf\\xe9 \\xfcn\\xef]", Passed),
            ("test_ids.py::test_p[s5]", Passed),
            ("test_ids.py::test_ids[first case]", Passed),
            ("test_ids.py::test_ids[second - case]", Passed),
            ("test_ids.py::test_plain", Passed),
            ("test_ids.py::test_warn", Passed),
            ("test_ids.py::test_xf[x y]", Other),
            ("test_ids.py::TestMixed::test_m[p q]", Failed),
        ],
    );
}

#[test]
fn pytest_node_id_is_split_from_the_message() {
    use super::formats::pytest_node_id as id;
    assert_eq!(id("t.py::f"), "t.py::f");
    assert_eq!(id("t.py::f - boom"), "t.py::f");
    assert_eq!(id("t.py::f[a b] - assert [1] == [2]"), "t.py::f[a b]");
    assert_eq!(id("t.py::f[a - b]"), "t.py::f[a - b]");
    assert_eq!(id("t.py::f[[x]] - y"), "t.py::f[[x]]");
    assert_eq!(id("t.py::f - see [doc]"), "t.py::f");
    // No closing bracket at all (a cut line): up to the message.
    assert_eq!(id("t.py::f[a - b"), "t.py::f[a");
    let long = format!("t.py::f[{}]", "word ".repeat(400));
    assert_eq!(id(&format!("{long} - E")), long);
}

/// A verbose failing progress line with a spaced id fails that id even when a fake
/// summary says it passed.
#[test]
fn pytest_verbose_failure_of_a_spaced_id_wins() {
    let log = "\
t.py::f[a b] FAILED                                                     [100%]
=========================== short test summary info ============================
PASSED t.py::f[a b]
============================== 1 passed in 0.01s ===============================
";
    let p = parse(log);
    assert_eq!(p.results["t.py::f[a b]"], Failed);
}

/// pytest-xdist (`-n 2 -v`): progress lines start with the worker; the summary is
/// pytest's own.
#[test]
fn pytest_xdist_output_is_read() {
    let log = "\
============================= test session starts ==============================
plugins: xdist-3.6.1, randomly-3.15.0, rerunfailures-14.0
Using --randomly-seed=1234
created: 2/2 workers
2 workers [3 items]

[gw0] [ 33%] PASSED t.py::a[x y]
[gw1] [ 66%] FAILED t.py::b
[gw0] [100%] PASSED t.py::c

=================================== FAILURES ===================================
___________________________________ test_b ____________________________________
[gw1] linux -- Python 3.11.7 /usr/bin/python3
E   assert 0
=========================== short test summary info ============================
PASSED t.py::a[x y]
PASSED t.py::c
FAILED t.py::b - assert 0
========================= 1 failed, 2 passed in 0.51s ==========================
";
    check(
        log,
        LogFormat::Pytest,
        &[
            ("t.py::a[x y]", Passed),
            ("t.py::b", Failed),
            ("t.py::c", Passed),
        ],
    );
    // A worker line's failure wins over a forged PASSED in the summary.
    let forged = log
        .replace("FAILED t.py::b - assert 0\n", "PASSED t.py::b\n")
        .replace("1 failed, 2 passed", "3 passed");
    assert_eq!(parse(&forged).results["t.py::b"], Failed);
}

/// pytest-rerunfailures: `RERUN` lines and the `rerun` count are not statuses; the
/// test's final status is.
#[test]
fn pytest_rerunfailures_output_is_read() {
    let log = "\
============================= test session starts ==============================
plugins: rerunfailures-14.0
collected 2 items

t.py R..                                                                 [100%]

=========================== short test summary info ============================
RERUN t.py::flaky[one two] - assert 0
PASSED t.py::flaky[one two]
PASSED t.py::steady
===================== 2 passed, 1 rerun, 2 warnings in 0.03s =====================
";
    check(
        log,
        LogFormat::Pytest,
        &[("t.py::flaky[one two]", Passed), ("t.py::steady", Passed)],
    );
}

/// A real Python 3.11 `unittest -v` log (captured): subtests (one failing), a test
/// with a docstring that prints, and doctests loaded through `load_tests`.
const UNITTEST_SUBTESTS_DOCTESTS: &str = r#"test_ok (test_all.T.test_ok)
Docstring line. ... noise
ok
test_sub (test_all.T.test_sub) ... 
  test_sub (test_all.T.test_sub) (i=1) ... FAIL
test_ok_sub (test_all.U.test_ok_sub) ... ok
mod (pkg)
Doctest: pkg.mod ... ok
get (pkg.mod.Box)
Doctest: pkg.mod.Box.get ... ok
double (pkg.mod)
Doctest: pkg.mod.double ... ok

======================================================================
FAIL: test_sub (test_all.T.test_sub) (i=1)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/repo/test_all.py", line 15, in test_sub
    self.assertNotEqual(i, 1)
AssertionError: 1 == 1

----------------------------------------------------------------------
Ran 6 tests in 0.012s

FAILED (failures=1)
"#;

#[test]
fn unittest_subtests_and_doctests_are_read() {
    check(
        UNITTEST_SUBTESTS_DOCTESTS,
        LogFormat::Unittest,
        &[
            ("test_all.T.test_ok", Passed),
            ("test_all.T.test_sub", Failed),
            ("test_all.U.test_ok_sub", Passed),
            ("pkg.mod", Passed),
            ("pkg.mod.Box.get", Passed),
            ("pkg.mod.double", Passed),
        ],
    );
}
