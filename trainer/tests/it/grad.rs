//! Finite-difference checks of every backward function against its forward.
//!
//! The checker ([`assert_grad`]) perturbs one input element at a time by `±h` and
//! `±2h`, takes the fourth-order central difference
//! `(f(x-2h) - 8f(x-h) + 8f(x+h) - f(x+2h)) / 12h` of a scalar loss accumulated in f64,
//! and compares it with the analytic gradient:
//! `|analytic - numeric| <= atol + rtol · max(|analytic|, |numeric|)`.
//! Why fourth order: forwards run in f32, so the step cannot shrink far (rounding noise
//! grows as `1.5 · ε_f32 · |intermediates| / h`, ~1e-5 at `h = 1e-2`), and with the
//! plain two-point difference the `O(h²)` curvature term of a whole model reached 0.7%
//! at that step; the `O(h⁴)` term is negligible.

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
        let mut at = |d: f32| {
            xs[i] = orig + d;
            loss(&xs)
        };
        let (m2, m1, p1, p2) = (at(-2.0 * h), at(-h), at(h), at(2.0 * h));
        xs[i] = orig;
        let numeric = (m2 - 8.0 * m1 + 8.0 * p1 - p2) / (12.0 * h as f64);
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
    // Shown with --nocapture: how much of the tolerance the worst element used.
    eprintln!("{what}: worst error / bound = {worst:.3}");
}

use ssr_trainer::rl::{lm_head_logprobs, lm_head_loss};
use ssr_trainer::train::attention::{AttentionShape, attention, attention_backward};
use ssr_trainer::train::embedding::{embedding, embedding_backward};
use ssr_trainer::train::linear::{linear, linear_backward};
use ssr_trainer::train::norm::{rms_norm, rms_norm_backward};
use ssr_trainer::train::rope::{RopeTable, rope, rope_backward};
use ssr_trainer::train::swiglu::{swiglu, swiglu_backward};
use ssr_trainer::train::{next_token_logprobs, sequence_backward, sequence_backward_per_token};
use ssr_trainer::{Config, Weights};

/// Per-op tolerance: inputs of order 1, h = 1e-2, central differences of smooth f32
/// functions; the observed worst errors are ~1e-5, so (atol 1e-4, rtol 1e-3) leaves a
/// margin without hiding a wrong term (those show up as O(1) relative errors).
const OP_TOL: (f64, f64) = (1e-4, 1e-3);
const H: f32 = 1e-2;

#[test]
fn embedding_backward_matches_finite_differences() {
    let mut r = rng(10);
    let (vocab, dim) = (6, 3);
    let table = random_vec(&mut r, vocab * dim, 1.0);
    let tokens = [2u32, 5, 2, 0]; // a repeated token sums two gradients
    let up = random_vec(&mut r, tokens.len() * dim, 1.0);
    let mut dtable = vec![0.0; table.len()];
    embedding_backward(&mut dtable, dim, &tokens, &up);
    assert_grad("dtable", &table, &dtable, H, OP_TOL, usize::MAX, |t| {
        project(&embedding(t, dim, &tokens), &up)
    });
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let mut r = rng(11);
    let (rows, dim) = (4, 7);
    let x = random_vec(&mut r, rows * dim, 2.0);
    let g = random_vec(&mut r, dim, 1.5);
    let up = random_vec(&mut r, rows * dim, 1.0);
    let (_, rstd) = rms_norm(&x, &g, 1e-5);
    let mut dg = vec![0.0; dim];
    let dx = rms_norm_backward(&up, &x, &g, &rstd, &mut dg);
    assert_grad("dx", &x, &dx, H, OP_TOL, usize::MAX, |x| {
        project(&rms_norm(x, &g, 1e-5).0, &up)
    });
    assert_grad("dgain", &g, &dg, H, OP_TOL, usize::MAX, |g| {
        project(&rms_norm(&x, g, 1e-5).0, &up)
    });
}

#[test]
fn rope_backward_matches_finite_differences() {
    let mut r = rng(12);
    let (t, heads, hd) = (5, 3, 4);
    let table = RopeTable::new(t, hd, 10000.0);
    let x = random_vec(&mut r, t * heads * hd, 1.0);
    let up = random_vec(&mut r, x.len(), 1.0);
    let mut dx = up.clone();
    rope_backward(&mut dx, heads, &table);
    assert_grad("dx", &x, &dx, H, OP_TOL, usize::MAX, |x| {
        let mut y = x.to_vec();
        rope(&mut y, heads, &table);
        project(&y, &up)
    });
}

#[test]
fn rope_rotates_interleaved_pairs() {
    // Position 1, pair 0 rotates by exactly 1 radian; pair 1 by theta^(-1/2).
    let table = RopeTable::new(2, 4, 100.0);
    let mut x = vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    rope(&mut x, 1, &table);
    assert_eq!(&x[..4], &[0.0; 4], "position 0 is not rotated");
    let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
    assert!(close(x[4], 1f64.cos()) && close(x[5], 1f64.sin()), "{x:?}");
    assert!(
        close(x[6], 0.1f64.cos()) && close(x[7], 0.1f64.sin()),
        "{x:?}"
    );
}

#[test]
fn attention_backward_matches_finite_differences() {
    let mut r = rng(13);
    let shape = AttentionShape {
        seq: 6,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 4,
    };
    let q = random_vec(&mut r, 6 * 16, 1.5);
    let k = random_vec(&mut r, 6 * 8, 1.5);
    let v = random_vec(&mut r, 6 * 8, 1.0);
    let up = random_vec(&mut r, q.len(), 1.0);
    let (_, lse) = attention(&q, &k, &v, shape);
    let (dq, dk, dv) = attention_backward(&up, &q, &k, &v, &lse, shape);
    assert_grad("dq", &q, &dq, H, OP_TOL, usize::MAX, |q| {
        project(&attention(q, &k, &v, shape).0, &up)
    });
    assert_grad("dk", &k, &dk, H, OP_TOL, usize::MAX, |k| {
        project(&attention(&q, k, &v, shape).0, &up)
    });
    assert_grad("dv", &v, &dv, H, OP_TOL, usize::MAX, |v| {
        project(&attention(&q, &k, v, shape).0, &up)
    });
}

#[test]
fn attention_is_causal() {
    let mut r = rng(14);
    let shape = AttentionShape {
        seq: 5,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 4,
    };
    let q = random_vec(&mut r, 5 * 8, 1.0);
    let mut k = random_vec(&mut r, 5 * 4, 1.0);
    let v = random_vec(&mut r, 5 * 4, 1.0);
    let (before, _) = attention(&q, &k, &v, shape);
    k[4 * 4..].iter_mut().for_each(|x| *x += 3.0); // change only the last key
    let (after, _) = attention(&q, &k, &v, shape);
    assert_eq!(
        before[..4 * 8],
        after[..4 * 8],
        "earlier rows must not see a later key"
    );
    assert_ne!(before[4 * 8..], after[4 * 8..]);
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let mut r = rng(15);
    let gate = random_vec(&mut r, 12, 3.0);
    let up_in = random_vec(&mut r, 12, 2.0);
    let up = random_vec(&mut r, 12, 1.0);
    let (dg, du) = swiglu_backward(&up, &gate, &up_in);
    assert_grad("dgate", &gate, &dg, H, OP_TOL, usize::MAX, |g| {
        project(&swiglu(g, &up_in), &up)
    });
    assert_grad("dup", &up_in, &du, H, OP_TOL, usize::MAX, |u| {
        project(&swiglu(&gate, u), &up)
    });
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut r = rng(16);
    let (rows, inp, out) = (3, 5, 4);
    let x = random_vec(&mut r, rows * inp, 1.0);
    let w = random_vec(&mut r, out * inp, 1.0);
    let up = random_vec(&mut r, rows * out, 1.0);
    let mut dw = vec![0.0; w.len()];
    let dx = linear_backward(&up, &x, &w, &mut dw, rows, out);
    assert_grad("dx", &x, &dx, H, OP_TOL, usize::MAX, |x| {
        project(&linear(x, &w, rows, out), &up)
    });
    assert_grad("dw", &w, &dw, H, OP_TOL, usize::MAX, |w| {
        project(&linear(&x, w, rows, out), &up)
    });
}

#[test]
fn lm_head_loss_matches_finite_differences_across_chunks() {
    let mut r = rng(17);
    // 130 rows: two chunks of LM_HEAD_CHUNK_TOKENS = 128 rows, the second partial.
    let (t, dim, vocab) = (130, 3, 7);
    let hidden = random_vec(&mut r, t * dim, 1.0);
    let weight = random_vec(&mut r, vocab * dim, 1.0);
    let targets: Vec<u32> = (0..t as u32).map(|i| (i * 5 + 1) % vocab as u32).collect();
    let dlp = random_vec(&mut r, t, 1.0);
    let dent = random_vec(&mut r, t, 1.0);
    let temperature = 0.8;
    let out = lm_head_loss(
        &hidden,
        &weight,
        dim,
        &targets,
        temperature,
        &dlp,
        Some(&dent),
    );
    let (lp, ent) = lm_head_logprobs(&hidden, &weight, dim, &targets, temperature);
    assert_eq!((lp, ent), (out.logprob.clone(), out.entropy.clone()));
    let loss = |h: &[f32], w: &[f32]| {
        let (lp, ent) = lm_head_logprobs(h, w, dim, &targets, temperature);
        project(&lp, &dlp) + project(&ent, &dent)
    };
    assert_grad("dhidden", &hidden, &out.dhidden, H, OP_TOL, 60, |h| {
        loss(h, &weight)
    });
    // The weight gradient sums 130 rows: larger values, same relative tolerance.
    assert_grad(
        "dweight",
        &weight,
        &out.dweight,
        H,
        (1e-3, 1e-3),
        usize::MAX,
        |w| loss(&hidden, w),
    );
}

fn random_weights(config: &Config, seed: u64) -> Weights {
    let mut r = rng(seed);
    let mut w = Weights::zeros(config);
    w.for_each_mut(|name, t| {
        let v = if name.contains("norm") {
            // gains near 1, as in trained models
            random_vec(&mut r, t.len(), 0.2)
                .iter()
                .map(|x| 1.0 + x)
                .collect()
        } else {
            random_vec(&mut r, t.len(), 0.5)
        };
        t.copy_from_slice(&v);
    });
    w
}

/// The whole model: forward, fused LM head with a random upstream gradient per
/// position, backward; every parameter of the tiny model is checked.
///
/// Tolerance: the loss passes through 2 layers of f32 arithmetic; with h = 1e-2 the
/// numeric derivative carries ~1e-5 absolute error and O(h²) curvature error; observed
/// worst ratio to the bound below is well under 1.
#[test]
fn whole_model_gradient_matches_finite_differences() {
    for tied in [true, false] {
        let config = Config {
            tied_embeddings: tied,
            ..Config::tiny()
        };
        let w = random_weights(&config, 20 + tied as u64);
        let tokens = [1u32, 5, 9, 33, 5, 60, 2, 17];
        let positions = [1usize, 2, 4, 5, 7];
        let mut r = rng(30);
        let dlp = random_vec(&mut r, positions.len(), 1.0);
        let temperature = 0.9;
        let mut grads = Weights::zeros(&config);
        sequence_backward(
            &w,
            &tokens,
            &positions,
            temperature,
            |lp| {
                assert_eq!(lp.len(), positions.len());
                dlp.clone()
            },
            &mut grads,
        );
        // The one-pass variant computes the same gradient.
        let mut one_pass = Weights::zeros(&config);
        sequence_backward_per_token(
            &w,
            &tokens,
            &positions,
            temperature,
            |rows, lp| {
                assert_eq!(lp.len(), rows.len());
                dlp[rows].to_vec()
            },
            &mut one_pass,
        );
        assert_eq!(one_pass, grads, "one-pass and two-pass LM head differ");
        let loss = |w: &Weights| {
            project(
                &next_token_logprobs(w, &tokens, &positions, temperature).0,
                &dlp,
            )
        };
        let names: Vec<String> = w.tensors().into_iter().map(|(n, _)| n).collect();
        let analytic: Vec<Vec<f32>> = grads
            .tensors()
            .into_iter()
            .map(|(_, g)| g.to_vec())
            .collect();
        for (i, name) in names.iter().enumerate() {
            let x = w.tensors()[i].1.to_vec();
            assert_grad(name, &x, &analytic[i], H, (2e-4, 2e-3), 64, |x| {
                let mut w2 = w.clone();
                w2.tensors_mut()[i].1.copy_from_slice(x);
                loss(&w2)
            });
        }
    }
}
