//! The evaluator, the solver episode and higher-order bugs on the calc fixture.

use crate::fixture::{self, calc_repo, diff, good_artifact, test_config};
use ssr_game::higher_order::{HigherOrderPool, HigherOrderRejection};
use ssr_game::patch_ops;
use ssr_game::{BugState, EpisodeConfig, EvalOutcome, Evaluator, Verifier, build_episode};

fn p_of(repo: &std::path::Path, a: &ssr_game::Artifact, scratch: &std::path::Path) -> Vec<String> {
    let r = Verifier::new(crate::fixture::sandbox(), test_config(scratch)).verify(repo, a);
    assert!(r.valid, "{}", r.summary());
    r.all_tests()
}

#[test]
fn true_fix_scores_plus_one_and_cheats_minus_one() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let p = p_of(repo.path(), &a, scratch.path());
    let mut cfg = test_config(scratch.path());
    cfg.hard_timeout_secs = 3.0;
    let ev = Evaluator::new(crate::fixture::sandbox(), cfg);
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };

    let fix = patch_ops::reverse(&a.bug_inject).unwrap();
    let e = ev.evaluate(repo.path(), bug, &fix);
    assert!(e.solved, "{}", e.summary());
    assert_eq!(e.reward, Some(1.0));

    let e = ev.evaluate(repo.path(), bug, "  \n");
    assert_eq!(
        (e.reward, &e.outcome),
        (Some(-1.0), &EvalOutcome::EmptyPatch)
    );

    // Editing the oracle test to expect the buggy value: restored before the run.
    let weakened =
        fixture::TEST_OPS.replace("def test_add():\n    assert add(2, 3) == 5\n\n\n", "");
    let cheat_ws = tempfile::tempdir().unwrap();
    let ep = build_episode(
        repo.path(),
        &a,
        None,
        &EpisodeConfig::default(),
        &cheat_ws.path().join("w"),
    )
    .unwrap();
    let cheat = diff(
        &ep.workspace,
        &[(
            "tests/test_ops.py",
            Some(&format!(
                "{weakened}\n\ndef test_add():\n    assert add(2, 3) == 6\n"
            )),
        )],
    );
    let e = ev.evaluate(repo.path(), bug, &cheat);
    assert_eq!(e.reward, Some(-1.0), "{}", e.summary());
    // The oracle section is dropped; nothing else is left to apply.
    assert_eq!(e.outcome, EvalOutcome::EmptyPatch, "{}", e.summary());
    assert_eq!(e.dropped, vec!["tests/test_ops.py"]);

    let e = ev.evaluate(
        repo.path(),
        bug,
        &fix.replace("return a + b + 1", "return a + b + 7"),
    );
    assert!(
        matches!(e.outcome, EvalOutcome::DoesNotApply { .. }),
        "{}",
        e.summary()
    );

    let hang = diff(
        &ep.workspace,
        &[(
            "calc/ops.py",
            Some(&format!("import time\ntime.sleep(60)\n{}", fixture::OPS)),
        )],
    );
    let e = ev.evaluate(repo.path(), bug, &hang);
    assert!(
        matches!(e.outcome, EvalOutcome::TimedOut { .. }),
        "{}",
        e.summary()
    );
    assert_eq!(e.reward, Some(-1.0));
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty());
}

/// Cheat: reading git history for the original code. The episode has one commit
/// and no trace of the original `add`.
#[test]
fn episode_is_history_free_with_task_and_read_only_paths() {
    let repo = calc_repo();
    std::fs::write(
        repo.path().join("pyproject.toml"),
        "[tool.pytest.ini_options]\n",
    )
    .unwrap();
    std::fs::create_dir_all(repo.path().join("calc/__pycache__")).unwrap();
    std::fs::write(
        repo.path().join("calc/__pycache__/ops.cpython-311.pyc"),
        "return a + b",
    )
    .unwrap();
    let a = good_artifact(repo.path());
    let dest = tempfile::tempdir().unwrap();
    let ep = build_episode(
        repo.path(),
        &a,
        None,
        &EpisodeConfig::default(),
        &dest.path().join("ws"),
    )
    .unwrap();
    let log = std::process::Command::new("git")
        .args(["log", "--oneline", "--all"])
        .current_dir(&ep.workspace)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 1);
    assert!(!ep.workspace.join("calc/__pycache__").exists());
    let ops = std::fs::read_to_string(ep.workspace.join("calc/ops.py")).unwrap();
    assert!(ops.contains("return a + b + 1"));
    assert!(ep.task.starts_with(ssr_game::episode::TASK_TEMPLATE));
    assert!(ep.task.contains("```diff\n") && ep.task.contains("+def test_add():"));
    assert_eq!(
        ep.read_only_paths,
        vec!["pyproject.toml", "tests/test_ops.py", "tests/test_text.py"]
    );
    // A non-empty destination is refused rather than overwritten.
    assert!(
        build_episode(
            repo.path(),
            &a,
            None,
            &EpisodeConfig::default(),
            &ep.workspace
        )
        .is_err()
    );
}

#[test]
fn higher_order_bugs_are_filtered_deduplicated_and_capped() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let p = p_of(repo.path(), &a, scratch.path());
    let ev = Evaluator::new(crate::fixture::sandbox(), test_config(scratch.path()));
    let ep_dir = tempfile::tempdir().unwrap();
    let ep = build_episode(
        repo.path(),
        &a,
        None,
        &EpisodeConfig::default(),
        &ep_dir.path().join("w"),
    )
    .unwrap();
    let buggy_ops = std::fs::read_to_string(ep.workspace.join("calc/ops.py")).unwrap();
    // A wrong fix that also edits an oracle file: the oracle hunk is dropped.
    let failed = diff(
        &ep.workspace,
        &[
            (
                "calc/ops.py",
                Some(&buggy_ops.replace("return a + b + 1", "return a + b - 1")),
            ),
            ("tests/test_text.py", Some("")),
        ],
    );
    let mut pool = HigherOrderPool::new();
    let ho = pool.make(&ev, repo.path(), &a, 1, &p, &failed).unwrap();
    assert_eq!(ho.order, 2);
    assert!(!ho.patch.contains("tests/test_text.py"));
    assert_eq!(ho.still_failing, vec!["tests/test_ops.py::test_add"]);
    assert!(matches!(
        pool.make(&ev, repo.path(), &a, 1, &p, &failed),
        Err(HigherOrderRejection::Duplicate { .. })
    ));
    assert!(matches!(
        pool.make(&ev, repo.path(), &a, 2, &p, &failed),
        Err(HigherOrderRejection::OrderCap { order: 2 })
    ));
    let fix = diff(
        &ep.workspace,
        &[(
            "calc/ops.py",
            Some(&buggy_ops.replace("return a + b + 1", "return a + b")),
        )],
    );
    assert_eq!(
        pool.make(&ev, repo.path(), &a, 1, &p, &fix),
        Err(HigherOrderRejection::NothingFails)
    );
    let only_oracle = diff(&ep.workspace, &[("tests/test_text.py", Some(""))]);
    assert_eq!(
        pool.make(&ev, repo.path(), &a, 1, &p, &only_oracle),
        Err(HigherOrderRejection::EmptyAfterFiltering)
    );
    // Solving the higher-order bug: its state includes the failed patch.
    let ho_ws = tempfile::tempdir().unwrap();
    let ho_ep = build_episode(
        repo.path(),
        &a,
        Some(&ho.patch),
        &EpisodeConfig::default(),
        &ho_ws.path().join("w"),
    )
    .unwrap();
    let ho_ops = std::fs::read_to_string(ho_ep.workspace.join("calc/ops.py")).unwrap();
    assert!(ho_ops.contains("return a + b - 1"));
    let ho_fix = diff(&ho_ep.workspace, &[("calc/ops.py", Some(fixture::OPS))]);
    let e = ev.evaluate(
        repo.path(),
        BugState {
            artifact: &a,
            higher_order_patch: Some(&ho.patch),
            tests: &p,
        },
        &ho_fix,
    );
    assert!(e.solved, "{}", e.summary());
}

/// A sandbox whose every command fails to start (a broken backend, a full disk).
struct BrokenSandbox;

impl ssr_sandbox::Sandbox for BrokenSandbox {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn exec(
        &self,
        _: &ssr_sandbox::ExecSpec,
    ) -> Result<ssr_sandbox::ExecOutcome, ssr_sandbox::SandboxError> {
        Err(ssr_sandbox::SandboxError::Unavailable {
            backend: "broken",
            reason: "the test says so".into(),
        })
    }
}

/// Regression (issue 13): a sandbox failure was `RunFailed` and scored −1, so a
/// broken machine punished the solver. It is infra now: no reward. A parser failure
/// on the log the code under test produced stays the attempt's failure (−1), and a
/// stored state that does not rebuild is infra while a solver patch that does not
/// apply is −1.
#[test]
fn infrastructure_failures_are_not_scored_and_attempt_failures_are() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let p = p_of(repo.path(), &a, scratch.path());
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    let fix = patch_ops::reverse(&a.bug_inject).unwrap();

    let broken = BrokenSandbox;
    let e = Evaluator::new(&broken, test_config(scratch.path())).evaluate(repo.path(), bug, &fix);
    assert!(
        matches!(&e.outcome, EvalOutcome::Infra { error } if error.contains("the test says so")),
        "{}",
        e.summary()
    );
    assert_eq!((e.reward, e.solved), (None, false));
    assert!(e.score().is_infra());
    assert!(e.summary().starts_with("no reward"), "{}", e.summary());

    let ev = Evaluator::new(crate::fixture::sandbox(), test_config(scratch.path()));
    // The solver's code prints so much that the parser gives up: its doing.
    let parser_fails = ssr_game::Artifact {
        test_parser: "import sys\nsys.stdin.read()\nsys.exit(3)\n".into(),
        ..a.clone()
    };
    let e = ev.evaluate(
        repo.path(),
        BugState {
            artifact: &parser_fails,
            ..bug
        },
        &fix,
    );
    assert!(
        matches!(e.outcome, EvalOutcome::RunFailed { .. }),
        "{}",
        e.summary()
    );
    assert_eq!(e.reward, Some(-1.0));

    // The stored bug no longer applies to the original: the store's fault.
    let stale = ssr_game::Artifact {
        bug_inject: a.bug_inject.replace("return a + b", "return a - b"),
        ..a.clone()
    };
    let e = ev.evaluate(
        repo.path(),
        BugState {
            artifact: &stale,
            ..bug
        },
        &fix,
    );
    assert!(
        matches!(&e.outcome, EvalOutcome::Infra { error } if error.contains("stored bug state")),
        "{}",
        e.summary()
    );
    assert_eq!(e.reward, None);
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty());
}

/// Regression (issue 13): a verification the sandbox could not run rejected the
/// artifact as `run_failed`, so its injector scored −1 for the machine's fault. It is
/// `infra` now, and the verdict says so.
#[test]
fn a_verification_the_sandbox_cannot_run_is_infra() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let broken = BrokenSandbox;
    let r = Verifier::new(&broken, test_config(scratch.path())).verify(repo.path(), &a);
    assert!(!r.valid);
    assert_eq!(r.code, Some(ssr_game::RejectCode::Infra), "{}", r.summary());
    let v = ssr_game::Verdict::of_report("b", ssr_game::BugSource::Model, 1, &r);
    assert!(v.is_infra(), "{v:?}");
    assert_eq!(v.reason_code.as_deref(), Some("infra"));
}
