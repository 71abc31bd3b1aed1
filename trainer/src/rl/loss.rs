//! The PPO/DAPO clipped token-level policy loss, with loss masks and an optional k3 KL
//! penalty towards a reference policy.
//!
//! Per token `t` with mask `m_t > 0`, behaviour log-prob `old_t`, current `logp_t`,
//! advantage `A_t`, and `ρ_t = exp(logp_t - old_t)`:
//!
//! ```text
//! pg_t = -min(ρ_t A_t, clip(ρ_t, 1 - clip_low, 1 + clip_high) A_t)
//! k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          (0 without a reference)
//! l_t  = pg_t + kl_coef · k3_t
//! loss = Σ_t w_t l_t
//! ```
//!
//! The weights `w_t` come from the [`Aggregation`] ([`aggregation_weights`]) and depend
//! only on the masks and sequence boundaries, never on log-probs. That is what lets the
//! trainer compute the loss one sequence at a time ([`weighted_policy_loss`] on a slice
//! of precomputed weights) and keep only one sequence's activations in memory.
//!
//! `clip_high > clip_low` is DAPO's "clip-higher": low-probability tokens with positive
//! advantage may grow further before the gradient stops.

use serde::{Deserialize, Serialize};

/// How per-token losses are combined into one scalar.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// DAPO: `Σ m_t l_t / Σ m_t` over every token of the batch; long sequences weigh
    /// in proportion to their length.
    TokenMean,
    /// GRPO: the mean over sequences of each sequence's masked-token mean; sequences
    /// without a masked token are left out of the mean.
    SequenceMean,
    /// Dr. GRPO: `Σ m_t l_t / divisor` with a constant divisor (e.g. the number of
    /// sequences times the longest generation allowed), free of length bias.
    TokenSum { divisor: f32 },
}

/// Settings of the policy loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// The ratio may fall to `1 - clip_low` before the gradient of a negative-advantage
    /// token stops.
    pub clip_low: f32,
    /// The ratio may rise to `1 + clip_high` before the gradient of a positive-advantage
    /// token stops (DAPO clip-higher when larger than `clip_low`).
    pub clip_high: f32,
    /// Weight of the k3 KL penalty; 0 disables it (and the reference forward).
    pub kl_coef: f32,
    pub aggregation: Aggregation,
}

impl Default for LossConfig {
    /// DAPO's settings: clip 0.2 / 0.28, no KL, token-level mean.
    fn default() -> Self {
        LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.0,
            aggregation: Aggregation::TokenMean,
        }
    }
}

/// The loss, its gradient with respect to the current log-probs, and diagnostics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyLossOutput {
    /// `Σ w_t l_t`.
    pub loss: f32,
    /// The policy-gradient part of `loss` (without the KL term).
    pub pg_loss: f32,
    /// Mean k3 estimate of KL(current ‖ reference) over masked tokens (0 without a
    /// reference).
    pub kl: f32,
    /// Fraction of masked tokens whose gradient the clip removed.
    pub clip_fraction: f32,
    /// Mean importance ratio over masked tokens.
    pub ratio_mean: f32,
    /// Masked tokens (`m_t > 0`).
    pub tokens: usize,
    /// Masked tokens whose gradient the clip removed.
    pub clipped_tokens: usize,
    /// `d loss / d logp_t`, one per token (0 where the mask is 0).
    pub dlogp: Vec<f32>,
}

impl PolicyLossOutput {
    /// Combines the outputs of disjoint slices of one batch (computed with weights from
    /// one [`aggregation_weights`] call): losses add, means are re-weighted by token
    /// counts, `dlogp` is concatenated in order.
    pub fn merge(parts: impl IntoIterator<Item = PolicyLossOutput>) -> PolicyLossOutput {
        let mut out = PolicyLossOutput::default();
        let (mut kl, mut ratio) = (0.0f64, 0.0f64);
        for p in parts {
            out.loss += p.loss;
            out.pg_loss += p.pg_loss;
            kl += p.kl as f64 * p.tokens as f64;
            ratio += p.ratio_mean as f64 * p.tokens as f64;
            out.tokens += p.tokens;
            out.clipped_tokens += p.clipped_tokens;
            out.dlogp.extend_from_slice(&p.dlogp);
        }
        if out.tokens > 0 {
            let n = out.tokens as f64;
            out.kl = (kl / n) as f32;
            out.ratio_mean = (ratio / n) as f32;
            out.clip_fraction = out.clipped_tokens as f32 / out.tokens as f32;
        }
        out
    }
}

/// Per-token weights `w_t` of the aggregation (0 where the mask is 0), for tokens of
/// sequences `seq_offsets[s]..seq_offsets[s + 1]`.
///
/// # Panics
/// If the offsets do not start at 0, end at `mask.len()` and never decrease.
pub fn aggregation_weights(mask: &[f32], seq_offsets: &[usize], agg: Aggregation) -> Vec<f32> {
    assert!(
        seq_offsets.first() == Some(&0) && seq_offsets.last() == Some(&mask.len()),
        "seq_offsets must start at 0 and end at mask.len() = {}",
        mask.len()
    );
    assert!(
        seq_offsets.windows(2).all(|w| w[0] <= w[1]),
        "seq_offsets must be non-decreasing"
    );
    let mut w = vec![0.0f32; mask.len()];
    match agg {
        Aggregation::TokenMean => {
            let total: f64 = mask.iter().map(|&m| m as f64).sum();
            if total > 0.0 {
                for (w, &m) in w.iter_mut().zip(mask) {
                    *w = (m as f64 / total) as f32;
                }
            }
        }
        Aggregation::SequenceMean => {
            let sums: Vec<f64> = seq_offsets
                .windows(2)
                .map(|s| mask[s[0]..s[1]].iter().map(|&m| m as f64).sum())
                .collect();
            let live = sums.iter().filter(|&&s| s > 0.0).count() as f64;
            for (s, &sum) in seq_offsets.windows(2).zip(&sums) {
                if sum > 0.0 {
                    for t in s[0]..s[1] {
                        w[t] = (mask[t] as f64 / sum / live) as f32;
                    }
                }
            }
        }
        Aggregation::TokenSum { divisor } => {
            for (w, &m) in w.iter_mut().zip(mask) {
                *w = m / divisor;
            }
        }
    }
    w
}

/// The policy loss over a batch of concatenated sequences (see the module doc).
///
/// All per-token slices have the same length; `seq_offsets` marks sequence boundaries
/// (used by the aggregation). `advantages` is per token (a sequence's advantage
/// repeated over its tokens).
///
/// # Panics
/// On slices of different lengths or bad offsets.
pub fn policy_loss(
    logp: &[f32],
    old_logp: &[f32],
    ref_logp: Option<&[f32]>,
    advantages: &[f32],
    mask: &[f32],
    seq_offsets: &[usize],
    cfg: &LossConfig,
) -> PolicyLossOutput {
    let weights = aggregation_weights(mask, seq_offsets, cfg.aggregation);
    weighted_policy_loss(logp, old_logp, ref_logp, advantages, mask, &weights, cfg)
}

/// [`policy_loss`] with the aggregation weights given: usable on any slice of a batch
/// whose weights were computed over the whole batch. `cfg.aggregation` is not used.
///
/// # Panics
/// On slices of different lengths.
pub fn weighted_policy_loss(
    logp: &[f32],
    old_logp: &[f32],
    ref_logp: Option<&[f32]>,
    advantages: &[f32],
    mask: &[f32],
    weights: &[f32],
    cfg: &LossConfig,
) -> PolicyLossOutput {
    let n = logp.len();
    for (name, len) in [
        ("old_logp", old_logp.len()),
        ("advantages", advantages.len()),
        ("mask", mask.len()),
        ("weights", weights.len()),
        ("ref_logp", ref_logp.map_or(n, <[f32]>::len)),
    ] {
        assert_eq!(len, n, "{name} must have one value per token ({n})");
    }
    let (lo, hi) = (1.0 - cfg.clip_low, 1.0 + cfg.clip_high);
    let mut out = PolicyLossOutput {
        dlogp: vec![0.0; n],
        ..Default::default()
    };
    let (mut loss, mut pg, mut kl, mut ratio_sum) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for t in 0..n {
        if mask[t] <= 0.0 {
            continue;
        }
        out.tokens += 1;
        let w = weights[t] as f64;
        let a = advantages[t] as f64;
        let ratio = ((logp[t] - old_logp[t]) as f64).exp();
        ratio_sum += ratio;
        let unclipped = ratio * a;
        let clipped = ratio.clamp(lo as f64, hi as f64) * a;
        // min(unclipped, clipped): when the clipped term is strictly smaller the ratio
        // is outside the trust region in the direction the advantage pushes it, and
        // the gradient is zero. dρ/dlogp = ρ.
        let (pg_t, dpg) = if unclipped <= clipped {
            (-unclipped, -unclipped)
        } else {
            out.clipped_tokens += 1;
            (-clipped, 0.0)
        };
        let (k3, dk3) = match ref_logp {
            Some(r) => {
                let d = (r[t] - logp[t]) as f64;
                (d.exp() - d - 1.0, 1.0 - d.exp())
            }
            None => (0.0, 0.0),
        };
        let kc = cfg.kl_coef as f64;
        pg += w * pg_t;
        loss += w * (pg_t + kc * k3);
        kl += k3;
        out.dlogp[t] = (w * (dpg + kc * dk3)) as f32;
    }
    out.loss = loss as f32;
    out.pg_loss = pg as f32;
    if out.tokens > 0 {
        let nt = out.tokens as f64;
        out.kl = (kl / nt) as f32;
        out.ratio_mean = (ratio_sum / nt) as f32;
        out.clip_fraction = out.clipped_tokens as f32 / out.tokens as f32;
    }
    out
}
