//! Group-relative advantages from scalar rewards.
//!
//! A group is the set of rollouts that share a prompt: attempts on the same bug for the
//! solver, injection rollouts on the same repository for the injector. Groups are
//! ragged and given by offsets: group `g` is `rewards[offsets[g]..offsets[g + 1]]`.
//!
//! Formulas, for a group of `n` rewards with mean `μ`:
//! - [`AdvantageKind::Grpo`] (DeepSeekMath): `(r - μ) / (σ + eps)`, where `σ` is the
//!   sample standard deviation (divisor `n - 1`, as `torch.std` and TRL use).
//! - [`AdvantageKind::DrGrpo`] (Dr. GRPO, "Understanding R1-Zero-like training"):
//!   `r - μ`; no division by `σ`, which biases towards easy and hard groups.
//! - [`AdvantageKind::Rloo`] (REINFORCE leave-one-out): `r_i - mean_{j≠i} r_j`,
//!   which equals `n / (n - 1) · (r_i - μ)`.
//!
//! A group of one has no baseline: its advantage is 0 under every kind (it contributes
//! no gradient rather than a biased one). A group whose rewards are all equal gets 0.

use serde::{Deserialize, Serialize};

/// How rewards become advantages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageKind {
    Grpo,
    DrGrpo,
    Rloo,
}

impl std::str::FromStr for AdvantageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpo" => Ok(Self::Grpo),
            "dr-grpo" | "drgrpo" => Ok(Self::DrGrpo),
            "rloo" => Ok(Self::Rloo),
            other => Err(format!(
                "unknown advantage kind {other:?} (expected grpo, dr-grpo or rloo)"
            )),
        }
    }
}

/// One advantage per reward, computed within each group.
///
/// `group_offsets` starts at 0, is non-decreasing and ends at `rewards.len()`; empty
/// groups are allowed. Statistics are accumulated in f64.
///
/// # Panics
/// If the offsets do not cover `rewards` as described.
pub fn advantages(
    rewards: &[f32],
    group_offsets: &[usize],
    kind: AdvantageKind,
    eps: f32,
) -> Vec<f32> {
    assert!(
        group_offsets.first() == Some(&0) && group_offsets.last() == Some(&rewards.len()),
        "group_offsets must start at 0 and end at rewards.len() = {}",
        rewards.len()
    );
    assert!(
        group_offsets.windows(2).all(|w| w[0] <= w[1]),
        "group_offsets must be non-decreasing"
    );
    let mut out = vec![0.0f32; rewards.len()];
    for w in group_offsets.windows(2) {
        let group = &rewards[w[0]..w[1]];
        let n = group.len();
        if n < 2 {
            continue; // a single member has no baseline: advantage 0 (already there)
        }
        let nf = n as f64;
        let mean = group.iter().map(|&r| r as f64).sum::<f64>() / nf;
        let dst = &mut out[w[0]..w[1]];
        match kind {
            AdvantageKind::Grpo => {
                let var = group
                    .iter()
                    .map(|&r| (r as f64 - mean).powi(2))
                    .sum::<f64>()
                    / (nf - 1.0);
                if var == 0.0 {
                    continue; // all equal: 0, also when eps = 0 (no 0/0)
                }
                let denom = var.sqrt() + eps as f64;
                for (a, &r) in dst.iter_mut().zip(group) {
                    *a = ((r as f64 - mean) / denom) as f32;
                }
            }
            AdvantageKind::DrGrpo => {
                for (a, &r) in dst.iter_mut().zip(group) {
                    *a = (r as f64 - mean) as f32;
                }
            }
            AdvantageKind::Rloo => {
                let sum = mean * nf;
                for (a, &r) in dst.iter_mut().zip(group) {
                    let others = (sum - r as f64) / (nf - 1.0);
                    *a = (r as f64 - others) as f32;
                }
            }
        }
    }
    out
}
