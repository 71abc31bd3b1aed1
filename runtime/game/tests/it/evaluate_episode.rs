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
    assert_eq!(e.reward, 1.0);

    let e = ev.evaluate(repo.path(), bug, "  \n");
    assert_eq!((e.reward, &e.outcome), (-1.0, &EvalOutcome::EmptyPatch));

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
    assert_eq!(e.reward, -1.0, "{}", e.summary());
    assert_eq!(e.failing, vec!["tests/test_ops.py::test_add"]);

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
    assert_eq!(e.reward, -1.0);
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
