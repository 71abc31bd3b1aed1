//! Advantages over ragged groups and the clipped policy loss against `crate::rl`.

use ssr_trainer::gpu::GpuError;
use ssr_trainer::gpu::rl::{AdvantageCode, ClipSettings, PolicyLossInputs};
use ssr_trainer::rl::{self, AdvantageKind, Aggregation, LossConfig};
use ssr_trainer::testing::{Tolerance, assert_close};

use super::gpu_or_skip;
use crate::grad::{random_vec, rng};

#[test]
fn advantages_match_cpu_twin_on_ragged_groups() {
    let Some(gpu) = gpu_or_skip("advantages_match_cpu_twin_on_ragged_groups") else {
        return;
    };
    let mut r = rng(104);
    // Ragged: an empty group, a group of one, equal rewards, and ordinary groups.
    let offsets = [0usize, 0, 1, 5, 9, 17, 17, 30];
    let mut rewards = random_vec(&mut r, 30, 1.0);
    rewards[5..9].fill(0.5);
    let r_dev = gpu.upload(&rewards).unwrap();
    for (kind, code) in [
        (AdvantageKind::Grpo, AdvantageCode::Grpo),
        (AdvantageKind::DrGrpo, AdvantageCode::DrGrpo),
        (AdvantageKind::Rloo, AdvantageCode::Rloo),
    ] {
        let want = rl::advantages(&rewards, &offsets, kind, 1e-6);
        let mut out = gpu.upload(&[f32::NAN; 30]).unwrap();
        gpu.advantages(&r_dev, &offsets, code, 1e-6, &mut out)
            .unwrap();
        // Both sides compute in f64 and round once to f32: at most 1 ulp apart.
        assert_close(
            &format!("advantages {kind:?}"),
            &gpu.download(&out).unwrap(),
            &want,
            Tolerance::new(1e-7, 1e-6),
        );
    }
    let mut out = gpu.zeros::<f32>(30).unwrap();
    let e = gpu
        .advantages(&r_dev, &[0, 5, 3, 30], AdvantageCode::Grpo, 1e-6, &mut out)
        .unwrap_err();
    assert!(matches!(e, GpuError::Invalid { .. }), "{e}");
}

#[test]
fn policy_loss_matches_cpu_twin_ppo_dapo_kl() {
    let Some(gpu) = gpu_or_skip("policy_loss_matches_cpu_twin_ppo_dapo_kl") else {
        return;
    };
    let mut r = rng(105);
    let n = 3000;
    let seq_offsets = [0usize, 700, 1500, 1501, 3000];
    let logp = random_vec(&mut r, n, 1.0)
        .iter()
        .map(|x| x - 2.0)
        .collect::<Vec<_>>();
    // Ratios spread over [e^-0.4, e^0.4] so both clip sides are hit.
    let old: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.4))
        .map(|(l, d)| l + d)
        .collect();
    let refl: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.3))
        .map(|(l, d)| l + d)
        .collect();
    let adv = random_vec(&mut r, n, 1.5);
    let mask: Vec<f32> = random_vec(&mut r, n, 1.0)
        .iter()
        .map(|&x| if x > -0.5 { 1.0 } else { 0.0 })
        .collect();
    let dev = |x: &[f32]| gpu.upload(x).unwrap();
    let (lp_d, old_d, ref_d, adv_d, mask_d) =
        (dev(&logp), dev(&old), dev(&refl), dev(&adv), dev(&mask));
    for (clip_low, clip_high, kl_coef, agg) in [
        (0.2f32, 0.2f32, 0.0f32, Aggregation::TokenMean), // PPO
        (0.2, 0.28, 0.0, Aggregation::TokenMean),         // DAPO clip-higher
        (0.2, 0.28, 0.05, Aggregation::SequenceMean),     // with k3 KL
        (0.2, 0.28, 0.05, Aggregation::TokenSum { divisor: 4096.0 }),
    ] {
        let cfg = LossConfig {
            clip_low,
            clip_high,
            kl_coef,
            aggregation: agg,
        };
        let refp = (kl_coef > 0.0).then_some(refl.as_slice());
        let want = rl::policy_loss(&logp, &old, refp, &adv, &mask, &seq_offsets, &cfg);
        let weights = rl::aggregation_weights(&mask, &seq_offsets, agg);
        let w_d = dev(&weights);
        let inp = PolicyLossInputs {
            logp: &lp_d,
            old_logp: &old_d,
            ref_logp: (kl_coef > 0.0).then_some(&ref_d),
            advantages: &adv_d,
            mask: &mask_d,
            weights: &w_d,
        };
        let mut dlogp = gpu.upload(&vec![f32::NAN; n]).unwrap();
        let got = gpu
            .weighted_policy_loss(
                &inp,
                &ClipSettings {
                    clip_low,
                    clip_high,
                    kl_coef,
                },
                &mut dlogp,
            )
            .unwrap();
        // f32 ratio via fast-math __expf (≈2 ulp) against the twin's f64: 1e-5 relative
        // per token, plus 1e-9 absolute for weights ~1/tokens.
        assert_close(
            "dlogp",
            &gpu.download(&dlogp).unwrap(),
            &want.dlogp,
            Tolerance::new(1e-9, 1e-5),
        );
        // Sums of 3000 terms (f64 accumulation on both sides) of f32 per-token values.
        let tol = Tolerance::new(1e-6, 1e-5);
        assert_close(
            "loss",
            &[got.loss, got.pg_loss, got.kl, got.ratio_mean],
            &[want.loss, want.pg_loss, want.kl, want.ratio_mean],
            tol,
        );
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(
            got.clipped_tokens, want.clipped_tokens,
            "a ratio on the clip boundary would differ; none is drawn here"
        );
        assert!(got.clipped_tokens > 0, "inputs must exercise the clip");
    }
}
