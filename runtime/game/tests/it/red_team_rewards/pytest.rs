//! pytest: the trusted reporter as a plugin; canaries re-selected after `-k`/`-m`.

use super::*;

use super::pytest_attacks::{BLOCKED_REWRITE, pytest_attacks};

#[test]
fn pytest_attacks_as_solver_patches_score_minus_one_with_a_note() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let (p, report) = verified(repo.path(), &a, scratch.path());
    let failing = report.fail_to_pass.clone();
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    let ev = Evaluator::new(fixture::sandbox(), test_config(scratch.path()))
        .expecting_log_format(report.log_format);
    for (what, attack) in pytest_attacks(&p, &failing) {
        let e = ev.evaluate(repo.path(), bug, &solver_patch(&attack));
        assert_minus_one_with_note(what, &e);
        assert!(
            e.notes.iter().any(|n| n.starts_with("scan:")),
            "{what}: the scan missed it: {}",
            e.summary()
        );
        // Every attack that gets past the read-only tests is caught as tampering;
        // a blocked rewrite leaves the bug failing.
        if what == BLOCKED_REWRITE {
            assert!(
                matches!(e.outcome, EvalOutcome::TestsFailing { .. }),
                "{what}: {}",
                e.summary()
            );
            assert!(e.failing.contains(&"tests/test_ops.py::test_add".into()));
        } else {
            assert!(
                matches!(e.outcome, EvalOutcome::Tampered { .. }),
                "{what}: {}",
                e.summary()
            );
        }
        assert!(e.reporter_secret.is_some(), "{what}");
    }
    // The true fix still scores +1, with no scan finding.
    let fix = patch_ops::reverse(&a.bug_inject).unwrap();
    let e = ev.evaluate(repo.path(), bug, &fix);
    assert!(e.solved, "{}", e.summary());
    assert!(e.notes.is_empty(), "{}", e.summary());
}

#[test]
fn pytest_attacks_in_a_bug_are_rejected_by_verify() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let good = good_artifact(repo.path());
    let (p, report) = verified(repo.path(), &good, scratch.path());
    for (what, attack) in pytest_attacks(&p, &report.fail_to_pass) {
        let mut a = good.clone();
        a.bug_inject = diff(
            repo.path(),
            &[(
                "calc/ops.py",
                Some(&format!(
                    "{}{attack}",
                    fixture::OPS.replace("return a + b", BUGGY)
                )),
            )],
        );
        // A blocked rewrite leaves an ordinary bug: only the scan sees the attempt.
        let cfg = VerifyConfig {
            reject_tampering_findings: what == BLOCKED_REWRITE,
            ..test_config(scratch.path())
        };
        let r = Verifier::new(fixture::sandbox(), cfg).verify(repo.path(), &a);
        assert!(!r.valid, "{what}: {}", r.summary());
        assert_eq!(
            r.code,
            Some(RejectCode::Tampered),
            "{what}: {}",
            r.summary()
        );
        assert!(!r.notes.is_empty(), "{what}");
    }
}

#[test]
fn canaries_survive_deselection_and_a_script_that_bypasses_the_reporter_passes_nothing() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let mut a = good_artifact(repo.path());
    a.test_script = a
        .test_script
        .replace("-m pytest -rA", "-m pytest -rA -k 'not test_div'");
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.runs.iter().all(|x| x.reporter_secret.is_some()));
    let secrets: std::collections::BTreeSet<_> =
        r.runs.iter().map(|x| x.reporter_secret.clone()).collect();
    assert_eq!(secrets.len(), r.runs.len(), "one secret per run");
    // Clearing PYTEST_ADDOPTS and turning off the user site (where the reporter's
    // hook also stands) drops the plugin: the run is incomplete.
    let mut bypass = good_artifact(repo.path());
    bypass.test_script = bypass.test_script.replace(
        "python3 -m pytest",
        "PYTEST_ADDOPTS= PYTHONNOUSERSITE=1 python3 -m pytest",
    );
    let r =
        Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &bypass);
    assert!(!r.valid);
    assert_eq!(r.code, Some(RejectCode::IncompleteRun), "{}", r.summary());
}

/// `-m` deselection: the canaries are added after it, into the modules still
/// selected, so a script that deselects a marked module keeps them.
#[test]
fn canaries_survive_mark_deselection() {
    let repo = calc_repo();
    std::fs::write(
        repo.path().join("tests/test_text.py"),
        format!(
            "import pytest\n\npytestmark = pytest.mark.slow\n\n{}",
            fixture::TEST_TEXT
        ),
    )
    .unwrap();
    std::fs::write(
        repo.path().join("pytest.ini"),
        "[pytest]\nmarkers =\n    slow: slow tests\n",
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut a = good_artifact(repo.path());
    a.test_script = a
        .test_script
        .replace("-m pytest -rA", "-m pytest -rA -m 'not slow'");
    assert!(a.test_script.contains("not slow"), "{}", a.test_script);
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.runs.iter().all(|x| x.reporter_secret.is_some()));
    let tests = r.all_tests();
    assert!(!tests.iter().any(|t| t.contains("test_text")), "{tests:?}");
    assert!(tests.iter().any(|t| t.ends_with("::test_add")), "{tests:?}");
}

/// Regression (the scripted self-play injector's artifact was rejected as incomplete):
/// a test script that sets its own `PYTHONPATH` and `PYTEST_ADDOPTS`, as injectors
/// often write, keeps the trusted reporter (through the user site) and stays valid.
#[test]
fn a_test_script_that_sets_its_own_pythonpath_keeps_the_reporter() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let mut a = good_artifact(repo.path());
    a.test_script = a.test_script.replace(
        "python3 -m pytest",
        "export PYTHONPATH=. PYTEST_ADDOPTS=-q\npython3 -m pytest",
    );
    assert!(
        a.test_script.contains("export PYTHONPATH=."),
        "{}",
        a.test_script
    );
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.runs.iter().all(|x| x.reporter_secret.is_some()));
}
