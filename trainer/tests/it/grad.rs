//! Finite-difference checks of every backward function against its forward.
//!
//! The checker ([`assert_grad`]) perturbs one input element at a time by `±h`, takes the
//! central difference of a scalar loss accumulated in f64, and compares it with the
//! analytic gradient: `|analytic - numeric| <= atol + rtol · max(|analytic|, |numeric|)`.
//! Forwards run in f32, so the numeric side carries an error of about
//! `ε_f32 · |loss| / h`; with `h = 1e-2` and losses of order 1 that is ~1e-5, well
//! under the tolerances used (documented at each call).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn random_vec(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// `Σ r_i x_i` in f64: a scalar loss whose gradient wrt `x` is `r`.
pub fn project(x: &[f32], r: &[f32]) -> f64 {
    x.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Checks `analytic[i]` against the central difference of `loss` for up to `samples`
/// indices (all when there are fewer). `loss(x)` evaluates the scalar loss at `x`.
#[track_caller]
pub fn assert_grad(
    what: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    tol: (f64, f64),
    samples: usize,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient shape");
    let mut xs = x.to_vec();
    let n = x.len();
    let step = n.div_ceil(samples.max(1)).max(1);
    let (atol, rtol) = tol;
    let mut worst = 0.0f64;
    for i in (0..n).step_by(step) {
        let orig = xs[i];
        xs[i] = orig + h;
        let up = loss(&xs);
        xs[i] = orig - h;
        let down = loss(&xs);
        xs[i] = orig;
        let numeric = (up - down) / (2.0 * (h as f64));
        let a = analytic[i] as f64;
        let err = (a - numeric).abs();
        let bound = atol + rtol * a.abs().max(numeric.abs());
        worst = worst.max(err / bound);
        assert!(
            err <= bound,
            "{what}[{i}]: analytic {a:.6e} vs numeric {numeric:.6e} (err {err:.2e} > {bound:.2e})"
        );
    }
    assert!(worst.is_finite(), "{what}: non-finite comparison");
}
