//! RL maths: log-probs and entropy with their gradient, advantages, policy loss.

use crate::grad::{assert_grad, project, random_vec, rng};
use ssr_trainer::rl::*;

#[test]
fn logprobs_backward_matches_finite_differences() {
    let mut r = rng(1);
    let (rows, vocab) = (5, 11);
    let logits = random_vec(&mut r, rows * vocab, 3.0);
    let targets = [0u32, 3, 10, 7, 7];
    let (dlp, dent) = (random_vec(&mut r, rows, 1.0), random_vec(&mut r, rows, 1.0));
    for temperature in [1.0f32, 0.7, 1.6] {
        let analytic =
            logprobs_from_logits_backward(&logits, &targets, vocab, temperature, &dlp, Some(&dent));
        // Tolerance: f32 logits of magnitude ~3 with h = 1e-2; observed errors ~1e-6.
        assert_grad(
            "dlogits",
            &logits,
            &analytic,
            1e-2,
            (1e-4, 1e-3),
            usize::MAX,
            |x| {
                let (lp, h) = logprobs_from_logits(x, &targets, vocab, temperature);
                project(&lp, &dlp) + project(&h, &dent)
            },
        );
    }
}

#[test]
fn logprobs_backward_without_entropy_is_softmax_minus_onehot() {
    let logits = [1.0f32, 2.0, 3.0];
    let d = logprobs_from_logits_backward(&logits, &[1], 3, 1.0, &[1.0], None);
    let z: f32 = logits.iter().map(|x| x.exp()).sum();
    for (j, &g) in d.iter().enumerate() {
        let want = if j == 1 { 1.0 } else { 0.0 } - logits[j].exp() / z;
        assert!((g - want).abs() < 1e-6, "{j}: {g} vs {want}");
    }
}

#[test]
fn logprobs_are_stable_for_huge_logits() {
    let (lp, h) = logprobs_from_logits(&[1e4, 0.0, -1e4], &[0], 3, 1.0);
    assert!(lp[0].abs() < 1e-6 && h[0].abs() < 1e-6, "{lp:?} {h:?}");
}

#[test]
fn advantages_follow_the_documented_formulas() {
    let rewards = [
        1.0f32, 0.0, 0.0, 1.0, /* single */ 5.0, /* constant */ 2.0, 2.0,
    ];
    let offsets = [0, 4, 5, 5, 7]; // includes an empty group
    let grpo = advantages(&rewards, &offsets, AdvantageKind::Grpo, 0.0);
    // mean 0.5, sample std sqrt(1/3)
    let s = (1.0f32 / 3.0).sqrt();
    let want = [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0];
    for (g, w) in grpo.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{grpo:?}");
    }
    let dr = advantages(&rewards, &offsets, AdvantageKind::DrGrpo, 1e-6);
    assert_eq!(dr, vec![0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0]);
    let rloo = advantages(&rewards, &offsets, AdvantageKind::Rloo, 1e-6);
    // r_i - mean of the other three: 1 - 1/3, 0 - 2/3
    let want = [2.0 / 3.0, -2.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0, 0.0, 0.0, 0.0];
    for (g, w) in rloo.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{rloo:?}");
    }
}

#[test]
fn advantage_kind_parses_from_cli_names() {
    assert_eq!(
        "dr-grpo".parse::<AdvantageKind>(),
        Ok(AdvantageKind::DrGrpo)
    );
    assert!("ppo".parse::<AdvantageKind>().is_err());
}

/// (logp, old_logp, ref_logp, advantages, mask)
type LossInputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn loss_inputs(n: usize, seed: u64) -> LossInputs {
    let mut r = rng(seed);
    let logp: Vec<f32> = random_vec(&mut r, n, 1.0).iter().map(|x| x - 2.0).collect();
    // old logp within ±0.5 of current so that some ratios fall outside the clip range
    let old: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.5))
        .map(|(a, b)| a + b)
        .collect();
    let reference: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.3))
        .map(|(a, b)| a + b)
        .collect();
    let adv = random_vec(&mut r, n, 2.0);
    let mask: Vec<f32> = (0..n).map(|i| if i % 4 == 0 { 0.0 } else { 1.0 }).collect();
    (logp, old, reference, adv, mask)
}

#[test]
fn policy_loss_gradient_matches_finite_differences() {
    let n = 24;
    let (logp, old, reference, adv, mask) = loss_inputs(n, 7);
    let offsets = [0, 5, 5, 16, 24];
    for aggregation in [
        Aggregation::TokenMean,
        Aggregation::SequenceMean,
        Aggregation::TokenSum { divisor: 32.0 },
    ] {
        let cfg = LossConfig {
            kl_coef: 0.3,
            aggregation,
            ..LossConfig::default()
        };
        let out = policy_loss(&logp, &old, Some(&reference), &adv, &mask, &offsets, &cfg);
        assert!(
            out.clipped_tokens > 0,
            "the inputs should exercise the clip"
        );
        // h small enough not to cross a clip boundary for these inputs (the loss is
        // piecewise smooth); tolerance covers f32 rounding of the ratio.
        assert_grad(
            "dlogp",
            &logp,
            &out.dlogp,
            1e-3,
            (1e-4, 1e-3),
            usize::MAX,
            |x| policy_loss(x, &old, Some(&reference), &adv, &mask, &offsets, &cfg).loss as f64,
        );
    }
}

#[test]
fn clipped_tokens_get_no_policy_gradient() {
    let cfg = LossConfig::default(); // clip 0.2 / 0.28
    // ratio e^0.5 ≈ 1.65 > 1.28 with positive advantage: clipped.
    // ratio e^-0.5 ≈ 0.61 < 0.8 with negative advantage: clipped.
    // ratio e^0.5 with negative advantage: not clipped (pessimistic side).
    let logp = [0.0f32, 0.0, 0.0];
    let old = [-0.5f32, 0.5, -0.5];
    let adv = [1.0f32, -1.0, -1.0];
    let out = policy_loss(&logp, &old, None, &adv, &[1.0; 3], &[0, 3], &cfg);
    assert_eq!(out.clipped_tokens, 2);
    assert_eq!(out.dlogp[0], 0.0);
    assert_eq!(out.dlogp[1], 0.0);
    let ratio = 0.5f32.exp();
    assert!((out.dlogp[2] - ratio / 3.0).abs() < 1e-6, "{:?}", out.dlogp);
    assert!((out.clip_fraction - 2.0 / 3.0).abs() < 1e-6);
}

#[test]
fn masked_tokens_contribute_nothing() {
    let (logp, old, _, adv, mask) = loss_inputs(12, 3);
    let cfg = LossConfig::default();
    let a = policy_loss(&logp, &old, None, &adv, &mask, &[0, 12], &cfg);
    let mut logp2 = logp.clone();
    for (l, m) in logp2.iter_mut().zip(&mask) {
        if *m == 0.0 {
            *l = 123.0;
        }
    }
    let b = policy_loss(&logp2, &old, None, &adv, &mask, &[0, 12], &cfg);
    assert_eq!(a, b);
    assert_eq!(a.tokens, 9);
}

#[test]
fn on_policy_loss_is_minus_mean_advantage_and_kl_is_zero_at_reference() {
    let logp = [-1.0f32, -2.0, -0.5];
    let adv = [1.0f32, 2.0, -0.5];
    let cfg = LossConfig {
        kl_coef: 1.0,
        ..LossConfig::default()
    };
    let out = policy_loss(&logp, &logp, Some(&logp), &adv, &[1.0; 3], &[0, 3], &cfg);
    assert!((out.loss + 2.5 / 3.0).abs() < 1e-6, "{}", out.loss);
    assert_eq!(out.kl, 0.0);
    assert_eq!(out.ratio_mean, 1.0);
}

#[test]
fn per_sequence_weighted_losses_merge_into_the_batch_loss() {
    let (logp, old, reference, adv, mask) = loss_inputs(20, 11);
    let offsets = [0, 7, 20];
    let cfg = LossConfig {
        kl_coef: 0.1,
        aggregation: Aggregation::SequenceMean,
        ..Default::default()
    };
    let whole = policy_loss(&logp, &old, Some(&reference), &adv, &mask, &offsets, &cfg);
    let w = aggregation_weights(&mask, &offsets, cfg.aggregation);
    let parts = offsets.windows(2).map(|s| {
        let r = s[0]..s[1];
        weighted_policy_loss(
            &logp[r.clone()],
            &old[r.clone()],
            Some(&reference[r.clone()]),
            &adv[r.clone()],
            &mask[r.clone()],
            &w[r],
            &cfg,
        )
    });
    let merged = PolicyLossOutput::merge(parts);
    assert!((merged.loss - whole.loss).abs() < 1e-6);
    assert!((merged.kl - whole.kl).abs() < 1e-6);
    assert_eq!(merged.dlogp, whole.dlogp);
    assert_eq!(merged.clipped_tokens, whole.clipped_tokens);
}
