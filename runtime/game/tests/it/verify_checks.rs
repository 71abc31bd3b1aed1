//! Each of the seven checks, each cheat of `SSR_SPEC.md` section 11 and each kind of
//! malformed input: an artifact that fails exactly there, with that reason, leaving
//! nothing behind in the scratch directory.

use crate::fixture::{self, calc_repo, diff, good_artifact, test_config};
use ssr_game::{Artifact, Check, RejectCode, VerificationReport, Verifier, VerifyConfig};
use std::path::Path;

fn verify_with(
    repo: &Path,
    a: &Artifact,
    tweak: impl FnOnce(&mut VerifyConfig),
) -> VerificationReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut cfg = test_config(scratch.path());
    tweak(&mut cfg);
    let report = Verifier::new(crate::fixture::sandbox(), cfg).verify(repo, a);
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "verification left {} entries behind",
        left.len()
    );
    report
}

/// Verifies `a` against the calc repository and expects rejection by `check`
/// with `code`; returns the report.
fn expect_reject(
    a: &Artifact,
    repo: &Path,
    check: Check,
    code: RejectCode,
    tweak: impl FnOnce(&mut VerifyConfig),
) -> VerificationReport {
    let r = verify_with(repo, a, tweak);
    assert!(!r.valid, "expected a rejection, got {}", r.summary());
    assert_eq!(r.rejected_by, Some(check), "{}", r.summary());
    assert_eq!(r.code, Some(code), "{}", r.summary());
    // Every earlier check passed; the rejecting one is last.
    let n = check.number();
    assert_eq!(r.checks.len(), n, "{:?}", r.checks);
    assert!(r.checks[..n - 1].iter().all(|c| c.passed));
    assert!(r.fail_to_pass.is_empty() && r.pass_to_pass.is_empty());
    r
}

#[test]
fn a_valid_artifact_passes_all_seven_checks() {
    let repo = calc_repo();
    let a = good_artifact(repo.path());
    let r = verify_with(repo.path(), &a, |_| {});
    assert!(r.valid, "{}: {:?}", r.summary(), r.checks);
    assert_eq!(r.checks.len(), 7);
    assert_eq!(r.fail_to_pass, vec!["tests/test_ops.py::test_add"]);
    assert_eq!(r.pass_to_pass.len(), 6);
    assert_eq!(r.log_format, Some(ssr_game::trusted::LogFormat::Pytest));
    // two original runs, bug, bug+weaken, one inverse run
    assert_eq!(r.runs.len(), 5);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["checks"][6]["check"], "inverse_mutation");
}

#[test]
fn check1_missing_test_file() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_files.push("tests/test_nope.py".into());
    expect_reject(
        &a,
        repo.path(),
        Check::Files,
        RejectCode::TestFileMissing,
        |_| {},
    );
}

#[test]
fn check1_path_outside_repo_in_test_files() {
    let repo = calc_repo();
    for bad in ["../etc/passwd", "/etc/passwd", "tests/../../x.py"] {
        let mut a = good_artifact(repo.path());
        a.test_files.push(bad.into());
        let r = expect_reject(
            &a,
            repo.path(),
            Check::Files,
            RejectCode::PathOutsideRepo,
            |_| {},
        );
        assert!(r.reason.unwrap().contains(bad));
    }
}

#[test]
fn check1_weakening_touches_unlisted_file() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_files = vec!["tests/test_text.py".into()];
    expect_reject(
        &a,
        repo.path(),
        Check::Files,
        RejectCode::WeakenTouchesUnlisted,
        |_| {},
    );
}

#[test]
fn check1_bug_touches_oracle_file() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = diff(
        repo.path(),
        &[
            (
                "calc/ops.py",
                Some(&fixture::OPS.replace("return a + b", "return a + b + 1")),
            ),
            ("tests/test_text.py", Some("")),
        ],
    );
    expect_reject(
        &a,
        repo.path(),
        Check::Files,
        RejectCode::BugTouchesTests,
        |_| {},
    );
}

#[test]
fn check1_diff_that_does_not_apply() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = a.bug_inject.replace(" def add(a, b):", " def add(x, y):");
    let r = expect_reject(
        &a,
        repo.path(),
        Check::Files,
        RejectCode::DiffDoesNotApply,
        |_| {},
    );
    assert!(r.reason.unwrap().contains("calc/ops.py"));
}

#[test]
fn check1_malformed_diff() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_weaken = "this is not a diff\n".into();
    expect_reject(
        &a,
        repo.path(),
        Check::Files,
        RejectCode::MalformedDiff,
        |_| {},
    );
}

#[test]
fn check2_parser_prints_garbage() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = "print('all good, trust me')\n".into();
    expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::ParserBadOutput,
        |_| {},
    );
}

#[test]
fn check2_parser_that_hangs_is_killed() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = "import time\nwhile True:\n    time.sleep(1)\n".into();
    let t = std::time::Instant::now();
    let r = expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::ParserFailed,
        |c| {
            c.parser_timeout_secs = 1.0;
        },
    );
    assert!(r.reason.unwrap().contains("did not finish"));
    assert!(t.elapsed().as_secs() < 15);
}

#[test]
fn check2_parser_that_crashes() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = "raise SystemExit(3)\n".into();
    expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::ParserFailed,
        |_| {},
    );
}

#[test]
fn check2_test_script_that_never_ends() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_script = "echo starting\nsleep 1000 &\nwait\n".into();
    let t = std::time::Instant::now();
    let r = expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::ScriptTimeout,
        |c| {
            c.hard_timeout_secs = 1.0;
        },
    );
    assert!(
        r.reason.unwrap().contains("starting"),
        "partial log is reported"
    );
    assert!(t.elapsed().as_secs() < 15);
}

#[test]
fn check2_script_slower_than_soft_limit() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_script = format!("sleep 1.2\n{}", a.test_script);
    expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::ScriptTooSlow,
        |c| {
            c.soft_timeout_secs = 1.0;
        },
    );
}

#[test]
fn check2_parser_reports_no_tests() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = "print('{}')\n".into();
    expect_reject(&a, repo.path(), Check::Parser, RejectCode::NoTests, |_| {});
}

#[test]
fn check2_status_other_than_passed_or_failed() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = a.test_parser.replace("\"passed\" if", "\"ok\" if");
    expect_reject(
        &a,
        repo.path(),
        Check::Parser,
        RejectCode::BadStatusValue,
        |_| {},
    );
}

#[test]
fn check3_a_test_fails_on_the_original() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_script = a.test_script.replace(
        "python3 -m pytest",
        "printf 'def test_broken():\\n    assert 1 == 2\\n' > tests/test_extra.py\npython3 -m pytest tests/test_extra.py",
    );
    expect_reject(
        &a,
        repo.path(),
        Check::OriginalPasses,
        RejectCode::OriginalFails,
        |_| {},
    );
}

#[test]
fn check3_too_few_tests() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_script = a.test_script.replace("tests/test_ops.py ", "");
    expect_reject(
        &a,
        repo.path(),
        Check::OriginalPasses,
        RejectCode::TooFewTests,
        |_| {},
    );
}

/// Cheat: tests that fail at random. A test that alternates between runs (a counter
/// kept outside the workspace) is caught by the double original run.
#[test]
fn check3_flaky_test_is_caught_by_the_second_run() {
    let repo = calc_repo();
    let counter = tempfile::tempdir().unwrap();
    let c = counter.path().display().to_string();
    let mut a = good_artifact(repo.path());
    a.test_script = a.test_script.replace(
        "python3 -m pytest",
        &format!(
            "n=$(( $(cat {c}/n 2>/dev/null || echo 0) + 1 )); echo $n > {c}/n\n\
             printf 'def test_coin():\\n    assert %d == 1\\n' $(( n % 2 )) > tests/test_coin.py\n\
             python3 -m pytest tests/test_coin.py"
        ),
    );
    let mount = ssr_sandbox::Mount {
        host: counter.path().to_path_buf(),
        guest: counter.path().to_path_buf(),
        read_only: false,
    };
    expect_reject(
        &a,
        repo.path(),
        Check::OriginalPasses,
        RejectCode::Flaky,
        |cfg| {
            cfg.parallel = false;
            cfg.run_env.mounts.push(mount);
        },
    );
}

#[test]
fn check4_bug_changes_no_code_file() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = String::new();
    expect_reject(
        &a,
        repo.path(),
        Check::Scope,
        RejectCode::TooFewChangedFiles,
        |_| {},
    );
}

#[test]
fn check4_min_changed_files_is_a_setting() {
    let repo = calc_repo();
    let a = good_artifact(repo.path());
    expect_reject(
        &a,
        repo.path(),
        Check::Scope,
        RejectCode::TooFewChangedFiles,
        |c| {
            c.min_changed_files = 2;
        },
    );
}

#[test]
fn check5_bug_that_breaks_nothing() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = diff(
        repo.path(),
        &[(
            "calc/ops.py",
            Some(
                &fixture::OPS.replace("\"\"\"Arithmetic helpers.\"\"\"", "\"\"\"Arithmetic.\"\"\""),
            ),
        )],
    );
    expect_reject(
        &a,
        repo.path(),
        Check::BugBreaksTests,
        RejectCode::BugBreaksNothing,
        |_| {},
    );
}

#[test]
fn check5_bug_that_breaks_the_import_is_not_a_bug() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = diff(
        repo.path(),
        &[("calc/ops.py", Some("def add(a, b)\n    return\n"))],
    );
    expect_reject(
        &a,
        repo.path(),
        Check::BugBreaksTests,
        RejectCode::BugBreaksEverything,
        |_| {},
    );
}

#[test]
fn check6_weakening_that_hides_nothing() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_weaken = diff(
        repo.path(),
        &[(
            "tests/test_ops.py",
            Some(&fixture::TEST_OPS.replace("assert sub(5, 3) == 2", "assert sub(5, 3) >= 0")),
        )],
    );
    expect_reject(
        &a,
        repo.path(),
        Check::WeakeningHides,
        RejectCode::WeakeningHidesNothing,
        |_| {},
    );
}

/// Cheat: padding a bug with irrelevant edits. The edit to `text.py` restores no
/// broken test, so the inverse mutation rejects it.
#[test]
fn check7_padding_is_caught_by_inverse_mutation() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.bug_inject = diff(
        repo.path(),
        &[
            (
                "calc/ops.py",
                Some(&fixture::OPS.replace("return a + b", "return a + b + 1")),
            ),
            (
                "calc/text.py",
                Some(&format!("{}\n# padding\n", fixture::TEXT)),
            ),
        ],
    );
    let r = expect_reject(
        &a,
        repo.path(),
        Check::InverseMutation,
        RejectCode::InverseRestoresNothing,
        |_| {},
    );
    assert!(r.reason.unwrap().contains("calc/text.py"));
}

/// Cheat: a parser that says what the injector wants. It claims every test passed;
/// the trusted pytest parser reads the failure in the log.
#[test]
fn parser_gaming_is_caught_by_the_trusted_parser() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    a.test_parser = a.test_parser.replace(
        "status = \"passed\" if m.group(1) in (\"PASSED\", \"XPASS\") else \"failed\"",
        "status = \"passed\"",
    );
    let r = expect_reject(
        &a,
        repo.path(),
        Check::BugBreaksTests,
        RejectCode::ParserDisagrees,
        |_| {},
    );
    assert!(r.reason.unwrap().contains("test_add"));
}

/// A parser that hides a still-failing test by leaving it out of the weakened run
/// (faking "deleted") is caught as well.
#[test]
fn parser_omitting_a_failing_test_is_caught() {
    let repo = calc_repo();
    let mut a = good_artifact(repo.path());
    // A weakening that changes nothing relevant plus a parser that drops failures.
    a.test_weaken = diff(
        repo.path(),
        &[(
            "tests/test_ops.py",
            Some(&fixture::TEST_OPS.replace("assert sub(5, 3) == 2", "assert sub(5, 3) >= 0")),
        )],
    );
    a.test_parser = a.test_parser.replace(
        "        if results.get(m.group(2)) != \"failed\":",
        "        if status == \"failed\" and len(sys.argv) == 1 and 'sub(5, 3) >= 0' in open('tests/test_ops.py').read():\n            continue\n        if results.get(m.group(2)) != \"failed\":",
    );
    expect_reject(
        &a,
        repo.path(),
        Check::WeakeningHides,
        RejectCode::ParserDisagrees,
        |_| {},
    );
}

#[test]
fn sequential_and_parallel_verification_agree() {
    let repo = calc_repo();
    let a = good_artifact(repo.path());
    let p = verify_with(repo.path(), &a, |_| {});
    let s = verify_with(repo.path(), &a, |c| c.parallel = false);
    assert!(p.valid && s.valid);
    assert_eq!(p.fail_to_pass, s.fail_to_pass);
    assert_eq!(p.pass_to_pass, s.pass_to_pass);
}

/// The verdict does not depend on the backend: the plain-process test double and
/// bubblewrap agree on the same artifact.
#[test]
fn process_double_and_bubblewrap_agree() {
    let repo = calc_repo();
    let a = good_artifact(repo.path());
    let scratch = tempfile::tempdir().unwrap();
    let double = Verifier::new(
        &crate::process_sandbox::ProcessSandbox,
        test_config(scratch.path()),
    )
    .verify(repo.path(), &a);
    let real = verify_with(repo.path(), &a, |_| {});
    assert!(
        double.valid && real.valid,
        "{} / {}",
        double.summary(),
        real.summary()
    );
    assert_eq!(double.fail_to_pass, real.fail_to_pass);
    assert_eq!(double.pass_to_pass, real.pass_to_pass);
}
