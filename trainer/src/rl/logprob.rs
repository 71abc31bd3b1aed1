//! Log-probability of the target token and entropy of the sampling distribution, from
//! logits, at a sampling temperature; and the gradient of both back to the logits.
//!
//! With `z = logits / T`, `p = softmax(z)`:
//! - `logprob = z[target] - logsumexp(z)`
//! - `entropy = -Σ p log p = logsumexp(z) - Σ p z`
//!
//! Gradients (per row, before the `1/T` of the chain rule):
//! - `d logprob / d z_j = δ(j, target) - p_j`
//! - `d entropy / d z_j = -p_j (log p_j + entropy)`
//!
//! Exponentials are f32 (their relative error is ~1e-7 each, and they are the cost:
//! 25 M per 512-token SmolLM2 step); sums over the vocabulary are accumulated in f64,
//! because a 49k-entry f32 sum loses digits that the finite-difference checks (and the
//! GPU comparison) would see.

use rayon::prelude::*;

/// Per-row statistics of `z = logits / T` used by forward and backward.
pub(crate) struct RowStats {
    /// `logsumexp(z)`
    pub(crate) lse: f64,
    /// `Σ p z`
    pub(crate) mean_z: f64,
}

pub(crate) fn row_stats(row: &[f32], inv_t: f32) -> RowStats {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * inv_t));
    let mut sum = 0.0f64;
    let mut sum_ez = 0.0f64;
    for &x in row {
        let z = x * inv_t;
        let e = (z - max).exp();
        sum += e as f64;
        sum_ez += (e * z) as f64;
    }
    RowStats {
        lse: max as f64 + sum.ln(),
        mean_z: sum_ez / sum,
    }
}

/// Log-probability of each row's target and the entropy of each row's distribution.
///
/// `logits` is `[rows, vocab]` row-major with `rows = targets.len()`; `temperature`
/// divides the logits first (the sampler's temperature, so that logprobs match the
/// behaviour policy's). Returns `(logprob, entropy)`, one value per row.
///
/// # Panics
/// If `logits.len() != targets.len() * vocab`, a target is `>= vocab`, or the
/// temperature is not positive.
pub fn logprobs_from_logits(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    temperature: f32,
) -> (Vec<f32>, Vec<f32>) {
    check_shapes(logits, targets, vocab, temperature);
    let inv_t = 1.0 / temperature;
    // Rows are independent: parallel over rows is deterministic.
    logits
        .par_chunks_exact(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let s = row_stats(row, inv_t);
            let logprob = ((row[t as usize] * inv_t) as f64 - s.lse) as f32;
            (logprob, (s.lse - s.mean_z) as f32)
        })
        .unzip()
}

/// Gradient of `Σ dlogprob·logprob + Σ dentropy·entropy` with respect to the logits.
///
/// Same shapes as [`logprobs_from_logits`]; `dlogprob` has one value per row, and so
/// does `dentropy` when given. Returns `dlogits`, `[rows, vocab]`.
///
/// # Panics
/// As [`logprobs_from_logits`], or if the upstream gradients have the wrong length.
pub fn logprobs_from_logits_backward(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    temperature: f32,
    dlogprob: &[f32],
    dentropy: Option<&[f32]>,
) -> Vec<f32> {
    let mut dlogits = vec![0.0; logits.len()];
    logprobs_backward_into(
        logits,
        targets,
        vocab,
        temperature,
        dlogprob,
        dentropy,
        &mut dlogits,
    );
    dlogits
}

/// [`logprobs_from_logits_backward`] writing into a caller's buffer (the chunked LM
/// head reuses one buffer across chunks). `dlogits` may alias nothing; it is
/// overwritten, not accumulated.
pub(crate) fn logprobs_backward_into(
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
    temperature: f32,
    dlogprob: &[f32],
    dentropy: Option<&[f32]>,
    dlogits: &mut [f32],
) {
    check_shapes(logits, targets, vocab, temperature);
    assert_eq!(dlogprob.len(), targets.len(), "dlogprob: one value per row");
    if let Some(de) = dentropy {
        assert_eq!(de.len(), targets.len(), "dentropy: one value per row");
    }
    assert_eq!(dlogits.len(), logits.len(), "dlogits: same shape as logits");
    let inv_t = 1.0 / temperature;
    logits
        .par_chunks_exact(vocab)
        .zip(dlogits.par_chunks_exact_mut(vocab))
        .enumerate()
        .for_each(|(r, (row, drow))| {
            let dh = dentropy.map_or(0.0, |d| d[r]);
            row_backward(row, targets[r], inv_t, dlogprob[r], dh, drow);
        });
}

/// One row's forward and backward: writes `dlogits` for the row and returns
/// `(logprob, entropy)`.
fn row_backward(
    row: &[f32],
    target: u32,
    inv_t: f32,
    dlogprob: f32,
    dentropy: f32,
    drow: &mut [f32],
) -> (f32, f32) {
    row_grad(
        row,
        target,
        inv_t,
        &row_stats(row, inv_t),
        dlogprob,
        dentropy,
        drow,
    )
}

/// [`row_backward`] with the row's statistics already computed.
pub(crate) fn row_grad(
    row: &[f32],
    target: u32,
    inv_t: f32,
    s: &RowStats,
    dlogprob: f32,
    dentropy: f32,
    drow: &mut [f32],
) -> (f32, f32) {
    let entropy = s.lse - s.mean_z;
    let (lse, h) = (s.lse as f32, entropy as f32);
    let (dl, dh) = (dlogprob * inv_t, dentropy * inv_t);
    for (d, &x) in drow.iter_mut().zip(row) {
        let logp = x * inv_t - lse;
        let p = logp.exp();
        // dlogprob part (without the δ term) and the entropy part, with 1/T folded in.
        *d = -dl * p - dh * p * (logp + h);
    }
    let t = target as usize;
    drow[t] += dl;
    (((row[t] * inv_t) as f64 - s.lse) as f32, h)
}

fn check_shapes(logits: &[f32], targets: &[u32], vocab: usize, temperature: f32) {
    assert!(vocab > 0, "vocab must be positive");
    assert_eq!(
        logits.len(),
        targets.len() * vocab,
        "logits must be [targets.len(), vocab]"
    );
    assert!(
        temperature > 0.0 && temperature.is_finite(),
        "temperature must be positive, got {temperature}"
    );
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        panic!("target {t} out of range for vocab {vocab}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_log_vocab() {
        let (lp, h) = logprobs_from_logits(&[0.5; 8], &[3, 0], 4, 1.0);
        for v in lp {
            assert!((v + 4f32.ln()).abs() < 1e-6);
        }
        for v in h {
            assert!((v - 4f32.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn temperature_sharpens() {
        let logits = [0.0, 1.0, 2.0];
        let (hot, _) = logprobs_from_logits(&logits, &[2], 3, 2.0);
        let (cold, _) = logprobs_from_logits(&logits, &[2], 3, 0.5);
        assert!(cold[0] > hot[0]);
    }
}
