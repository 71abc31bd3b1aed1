//! The learning-signal settings over the in-memory arena (issue 14, item 4):
//! patch-similarity shaping changes only the reward a failed attempt trains on, compact
//! filtering masks truncated attempts from the groups, and rejection sampling turns
//! solved attempts into demonstrations with their erroneous turns masked.

use crate::selfplay::{SUBMIT, arena, config, edit, fix, play, policy, trajectories, wrong};
use ssr_agent::budget::Budgets;
use ssr_agent::rundir::{RoundMetrics, RunDir};
use ssr_agent::selfplay::SelfPlayConfig;
use ssr_agent::selfplay::config::ShapedReward;
use ssr_agent::selfplay::fake_arena::FIX;
use ssr_game::BugStore;
use ssr_game::reward::shaped_solver_reward;
use ssr_trainer::train::Demo;
use std::path::Path;

/// A procedural bug per round and no model injector: its true fix is known.
/// Two attempts on the higher-order bug: the second one fails.
fn procedural_config() -> SelfPlayConfig {
    SelfPlayConfig {
        injector_rollouts: 0,
        procedural_per_round: 1,
        attempts_per_higher_order_bug: 2,
        ..config()
    }
}

/// A failed patch that shares the fix's header lines but not its `+fix` line.
fn near_miss() -> Vec<String> {
    vec![
        edit("--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n+fixed"),
        SUBMIT.into(),
    ]
}

fn solver_rewards(run: &RunDir) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = trajectories(run)
        .iter()
        .filter(|t| t["role"] == "solver")
        .map(|t| {
            let episode = t["metadata"]["episode"].as_str().unwrap().to_string();
            (episode, t["reward"].as_f64().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn metrics_of(dir: &Path, cfg: SelfPlayConfig, solvers: &[&[String]]) -> RoundMetrics {
    play(dir, cfg, policy(solvers), arena(true, true)).await;
    RunDir::open(dir).unwrap().metrics().unwrap().remove(0)
}

#[tokio::test]
async fn shaping_changes_the_training_reward_only() {
    let (flat_dir, shaped_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let solvers: &[&[String]] = &[&fix(), &near_miss()];
    let flat = metrics_of(flat_dir.path(), procedural_config(), solvers).await;
    let shaped_cfg = SelfPlayConfig {
        shaped_reward: ShapedReward::Similarity,
        ..procedural_config()
    };
    let shaped = metrics_of(shaped_dir.path(), shaped_cfg, solvers).await;

    // Solve counts, rates, higher-order bugs and the evaluator's mean reward: equal.
    // The first-order fix and the first higher-order attempt (it replays the fix).
    assert_eq!(flat.solved, 2);
    for (a, b) in [
        (flat.solved, shaped.solved),
        (flat.solver_episodes, shaped.solver_episodes),
        (flat.higher_order_bugs, shaped.higher_order_bugs),
    ] {
        assert_eq!(a, b, "flat {flat:?}\nshaped {shaped:?}");
    }
    assert_eq!(flat.solve_rate, shaped.solve_rate);
    assert_eq!(flat.mean_solver_reward, shaped.mean_solver_reward);
    assert_eq!(shaped.higher_order_bugs, 1, "the near miss seeds one");

    let run = RunDir::open(shaped_dir.path()).unwrap();
    let episodes = run.episodes().unwrap();
    let (solved_id, failed_id) = ("r0-proc0-sol0", "r0-proc0-sol1");
    assert_eq!(episodes[solved_id].reward, Some(1.0));
    assert_eq!(episodes[failed_id].reward, Some(-1.0), "the evaluator's");
    // The stored patch against the bug's known fix (the reversed procedural patch).
    let store = BugStore::new(run.bugs_root());
    let fix = store.read("r0-proc0").unwrap().true_fix().unwrap();
    let patch = store.attempt("r0-proc0", failed_id).unwrap().unwrap();
    let want = shaped_solver_reward(&patch, &fix) as f32;
    assert!(want > -1.0 && want < 1.0, "the header lines match: {want}");
    let shaped_reward = episodes[failed_id].train_reward.unwrap();
    assert_eq!(shaped_reward, want);
    let rewards = solver_rewards(&run);
    let by_id = |id: &str| rewards.iter().find(|(e, _)| e == id).unwrap().1;
    assert_eq!(by_id(solved_id), 1.0);
    assert!(
        (by_id(failed_id) - f64::from(want)).abs() < 1e-6,
        "{rewards:?}"
    );
    // The higher-order bug's fix is not known: its failed attempt keeps −1.
    assert_eq!(by_id("r0-proc0-sol1-ho-sol1"), -1.0, "{rewards:?}");

    // Without shaping the failed attempt trains on the spec's −1.
    let flat_run = RunDir::open(flat_dir.path()).unwrap();
    assert_eq!(flat_run.episodes().unwrap()[failed_id].train_reward, None);
    let flat_rewards = solver_rewards(&flat_run);
    assert!(flat_rewards.contains(&(failed_id.to_string(), -1.0)));
}

#[tokio::test]
async fn compact_filtering_masks_a_truncated_attempt_from_its_group() {
    // Two turns of budget; the second attempt edits twice and never submits.
    let out_of_turns = vec![edit("wrong"), edit("still wrong"), edit("again")];
    let solvers: &[&[String]] = &[&fix(), &out_of_turns];
    let budgets = Budgets {
        max_turns: 2,
        ..config().solver_budgets
    };
    let cfg = |compact| SelfPlayConfig {
        solver_budgets: budgets.clone(),
        compact_filtering: compact,
        max_higher_order_per_round: 0,
        ..config()
    };
    let (plain_dir, compact_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = metrics_of(plain_dir.path(), cfg(false), solvers).await;
    let compact = metrics_of(compact_dir.path(), cfg(true), solvers).await;

    let truncated = "r0-inj0-sol1";
    let run = RunDir::open(compact_dir.path()).unwrap();
    let rec = &run.episodes().unwrap()[truncated];
    assert_eq!(rec.end, ssr_agent::transcript::EndKind::TurnsExhausted);
    assert_eq!(rec.reward, Some(-1.0), "still evaluated and unsolved");
    assert_eq!((plain.solved, compact.solved), (1, 1));
    assert_eq!(
        (plain.trajectories_truncated, compact.trajectories_truncated),
        (0, 1)
    );
    let ids = |dir: &Path| -> Vec<String> {
        solver_rewards(&RunDir::open(dir).unwrap())
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    };
    assert!(ids(plain_dir.path()).contains(&truncated.to_string()));
    assert_eq!(ids(compact_dir.path()), vec!["r0-inj0-sol0".to_string()]);
    // The injector's reward still counts the truncated attempt as a failure.
    assert_eq!(plain.mean_injector_reward, compact.mean_injector_reward);
}

#[tokio::test]
async fn rft_demonstrations_mask_the_malformed_turn() {
    let malformed = "I will fix it now.".to_string();
    let recovered = vec![malformed, edit(FIX), SUBMIT.into()];
    let solvers: &[&[String]] = &[&recovered, &wrong()];
    let dir = tempfile::tempdir().unwrap();
    let cfg = SelfPlayConfig {
        rft: true,
        max_higher_order_per_round: 0,
        ..config()
    };
    let m = metrics_of(dir.path(), cfg, solvers).await;
    assert_eq!((m.solved, m.rft_demos), (1, 1));

    let run = RunDir::open(dir.path()).unwrap();
    let text = std::fs::read_to_string(run.rft_path()).unwrap();
    let demos: Vec<Demo> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(demos.len(), 1, "only the solved attempt");
    let demo = &demos[0];
    let t = run.transcript("r0-inj0-sol0").unwrap();
    assert!(
        t.turns[0].call_error.is_some(),
        "the first turn is malformed"
    );
    assert_eq!(demo.token_ids, t.token_ids());
    // Walk the segments: the first sampled one (the malformed turn) is masked, the
    // two good turns are trained, and nothing read is.
    let (mut at, mut sampled_seen) = (0, 0);
    for s in &t.segments {
        let mask = &demo.loss_mask[at..at + s.token_ids.len()];
        let want = u8::from(s.sampled && sampled_seen > 0);
        assert!(mask.iter().all(|&b| b == want), "segment {s:?}");
        sampled_seen += usize::from(s.sampled);
        at += s.token_ids.len();
    }
    assert_eq!(sampled_seen, 3);
    assert_eq!(demo.metadata.as_ref().unwrap()["round"], 0);
    demo.validate(1 << 20).unwrap();
}

#[tokio::test]
async fn without_rft_no_demonstrations_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics_of(dir.path(), config(), &[&fix(), &wrong()]).await;
    assert_eq!(m.rft_demos, 0);
    assert!(!RunDir::open(dir.path()).unwrap().rft_path().exists());
}
