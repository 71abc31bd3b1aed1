//! The orchestrator over the in-memory [`FakeArena`]: rewards, higher-order selection,
//! resume, metrics and the bug store's contents, with no sandbox and no model (these
//! run everywhere; `tests/it/selfplay_scripted.rs` at the workspace root plays the
//! real game end to end).

use crate::support::ByteCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::rundir::{Outcome, RunDir};
use ssr_agent::selfplay::fake_arena::{FIX, FakeArena, INFRA};
use ssr_agent::selfplay::{NoProgress, RunOutcome, SelfPlay, SelfPlayConfig, SelfPlayError};
use ssr_agent::shutdown::Shutdown;
use ssr_game::{BugStore, Role};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn edit(text: &str) -> String {
    format!("<tool: edit>\n{text}\n</tool>")
}
pub(crate) const SUBMIT: &str = "<tool: submit>\n</tool>";

/// The injector writes a bug and submits; solver attempt `a` replays `solvers[a % n]`.
pub(crate) fn policy(solvers: &[&[String]]) -> ScriptedPolicy {
    let mut scripts = Scripts::new();
    let turns = |ts: &[String]| ts.iter().map(|t| ScriptTurn::Text(t.clone())).collect();
    scripts.insert(
        "injector".into(),
        vec![turns(&[edit("break add"), SUBMIT.to_string()])],
    );
    scripts.insert("solver".into(), solvers.iter().map(|s| turns(s)).collect());
    ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)))
}

pub(crate) fn fix() -> Vec<String> {
    vec![edit(FIX), SUBMIT.into()]
}
pub(crate) fn wrong() -> Vec<String> {
    vec![edit("wrong"), SUBMIT.into()]
}
fn nothing() -> Vec<String> {
    vec![SUBMIT.into()]
}
/// A script with no turn: the scripted policy fails on the first request, as a
/// model server that cannot be reached does.
fn unreachable() -> Vec<String> {
    Vec::new()
}
/// The solver's evaluation fails in the sandbox (the fake arena's infra text).
fn sandbox_down() -> Vec<String> {
    vec![edit(INFRA), SUBMIT.into()]
}

pub(crate) fn trajectories(run: &RunDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.trajectories_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn config() -> SelfPlayConfig {
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

pub(crate) async fn play(
    dir: &Path,
    config: SelfPlayConfig,
    policy: ScriptedPolicy,
    arena: Arc<FakeArena>,
) -> RunOutcome {
    try_play(dir, config, policy, arena).await.unwrap()
}

async fn try_play(
    dir: &Path,
    config: SelfPlayConfig,
    policy: ScriptedPolicy,
    arena: Arc<FakeArena>,
) -> Result<RunOutcome, SelfPlayError> {
    let sp = SelfPlay {
        config,
        policy: Arc::new(policy),
        arena,
        run: RunDir::open(dir).unwrap(),
        shutdown: Shutdown::never(),
        progress: Arc::new(NoProgress),
        trainer: None,
        split: None,
        heldout: None,
        image: None,
    };
    sp.run().await
}

pub(crate) fn arena(procedural_valid: bool, higher_order_valid: bool) -> Arc<FakeArena> {
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

/// Issue 13: an attempt whose model failed is infra: no −1, not in the solve rate,
/// not in its group's advantage (no trajectory), counted apart.
#[tokio::test]
async fn model_failures_are_infra_and_left_out_of_rewards_and_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        attempts_per_bug: 4,
        max_higher_order_per_round: 0,
        ..config()
    };
    let p = policy(&[&fix(), &wrong(), &unreachable(), &unreachable()]);
    assert_eq!(
        play(dir.path(), cfg, p, arena(false, false)).await,
        RunOutcome::Finished
    );
    let run = RunDir::open(dir.path()).unwrap();
    let episodes = run.episodes().unwrap();
    for id in ["r0-inj0-sol2", "r0-inj0-sol3"] {
        let e = &episodes[id];
        assert_eq!(e.end, ssr_agent::transcript::EndKind::PolicyError);
        assert_eq!(e.reward, None, "a model failure was scored: {e:?}");
        assert!(
            e.infra.as_deref().unwrap().contains("the model failed"),
            "{e:?}"
        );
    }
    assert_eq!(episodes["r0-inj0-sol1"].reward, Some(-1.0));
    let m = &run.metrics().unwrap()[0];
    assert_eq!(
        (m.infra_attempts, m.model_failures, m.model_episodes),
        (2, 2, 5)
    );
    // 1 solved of 2 scored: s = 0.5 (not 1 of 4), so r_inj = 1 − 1.8·0.5 = 0.1.
    assert!((m.solve_rate - 0.5).abs() < 1e-9, "{}", m.solve_rate);
    // (The index records an injector before its reward is known: the round's
    // metrics and trajectories carry it.)
    let inj = m.mean_injector_reward.unwrap();
    assert!((inj - 0.1).abs() < 1e-6, "{inj}");
    assert_eq!(m.mean_solver_reward, Some(0.0));
    let t = trajectories(&run);
    let solvers: Vec<f64> = t
        .iter()
        .filter(|t| t["group_id"] == "r0-inj0")
        .map(|t| t["reward"].as_f64().unwrap())
        .collect();
    assert_eq!(solvers, vec![1.0, -1.0], "infra attempts are in no group");
    assert_eq!(m.trajectories_unrewarded, 2);
}

/// Issue 13: a valid bug with fewer than ⌈G/2⌉ scored attempts gives its injector no
/// reward (and so no trajectory); infra evaluations (the sandbox failed) count as
/// unscored like model failures.
#[tokio::test]
async fn too_few_scored_attempts_leave_the_injector_unrewarded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        attempts_per_bug: 4,
        max_higher_order_per_round: 0,
        ..config()
    };
    // One scored attempt of G = 4 (⌈4/2⌉ = 2 needed).
    let p = policy(&[&fix(), &sandbox_down(), &sandbox_down(), &unreachable()]);
    play(dir.path(), cfg, p, arena(false, false)).await;
    let run = RunDir::open(dir.path()).unwrap();
    let episodes = run.episodes().unwrap();
    assert_eq!(episodes["r0-inj0-sol0"].reward, Some(1.0));
    for id in ["r0-inj0-sol1", "r0-inj0-sol2"] {
        let e = &episodes[id];
        assert_eq!(e.end, ssr_agent::transcript::EndKind::Submitted);
        assert_eq!(e.reward, None);
        assert!(e.infra.as_deref().unwrap().contains("sandbox"), "{e:?}");
    }
    let m = &run.metrics().unwrap()[0];
    assert_eq!((m.infra_attempts, m.model_failures), (3, 1));
    assert_eq!(m.injectors_unrewarded, 1);
    assert_eq!(m.mean_injector_reward, None);
    let t = trajectories(&run);
    assert!(t.iter().all(|t| t["role"] != "injector"), "{t:?}");
    assert_eq!(t.len(), 1, "only the scored attempt trains");

    // Two scored of G = 4 is enough: s = 1/2.
    let dir = tempfile::tempdir().unwrap();
    let p = policy(&[&fix(), &wrong(), &sandbox_down(), &sandbox_down()]);
    play(dir.path(), cfg_g4(), p, arena(false, false)).await;
    let run = RunDir::open(dir.path()).unwrap();
    let m = &run.metrics().unwrap()[0];
    let inj = m.mean_injector_reward.unwrap();
    assert!((inj - 0.1).abs() < 1e-6, "{inj}");
    assert_eq!(m.injectors_unrewarded, 0);
}

fn cfg_g4() -> SelfPlayConfig {
    SelfPlayConfig {
        attempts_per_bug: 4,
        max_higher_order_per_round: 0,
        ..config()
    }
}

/// Issue 13: a run whose every episode failed to reach the model stops with the
/// model's error, recording no reward and nothing to train on.
#[tokio::test]
async fn a_run_whose_model_never_answers_stops_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut scripts = Scripts::new();
    scripts.insert("injector".into(), vec![Vec::new()]);
    scripts.insert("solver".into(), vec![Vec::new()]);
    let p = ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)));
    let cfg = SelfPlayConfig {
        rounds: 3,
        procedural_per_round: 1,
        ..config()
    };
    let err = try_play(dir.path(), cfg, p, arena(true, false))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, SelfPlayError::ModelUnreachable { round: 0, .. }),
        "{text}"
    );
    assert!(text.contains("no turn 0"), "{text}");
    let run = RunDir::open(dir.path()).unwrap();
    let episodes = run.episodes().unwrap();
    // The injector and the two attempts on the procedural bug.
    assert_eq!(episodes.len(), 3, "{episodes:?}");
    assert!(episodes.values().all(|e| e.reward.is_none()));
    let m = run.metrics().unwrap();
    assert_eq!(m.len(), 1, "the run stopped after its first round");
    assert_eq!((m[0].model_failures, m[0].model_episodes), (3, 3));
    assert!(m[0].rejections.is_empty(), "{:?}", m[0].rejections);
    assert!(trajectories(&run).is_empty());
}

/// Issue 13: an artifact whose verification the sandbox could not run is not the
/// injector's failure: no −1, no trajectory, not in the validity rate.
#[tokio::test]
async fn an_injector_whose_verification_could_not_run_is_unrewarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut scripts = Scripts::new();
    let turns = |ts: &[String]| ts.iter().map(|t| ScriptTurn::Text(t.clone())).collect();
    scripts.insert("injector".into(), vec![turns(&sandbox_down())]);
    scripts.insert("solver".into(), vec![turns(&fix())]);
    let p = ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)));
    play(dir.path(), config(), p, arena(false, false)).await;
    let run = RunDir::open(dir.path()).unwrap();
    let inj = &run.episodes().unwrap()["r0-inj0"];
    assert_eq!(inj.reward, None, "{inj:?}");
    assert!(inj.infra.as_deref().unwrap().contains("sandbox"), "{inj:?}");
    let m = &run.metrics().unwrap()[0];
    assert_eq!((m.injectors_unrewarded, m.validity_rate), (1, 0.0));
    assert!(m.rejections.is_empty(), "{:?}", m.rejections);
    assert!(trajectories(&run).is_empty());
}
