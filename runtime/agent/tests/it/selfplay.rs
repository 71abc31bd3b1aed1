//! The orchestrator over the in-memory [`FakeArena`]: rewards, higher-order selection,
//! resume, metrics and the bug store's contents, with no sandbox and no model (these
//! run everywhere; `tests/it/selfplay_scripted.rs` at the workspace root plays the
//! real game end to end).

use crate::support::ByteCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::rundir::{Outcome, RunDir};
use ssr_agent::selfplay::fake_arena::{FIX, FakeArena};
use ssr_agent::selfplay::{NoProgress, RunOutcome, SelfPlay, SelfPlayConfig};
use ssr_agent::shutdown::Shutdown;
use ssr_game::{BugStore, Role};
use std::path::Path;
use std::sync::Arc;

fn edit(text: &str) -> String {
    format!("<tool: edit>\n{text}\n</tool>")
}
const SUBMIT: &str = "<tool: submit>\n</tool>";

/// The injector writes a bug and submits; solver attempt `a` replays `solvers[a % n]`.
fn policy(solvers: &[&[String]]) -> ScriptedPolicy {
    let mut scripts = Scripts::new();
    let turns = |ts: &[String]| ts.iter().map(|t| ScriptTurn::Text(t.clone())).collect();
    scripts.insert(
        "injector".into(),
        vec![turns(&[edit("break add"), SUBMIT.to_string()])],
    );
    scripts.insert("solver".into(), solvers.iter().map(|s| turns(s)).collect());
    ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)))
}

fn fix() -> Vec<String> {
    vec![edit(FIX), SUBMIT.into()]
}
fn wrong() -> Vec<String> {
    vec![edit("wrong"), SUBMIT.into()]
}
fn nothing() -> Vec<String> {
    vec![SUBMIT.into()]
}

fn config() -> SelfPlayConfig {
    SelfPlayConfig {
        seed: 3,
        rounds: 1,
        injector_rollouts: 1,
        procedural_per_round: 0,
        attempts_per_bug: 2,
        attempts_per_higher_order_bug: 1,
        max_higher_order_per_round: 1,
        max_concurrent_episodes: 3,
        ..SelfPlayConfig::default()
    }
}

async fn play(
    dir: &Path,
    config: SelfPlayConfig,
    policy: ScriptedPolicy,
    arena: Arc<FakeArena>,
) -> RunOutcome {
    let sp = SelfPlay {
        config,
        policy: Arc::new(policy),
        arena,
        run: RunDir::open(dir).unwrap(),
        shutdown: Shutdown::never(),
        progress: Arc::new(NoProgress),
        trainer: None,
    };
    sp.run().await.unwrap()
}

fn arena(procedural_valid: bool, higher_order_valid: bool) -> Arc<FakeArena> {
    Arc::new(FakeArena::new(procedural_valid, higher_order_valid))
}

#[tokio::test]
async fn rewards_follow_the_spec_for_mixed_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let out = play(
        dir.path(),
        config(),
        policy(&[&fix(), &wrong()]),
        arena(false, false),
    )
    .await;
    assert_eq!(out, RunOutcome::Finished);
    let run = RunDir::open(dir.path()).unwrap();
    let episodes = run.episodes().unwrap();
    assert_eq!(episodes["r0-inj0-sol0"].reward, Some(1.0));
    assert_eq!(episodes["r0-inj0-sol1"].reward, Some(-1.0));
    // Section 7: one of two attempts solved, s = 1/2 → 1 − (1 + α)·s = 0.1.
    let m = &run.metrics().unwrap()[0];
    let inj = m.mean_injector_reward.unwrap();
    assert!((inj - 0.1).abs() < 1e-6, "{inj}");
    assert_eq!(m.mean_solver_reward, Some(0.0));
    let trajectories = std::fs::read_to_string(run.trajectories_path()).unwrap();
    let rewards: Vec<(String, f64)> = trajectories
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|t| {
            (
                t["group_id"].as_str().unwrap().to_string(),
                t["reward"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rewards.len(),
        3,
        "the injector and two solvers (no higher-order bug)"
    );
    assert_eq!(rewards[0].0, "r0-injector");
    assert!((rewards[0].1 - 0.1).abs() < 1e-6);
    assert_eq!(
        &rewards[1..3],
        &[("r0-inj0".into(), 1.0), ("r0-inj0".into(), -1.0)]
    );
}

#[tokio::test]
async fn an_unsolved_bug_gives_the_injector_minus_alpha() {
    let dir = tempfile::tempdir().unwrap();
    play(
        dir.path(),
        config(),
        policy(&[&wrong()]),
        arena(false, false),
    )
    .await;
    let m = &RunDir::open(dir.path()).unwrap().metrics().unwrap()[0];
    // s = 0: valid but nobody solved it (too hard), SSR_SPEC.md section 7 gives −α.
    let expected = ssr_game::reward::injector_reward(config().injector_reward, true, 0, 2);
    assert_eq!(expected, -0.8);
    assert_eq!(m.mean_injector_reward, Some(f64::from(expected as f32)));
    assert_eq!(m.solved, 0);
}

#[tokio::test]
async fn higher_order_bugs_come_from_failed_nonempty_patches_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        attempts_per_bug: 3,
        max_higher_order_per_round: 5,
        ..config()
    };
    let arena = arena(false, true);
    play(
        dir.path(),
        cfg,
        policy(&[&fix(), &wrong(), &nothing()]),
        arena.clone(),
    )
    .await;
    let calls = arena.calls();
    let made: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("higher_order"))
        .collect();
    // sol0 solved, sol2 changed nothing: only sol1 seeds a higher-order bug.
    assert_eq!(made, ["higher_order r0-inj0-sol1-ho"]);
    let store = BugStore::new(dir.path().join("bugs"));
    let bug = store.read("r0-inj0-sol1-ho").unwrap();
    assert_eq!(bug.higher_order_patch.as_deref(), Some("wrong"));
    assert_eq!(bug.order(), 2);
    assert_eq!(
        store.attempt("r0-inj0", "r0-inj0-sol1").unwrap().as_deref(),
        Some("wrong")
    );
    assert_eq!(
        store.attempt("r0-inj0", "r0-inj0-sol2").unwrap().as_deref(),
        Some("")
    );
    let v = store.verdict("r0-inj0-sol1-ho").unwrap().unwrap();
    assert!(v.valid && v.order == 2, "{v:?}");
    // Its one attempt replays script 0 (the fix) and solves it.
    let run = RunDir::open(dir.path()).unwrap();
    let ho = &run.episodes().unwrap()["r0-inj0-sol1-ho-sol0"];
    assert_eq!(ho.reward, Some(1.0));
    assert_eq!(ho.role, Role::Solver);
    let m = &run.metrics().unwrap()[0];
    assert_eq!(
        (m.higher_order_bugs, m.solver_episodes, m.solved),
        (1, 4, 2)
    );
    // Higher-order attempts do not count for the injector: s = 1/3.
    let expected = ssr_game::reward::injector_reward(config().injector_reward, true, 1, 3);
    assert!((m.mean_injector_reward.unwrap() - f64::from(expected as f32)).abs() < 1e-9);
}

#[tokio::test]
async fn the_higher_order_cap_takes_the_first_failed_attempts_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        attempts_per_bug: 3,
        max_higher_order_per_round: 1,
        ..config()
    };
    let arena = arena(false, false);
    play(dir.path(), cfg, policy(&[&wrong()]), arena.clone()).await;
    let made: Vec<String> = arena
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("higher_order"))
        .collect();
    assert_eq!(made, ["higher_order r0-inj0-sol0-ho"]);
    let m = &RunDir::open(dir.path()).unwrap().metrics().unwrap()[0];
    assert_eq!(m.higher_order_bugs, 0);
    assert_eq!(m.rejections.get("higher_order_no_failure"), Some(&1));
}

#[tokio::test]
async fn metrics_count_every_source_and_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        injector_rollouts: 2,
        procedural_per_round: 2,
        ..config()
    };
    play(
        dir.path(),
        cfg,
        policy(&[&fix(), &wrong()]),
        arena(false, false),
    )
    .await;
    let m = &RunDir::open(dir.path()).unwrap().metrics().unwrap()[0];
    assert_eq!(m.injector_episodes, 2);
    assert_eq!(m.model_submitted, 2);
    assert_eq!(m.model_valid, 2);
    assert_eq!(m.validity_rate, 1.0);
    assert_eq!((m.procedural_attempted, m.procedural_valid), (2, 0));
    assert_eq!(m.rejections.get("procedural_none"), Some(&2));
    assert_eq!(m.solver_episodes, 4);
    assert_eq!(m.solved, 2);
    assert_eq!(m.solve_rate, 0.5);
    assert_eq!(m.mean_injector_turns, Some(2.0));
    assert_eq!(m.mean_solver_turns, Some(2.0));
    assert_eq!(m.trajectories_skipped, 0);
    for key in ["inject+verify", "solve+evaluate", "higher-order"] {
        assert!(m.phase_ms.contains_key(key), "{:?}", m.phase_ms);
    }
}

#[tokio::test]
async fn procedural_bugs_are_solved_like_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        injector_rollouts: 0,
        procedural_per_round: 1,
        ..config()
    };
    play(dir.path(), cfg, policy(&[&fix()]), arena(true, false)).await;
    let run = RunDir::open(dir.path()).unwrap();
    let m = &run.metrics().unwrap()[0];
    assert_eq!((m.procedural_valid, m.solver_episodes, m.solved), (1, 2, 2));
    let e = &run.episodes().unwrap()["r0-proc0-sol0"];
    assert!(matches!(&e.outcome, Outcome::Solver(o) if o.solved));
}

#[tokio::test]
async fn a_resumed_run_redoes_nothing_finished() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        procedural_per_round: 1,
        ..config()
    };
    play(
        dir.path(),
        cfg.clone(),
        policy(&[&fix(), &wrong()]),
        arena(true, true),
    )
    .await;
    let run = RunDir::open(dir.path()).unwrap();
    let episodes = std::fs::read_to_string(run.episodes_path()).unwrap();
    let trajectories = std::fs::read_to_string(run.trajectories_path()).unwrap();

    // The same run again: nothing to do.
    let again = arena(true, true);
    play(
        dir.path(),
        cfg.clone(),
        policy(&[&fix(), &wrong()]),
        again.clone(),
    )
    .await;
    assert_eq!(again.calls(), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(run.episodes_path()).unwrap(),
        episodes
    );
    assert_eq!(
        std::fs::read_to_string(run.trajectories_path()).unwrap(),
        trajectories
    );

    // One more round: only round 1 is played.
    let more = arena(true, true);
    let cfg2 = SelfPlayConfig { rounds: 2, ..cfg };
    play(dir.path(), cfg2, policy(&[&fix(), &wrong()]), more.clone()).await;
    let calls = more.calls();
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c.contains(" r1-")), "{calls:?}");
    assert_eq!(run.metrics().unwrap().len(), 2);
}

#[tokio::test]
async fn a_round_cut_after_its_episodes_resumes_from_the_index_and_the_store() {
    // Round 0 played whole, then its metrics line lost (killed while writing): the
    // resumed round plays no episode again and rebuilds the same rewards and metrics.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        procedural_per_round: 1,
        ..config()
    };
    play(
        dir.path(),
        cfg.clone(),
        policy(&[&fix(), &wrong()]),
        arena(true, true),
    )
    .await;
    let run = RunDir::open(dir.path()).unwrap();
    let before = run.metrics().unwrap();
    let trajectories = std::fs::read_to_string(run.trajectories_path()).unwrap();
    std::fs::remove_file(run.metrics_path()).unwrap();

    let again = arena(true, true);
    play(dir.path(), cfg, policy(&[&fix(), &wrong()]), again.clone()).await;
    assert_eq!(again.calls(), Vec::<String>::new());
    let after = run.metrics().unwrap();
    let strip = |m: &ssr_agent::rundir::RoundMetrics| ssr_agent::rundir::RoundMetrics {
        wall_ms: 0,
        phase_ms: Default::default(),
        ..m.clone()
    };
    assert_eq!(strip(&after[0]), strip(&before[0]));
    assert_eq!(
        std::fs::read_to_string(run.trajectories_path()).unwrap(),
        trajectories
    );
}
