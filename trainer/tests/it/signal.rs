//! The learning signal of a training step, through the real `Trainer`: an advantage of
//! known sign moves the log-probabilities of the rewarded tokens in its direction, and
//! a step whose every advantage is 0 says so instead of reporting a loss.

use crate::train::random_weights;
use ssr_trainer::optim::AdamWConfig;
use ssr_trainer::train::{Dataset, NoLearningSignal, TrainConfig, Trainer, next_token_logprobs};
use ssr_trainer::trajectory::{Role, Trajectory};
use ssr_trainer::{Config, Device, Weights};

/// One on-policy trajectory: a 4-token prompt and a 6-token answer (trained), with its
/// behaviour log-probs computed from `w` at temperature 1.
fn trajectory(w: &Weights, group: &str, answer_seed: u32, reward: f32) -> Trajectory {
    let vocab = w.config.vocab_size as u32;
    let mut tokens: Vec<u32> = vec![3, 17, 9, 40];
    tokens.extend((0..6).map(|i| (answer_seed * 7 + i * 13) % vocab));
    let positions = answer_positions(&tokens);
    let (lp, _) = next_token_logprobs(w, &tokens, &positions, 1.0);
    let mut logprobs = vec![0.0; tokens.len()];
    for (&p, l) in positions.iter().zip(lp) {
        logprobs[p] = l;
    }
    Trajectory {
        role: Role::Solver,
        group_id: group.into(),
        loss_mask: (0..tokens.len()).map(|i| u8::from(i >= 4)).collect(),
        token_ids: tokens,
        logprobs,
        reward,
        advantage: None,
        temperature: Some(1.0),
        top_p: None,
        metadata: serde_json::json!({}),
    }
}

fn answer_positions(tokens: &[u32]) -> Vec<usize> {
    (4..tokens.len()).collect()
}

/// Sum of the log-probabilities of the answer tokens under `w`.
fn answer_logp(w: &Weights, t: &Trajectory) -> f64 {
    let (lp, _) = next_token_logprobs(w, &t.token_ids, &answer_positions(&t.token_ids), 1.0);
    lp.iter().map(|&x| x as f64).sum()
}

/// Plain settings: no warm-up (the first step has the full learning rate), no weight
/// decay (so only the gradient moves the weights), a small learning rate (one AdamW
/// step moves every weight by about lr * sign(gradient): to first order that raises
/// the objective, and 1e-3 on this model stays in the first-order regime).
fn config() -> TrainConfig {
    TrainConfig {
        adamw: AdamWConfig {
            lr: 1e-3,
            warmup_steps: 0,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        ..TrainConfig::default()
    }
}

/// One real step (`Trainer` on the CPU) on `trajectories`; the weights after it.
fn one_step(
    w0: &Weights,
    trajectories: &[Trajectory],
) -> (Weights, ssr_trainer::train::StepMetrics) {
    let data = Dataset::new(
        trajectories,
        &w0.config,
        config().advantage,
        config().advantage_eps,
    )
    .unwrap();
    let mut trainer = Trainer::fresh(w0.clone(), config(), Device::Cpu).unwrap();
    let m = trainer.step(&data).unwrap();
    (trainer.weights().unwrap().clone(), m)
}

#[test]
fn a_positive_advantage_raises_and_a_negative_one_lowers_the_rewarded_tokens_logprob() {
    let w0 = random_weights(&Config::tiny(), 21);
    for sign in [1.0f32, -1.0] {
        // Precomputed advantages of one sign on both members, so each trajectory's
        // direction is known and not a group-baseline artefact.
        let trajs: Vec<Trajectory> = (0..2)
            .map(|k| Trajectory {
                advantage: Some(sign),
                ..trajectory(&w0, "bug-1", 1 + k, sign)
            })
            .collect();
        let (w1, m) = one_step(&w0, &trajs);
        assert!(m.no_signal.is_none());
        assert!(m.grad_norm > 0.0);
        for t in &trajs {
            let (before, after) = (answer_logp(&w0, t), answer_logp(&w1, t));
            if sign > 0.0 {
                assert!(after > before, "advantage +1: {before} -> {after}");
            } else {
                assert!(after < before, "advantage -1: {before} -> {after}");
            }
        }
    }
}

/// The same through group advantages (GRPO): in one group, the +1 attempt's tokens go
/// up and the -1 attempt's go down, in the same step.
#[test]
fn group_advantages_move_the_rewarded_attempt_up_and_the_failed_one_down() {
    let w0 = random_weights(&Config::tiny(), 22);
    let trajs = vec![
        trajectory(&w0, "bug-1", 1, 1.0),
        trajectory(&w0, "bug-1", 2, -1.0),
    ];
    let (w1, _) = one_step(&w0, &trajs);
    assert!(answer_logp(&w1, &trajs[0]) > answer_logp(&w0, &trajs[0]));
    assert!(answer_logp(&w1, &trajs[1]) < answer_logp(&w0, &trajs[1]));
}

/// Regression (issue 14): every reward of every group was -1, the step reported "loss
/// 0.0000" and changed nothing. It now reports the typed condition.
#[test]
fn equal_rewards_in_every_group_report_no_learning_signal() {
    let w0 = random_weights(&Config::tiny(), 23);
    let trajs = vec![
        trajectory(&w0, "bug-1", 1, -1.0),
        trajectory(&w0, "bug-1", 2, -1.0),
        trajectory(&w0, "bug-2", 3, -1.0),
        trajectory(&w0, "bug-2", 4, -1.0),
    ];
    let (w1, m) = one_step(&w0, &trajs);
    assert_eq!(
        m.no_signal,
        Some(NoLearningSignal {
            groups: 2,
            sequences: 4
        })
    );
    assert!(
        m.no_signal
            .as_ref()
            .unwrap()
            .to_string()
            .starts_with("no learning signal: every reward of the group was equal")
    );
    assert_eq!(m.grad_norm, 0.0, "the policy gradient is exactly zero");
    // Without weight decay and momentum, nothing moved.
    assert!(w1 == w0, "the weights changed");
    // One group with a spread is enough for a signal.
    let mut mixed = trajs.clone();
    mixed[3].reward = 1.0;
    let data = Dataset::new(&mixed, &w0.config, config().advantage, 1e-6).unwrap();
    assert_eq!(data.groups_with_signal(), (1, 2));
    let (_, m) = one_step(&w0, &mixed);
    assert_eq!(m.no_signal, None);
    // The JSON of a step carries it (the self-play side and `ssr train --json` read it).
    let json = serde_json::to_value(one_step(&w0, &trajs).1).unwrap();
    assert_eq!(json["no_signal"]["groups"], 2);
}
