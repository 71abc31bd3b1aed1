//! RMSNorm: `y = x · rstd · g` with `rstd = 1 / sqrt(mean(x²) + eps)` per row, and its
//! backward.
//!
//! Backward, per row with `x̂ = x · rstd` and `dx̂ = dy ∘ g`:
//! `dx = rstd · (dx̂ - x̂ · mean(dx̂ ∘ x̂))`, `dg += Σ_rows dy ∘ x̂`.
//! Row sums are accumulated in f64.

use rayon::prelude::*;

/// Normalises each row of `x` (`[rows, dim]`); returns `(y, rstd)` where `rstd` has
/// one value per row (saved for the backward).
pub fn rms_norm(x: &[f32], gain: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let dim = gain.len();
    assert_eq!(x.len() % dim, 0, "x must be [rows, dim]");
    let mut y = vec![0.0f32; x.len()];
    let rstd: Vec<f32> = y
        .par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .map(|(y, x)| {
            let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
            let r = (1.0 / (ms + eps as f64).sqrt()) as f32;
            for ((y, &x), &g) in y.iter_mut().zip(x).zip(gain) {
                *y = x * r * g;
            }
            r
        })
        .collect();
    (y, rstd)
}

/// Backward of [`rms_norm`]: returns `dx` and adds the gain gradient into `dgain`.
pub fn rms_norm_backward(
    dy: &[f32],
    x: &[f32],
    gain: &[f32],
    rstd: &[f32],
    dgain: &mut [f32],
) -> Vec<f32> {
    let dim = gain.len();
    assert_eq!(dy.len(), x.len(), "dy and x must have the same shape");
    assert_eq!(rstd.len() * dim, x.len(), "rstd: one value per row");
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(dim)
        .zip(dy.par_chunks(dim).zip(x.par_chunks(dim)))
        .zip(rstd.par_iter())
        .for_each(|((dx, (dy, x)), &r)| {
            let dot: f64 = dy
                .iter()
                .zip(x)
                .zip(gain)
                .map(|((&dy, &x), &g)| (dy * g) as f64 * (x * r) as f64)
                .sum();
            let mean = (dot / dim as f64) as f32;
            for (((dx, &dy), &x), &g) in dx.iter_mut().zip(dy).zip(x).zip(gain) {
                let xhat = x * r;
                *dx = r * (dy * g - xhat * mean);
            }
        });
    // The gain gradient sums over rows: sequential, so the sum order is fixed.
    let mut acc = vec![0.0f64; dim];
    for ((dy, x), &r) in dy.chunks_exact(dim).zip(x.chunks_exact(dim)).zip(rstd) {
        for ((a, &dy), &x) in acc.iter_mut().zip(dy).zip(x) {
            *a += (dy * x * r) as f64;
        }
    }
    for (d, a) in dgain.iter_mut().zip(acc) {
        *d += a as f32;
    }
    dx
}
