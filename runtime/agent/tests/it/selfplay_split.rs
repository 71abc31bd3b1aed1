//! Self-play honours a held-out split: a bug whose patch changes a held-out function
//! (here made by the model, over the in-memory arena) gets no solver attempt, its
//! injector no reward and no trajectory, and the round counts it; a bug elsewhere
//! plays as before.

use crate::support::ByteCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::rundir::RunDir;
use ssr_agent::selfplay::fake_arena::{FIX, FakeArena};
use ssr_agent::selfplay::{NoProgress, RunOutcome, SelfPlay, SelfPlayConfig};
use ssr_agent::shutdown::Shutdown;
use ssr_game::split::{SPLIT_VERSION, Split, SplitJudge};
use std::path::Path;
use std::sync::Arc;

const SUBMIT: &str = "<tool: submit>\n</tool>";
const MODULE: &str = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n";

/// A Python repository with tests (the split's framework) and one code module.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("src/m.py"), MODULE).unwrap();
    std::fs::write(dir.join("tests/test_m.py"), "def test_add():\n    pass\n").unwrap();
}

/// The bug diff that breaks `function` (`add` is on line 2, `sub` on line 6).
fn breaking(function: &str) -> String {
    let (line, old, new) = match function {
        "add" => (1, "    return a + b", "    return a - b"),
        _ => (5, "    return a - b", "    return a + b"),
    };
    let header = if line == 1 {
        "def add(a, b):".to_string()
    } else {
        "def sub(a, b):".to_string()
    };
    format!(
        "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -{line},2 +{line},2 @@\n {header}\n-{old}\n+{new}\n"
    )
}

fn policy(bug: &str) -> ScriptedPolicy {
    let turns = |ts: &[&str]| ts.iter().map(|t| ScriptTurn::Text(t.to_string())).collect();
    let mut scripts = Scripts::new();
    let edit = format!("<tool: edit>\n{bug}\n</tool>");
    scripts.insert("injector".into(), vec![turns(&[&edit, SUBMIT])]);
    let fix = format!("<tool: edit>\n{FIX}\n</tool>");
    scripts.insert(
        "solver".into(),
        vec![turns(&[&fix, SUBMIT]), turns(&[SUBMIT])],
    );
    ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)))
}

async fn play(dir: &Path, repo: &Path, bug: &str) -> RunDir {
    let split = Split {
        version: SPLIT_VERSION,
        head: None,
        seed: 0,
        fraction: 0.5,
        functions_total: 2,
        commits_total: 0,
        functions: vec!["src/m.py::add".into()],
        commits: Vec::new(),
        lines: Default::default(),
    };
    let config = SelfPlayConfig {
        seed: 3,
        rounds: 1,
        injector_rollouts: 1,
        procedural_per_round: 0,
        attempts_per_bug: 2,
        max_higher_order_per_round: 0,
        max_concurrent_episodes: 2,
        ..SelfPlayConfig::default()
    };
    let sp = SelfPlay {
        config,
        policy: Arc::new(policy(bug)),
        arena: Arc::new(FakeArena::new(false, false)),
        run: RunDir::open(dir).unwrap(),
        shutdown: Shutdown::never(),
        progress: Arc::new(NoProgress),
        trainer: None,
        split: Some(Arc::new(SplitJudge::open(split, repo).unwrap())),
        heldout: None,
        image: None,
    };
    assert_eq!(sp.run().await.unwrap(), RunOutcome::Finished);
    RunDir::open(dir).unwrap()
}

#[tokio::test]
async fn a_bug_on_a_held_out_function_is_neither_solved_nor_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    repo(&repo_dir);

    let run = play(&tmp.path().join("held"), &repo_dir, &breaking("add")).await;
    let m = &run.metrics().unwrap()[0];
    assert_eq!((m.model_valid, m.held_out_excluded), (1, 1), "{m:?}");
    assert_eq!(m.solver_episodes, 0);
    // Its injector is not rewarded, so not trained on.
    assert_eq!(m.mean_injector_reward, None, "{m:?}");
    assert_eq!((m.injectors_unrewarded, m.trajectories_unrewarded), (1, 1));
    let trajectories = std::fs::read_to_string(run.trajectories_path()).unwrap_or_default();
    assert!(trajectories.trim().is_empty(), "{trajectories}");

    // The same game on a training function plays as before.
    let run = play(&tmp.path().join("train"), &repo_dir, &breaking("sub")).await;
    let m = &run.metrics().unwrap()[0];
    assert_eq!((m.model_valid, m.held_out_excluded), (1, 0), "{m:?}");
    assert_eq!(m.solver_episodes, 2);
    assert!(m.mean_injector_reward.is_some(), "{m:?}");
    let trajectories = std::fs::read_to_string(run.trajectories_path()).unwrap();
    assert_eq!(
        trajectories.lines().count(),
        3,
        "the injector and both attempts"
    );
}

#[tokio::test]
async fn self_play_runs_the_held_out_evaluation_every_n_rounds() {
    use ssr_agent::selfplay::HeldoutSet;
    use ssr_agent::selfplay::config::HeldoutSchedule;
    use ssr_agent::selfplay::fake_arena::fake_bug;
    let tmp = tempfile::tempdir().unwrap();
    let held = fake_bug("held-1", "held-out bug", None);
    let config = SelfPlayConfig {
        seed: 3,
        rounds: 3,
        injector_rollouts: 1,
        procedural_per_round: 0,
        attempts_per_bug: 2,
        max_higher_order_per_round: 0,
        max_concurrent_episodes: 2,
        ..SelfPlayConfig::default()
    };
    let sp = SelfPlay {
        config,
        policy: Arc::new(policy("a bug")),
        arena: Arc::new(FakeArena::new(false, false)),
        run: RunDir::open(tmp.path()).unwrap(),
        shutdown: Shutdown::never(),
        progress: Arc::new(NoProgress),
        trainer: None,
        split: None,
        heldout: Some(Arc::new(HeldoutSet {
            bugs: vec![("held-1".into(), Arc::new(held))],
            schedule: HeldoutSchedule {
                every: 2,
                attempts: 2,
                ..HeldoutSchedule::default()
            },
        })),
        image: None,
    };
    assert_eq!(sp.run().await.unwrap(), RunOutcome::Finished);
    let run = RunDir::open(tmp.path()).unwrap();
    let metrics = run.metrics().unwrap();
    let points: Vec<bool> = metrics.iter().map(|m| m.heldout.is_some()).collect();
    assert_eq!(points, vec![true, false, true], "rounds 0 and 2");
    // Attempt 0 applies the fix, attempt 1 submits nothing: pass@2 = 1 of 1 bug.
    let h = metrics[0].heldout.as_ref().unwrap();
    assert_eq!((h.bugs, h.bugs_scored, h.bugs_solved), (1, 1, 1), "{h:?}");
    assert_eq!(h.solve_rate, Some(1.0));
    assert_eq!(h.solver_attempts, 2);
    // The evaluation's episodes are no part of the run's game.
    let episodes = run.episodes().unwrap();
    assert!(
        episodes.keys().all(|id| id.starts_with('r')),
        "{episodes:?}"
    );
    let html = ssr_agent::report::render_html(None, &metrics);
    assert!(html.contains("id=\"plot-heldout\"") && html.contains("held-out pass@K"));
}
