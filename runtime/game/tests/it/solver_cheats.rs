//! Regression tests of solver cheats at evaluation: fake `PASSED` lines in the test
//! log, and new test-infrastructure files in the patch. Each cheat keeps the bug and
//! must score −1.

use crate::fixture::{self, calc_repo, diff, good_artifact, test_config};
use ssr_game::{Artifact, BugState, EvalOutcome, Evaluator, Verifier};
use std::path::Path;

/// The calc bug with a test script that runs pytest with `-s` (no output capture), so
/// what the code under test prints lands in the log as it would with any script
/// that does not capture.
fn uncaptured_artifact(repo: &Path) -> Artifact {
    let mut a = good_artifact(repo);
    a.test_script = a.test_script.replace("-m pytest -rA", "-m pytest -rA -s");
    assert!(a.test_script.contains("-rA -s"));
    a
}

fn p_of(repo: &Path, a: &Artifact, scratch: &Path) -> (Vec<String>, ssr_game::VerificationReport) {
    let r = Verifier::new(fixture::sandbox(), test_config(scratch)).verify(repo, a);
    assert!(r.valid, "{}", r.summary());
    (r.all_tests(), r)
}

/// Python that prints pytest's summary header and a `PASSED` line for every test of
/// `P`, then ends the process before pytest reports anything real.
fn fake_report(p: &[String]) -> String {
    // The leading newline ends pytest's half-written progress line.
    let mut lines = vec![
        "\n=========================== short test summary info ============================"
            .to_string(),
    ];
    for id in p {
        lines.push(format!("{id} PASSED"));
        lines.push(format!("PASSED {id}"));
    }
    format!(
        "import os as _os, sys as _sys\n\
         def _fake_report():\n\
         \x20   _sys.stdout.write({:?})\n\
         \x20   _sys.stdout.flush()\n\
         \x20   _os._exit(0)\n",
        lines.join("\n") + "\n"
    )
}

/// Bug: solver code printed fake `PASSED` lines (at import, and from inside a test)
/// and killed the test process, so the log held only the fake summary and the
/// parser counted the still-failing `test_add` as passed.
#[test]
fn fake_passed_lines_from_solver_code_score_minus_one() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = uncaptured_artifact(repo.path());
    let (p, report) = p_of(repo.path(), &a, scratch.path());
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    // The buggy ops module, as the solver sees it.
    let buggy_ops = fixture::OPS.replace("return a + b", "return a + b + 1");
    let at_import = format!("{}{buggy_ops}\n_fake_report()\n", fake_report(&p));
    let in_test = format!(
        "{}{}",
        fake_report(&p),
        buggy_ops.replace("def add(a, b):\n", "def add(a, b):\n    _fake_report()\n")
    );
    for (what, ops) in [("at import", at_import), ("inside a test", in_test)] {
        // Patches are written against the buggy state (original + bug).
        let ws = tempfile::tempdir().unwrap();
        fixture::write_calc(ws.path());
        std::fs::write(ws.path().join("calc/ops.py"), &buggy_ops).unwrap();
        let patch = diff(ws.path(), &[("calc/ops.py", Some(&ops))]);
        for ev in [
            Evaluator::new(fixture::sandbox(), test_config(scratch.path())),
            Evaluator::new(fixture::sandbox(), test_config(scratch.path()))
                .expecting_log_format(report.log_format),
        ] {
            let e = ev.evaluate(repo.path(), bug, &patch);
            assert_eq!(e.reward, Some(-1.0), "{what}: {}", e.summary());
            assert!(!e.solved, "{what}");
            // The fake report reached the log and the trusted parser refused it.
            assert!(
                e.notes
                    .iter()
                    .any(|n| n.contains("incomplete") || n.contains("not a complete")),
                "{what}: {}",
                e.summary()
            );
            assert!(
                e.failing
                    .contains(&"tests/test_ops.py::test_add".to_string())
                    || e.missing
                        .contains(&"tests/test_ops.py::test_add".to_string()),
                "{what}: {}",
                e.summary()
            );
        }
    }
    // The honest fix still scores +1 with the same script.
    let fix = ssr_game::patch_ops::reverse(&a.bug_inject).unwrap();
    let e = Evaluator::new(fixture::sandbox(), test_config(scratch.path()))
        .expecting_log_format(report.log_format)
        .evaluate(repo.path(), bug, &fix);
    assert!(e.solved, "{}", e.summary());
}

/// Bug: a solver patch could add a `conftest.py` whose hook reports every test as
/// passed; evaluation only restored the oracle files, so the bug scored +1.
#[test]
fn conftest_forcing_every_test_to_pass_scores_minus_one() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let (p, _) = p_of(repo.path(), &a, scratch.path());
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    let conftest = "\
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = \"passed\"
    report.longrepr = None
";
    let ws = tempfile::tempdir().unwrap();
    fixture::write_calc(ws.path());
    std::fs::write(
        ws.path().join("calc/ops.py"),
        fixture::OPS.replace("return a + b", "return a + b + 1"),
    )
    .unwrap();
    let cheats = [
        ("conftest.py", conftest.to_string()),
        ("tests/conftest.py", conftest.to_string()),
        (
            "sitecustomize.py",
            "import builtins\nbuiltins.__dict__['__ssr__'] = 1\n".to_string(),
        ),
    ];
    for (path, text) in cheats {
        // The cheat plus a harmless code edit, so something of the patch is kept.
        let patch = diff(
            ws.path(),
            &[
                (path, Some(&text)),
                (
                    "calc/text.py",
                    Some(&fixture::TEXT.replace("Text helpers.", "Text helpers (edited).")),
                ),
            ],
        );
        let e = Evaluator::new(fixture::sandbox(), test_config(scratch.path())).evaluate(
            repo.path(),
            bug,
            &patch,
        );
        assert_eq!(e.reward, Some(-1.0), "{path}: {}", e.summary());
        assert_eq!(e.dropped, vec![path.to_string()], "{path}");
        assert!(e.summary().contains(path), "{}", e.summary());
        assert_eq!(e.failing, vec!["tests/test_ops.py::test_add"], "{path}");
    }
    // The cheat alone leaves nothing to apply.
    let only = diff(ws.path(), &[("conftest.py", Some(conftest))]);
    let e = Evaluator::new(fixture::sandbox(), test_config(scratch.path())).evaluate(
        repo.path(),
        bug,
        &only,
    );
    assert_eq!(e.outcome, EvalOutcome::EmptyPatch);
    assert_eq!(e.dropped, vec!["conftest.py"]);
}
