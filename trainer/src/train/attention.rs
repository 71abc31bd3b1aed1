//! Causal self-attention with grouped-query heads over a whole sequence, and its
//! backward.
//!
//! Layout: `q` is `[T, n_heads · head_dim]`, `k` and `v` are `[T, n_kv_heads ·
//! head_dim]`; query head `h` reads key-value head `h / (n_heads / n_kv_heads)`
//! (consecutive query heads share a KV head, as in llama.cpp and HF).
//!
//! The forward saves only the log-sum-exp of each score row (`[n_heads, T]`); the
//! backward recomputes the probabilities from `q`, `k` and it (as FlashAttention
//! does), so memory kept between forward and backward is O(T) per head instead of
//! O(T²): 9 heads × 8192² × 4 B would be 2.4 GB per layer for a long agent episode.
//!
//! Backward, per head with `P = softmax(scale · Q Kᵀ)` (causal), `O = P V`:
//! `dV += Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP - rowsum(P ∘ dP))`,
//! `dQ = scale · dS K`, `dK += scale · dSᵀ Q`.
//!
//! Work is split over heads (forward) and KV heads (backward, so the `dK`/`dV` sums
//! of a group run in a fixed order and results do not depend on thread timing).

use crate::cpu::matmul::{matmul_nn, matmul_nt, matmul_tn};
use rayon::prelude::*;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub seq: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
    fn check(&self, q: &[f32], k: &[f32], v: &[f32]) {
        assert!(
            self.n_kv_heads > 0 && self.n_heads.is_multiple_of(self.n_kv_heads),
            "n_heads must be a multiple of n_kv_heads"
        );
        assert_eq!(q.len(), self.seq * self.n_heads * self.head_dim, "q shape");
        assert_eq!(
            k.len(),
            self.seq * self.n_kv_heads * self.head_dim,
            "k shape"
        );
        assert_eq!(v.len(), k.len(), "v shape");
    }
}

/// Copies head `h` of `x` (`[T, heads · hd]`) into a contiguous `[T, hd]` matrix.
fn gather_head(x: &[f32], heads: usize, hd: usize, h: usize) -> Vec<f32> {
    x.chunks_exact(heads * hd)
        .flat_map(|row| &row[h * hd..(h + 1) * hd])
        .copied()
        .collect()
}

/// Adds a contiguous `[T, hd]` head into column block `h` of `x` (`[T, heads · hd]`).
fn scatter_head(x: &mut [f32], heads: usize, hd: usize, h: usize, src: &[f32]) {
    for (row, s) in x.chunks_exact_mut(heads * hd).zip(src.chunks_exact(hd)) {
        for (a, &b) in row[h * hd..(h + 1) * hd].iter_mut().zip(s) {
            *a += b;
        }
    }
}

/// Causal probabilities `P` (`[T, T]`, zero above the diagonal) from scores
/// `S = Q Kᵀ` and each row's log-sum-exp of `scale · S`.
fn probs_from_lse(s: &mut [f32], lse: &[f32], seq: usize, scale: f32) {
    for (i, row) in s.chunks_exact_mut(seq).enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = if j <= i {
                (*x * scale - lse[i]).exp()
            } else {
                0.0
            };
        }
    }
}

/// Causal attention: returns the output `[T, n_heads · head_dim]` and the saved
/// log-sum-exp `[n_heads, T]`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], shape: AttentionShape) -> (Vec<f32>, Vec<f32>) {
    shape.check(q, k, v);
    let AttentionShape {
        seq,
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    let scale = shape.scale();
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..n_heads)
        .into_par_iter()
        .map(|h| {
            let g = h / shape.group();
            let qh = gather_head(q, n_heads, hd, h);
            let kh = gather_head(k, n_kv_heads, hd, g);
            let vh = gather_head(v, n_kv_heads, hd, g);
            let mut s = vec![0.0f32; seq * seq];
            matmul_nt(&mut s, &qh, &kh, seq, hd, seq, false);
            let mut lse = vec![0.0f32; seq];
            for (i, row) in s.chunks_exact_mut(seq).enumerate() {
                let live = &mut row[..=i];
                let max = live
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
                let mut sum = 0.0f64;
                for x in live.iter_mut() {
                    *x = (*x * scale - max).exp();
                    sum += *x as f64;
                }
                let inv = (1.0 / sum) as f32;
                live.iter_mut().for_each(|x| *x *= inv);
                row[i + 1..].fill(0.0);
                lse[i] = max + sum.ln() as f32;
            }
            let mut oh = vec![0.0f32; seq * hd];
            matmul_nn(&mut oh, &s, &vh, seq, seq, hd, false);
            (oh, lse)
        })
        .collect();
    let mut out = vec![0.0f32; q.len()];
    let mut lse = Vec::with_capacity(n_heads * seq);
    for (h, (oh, l)) in per_head.into_iter().enumerate() {
        scatter_head(&mut out, n_heads, hd, h, &oh);
        lse.extend(l);
    }
    (out, lse)
}

/// Backward of [`attention`]: returns `(dq, dk, dv)` for the upstream gradient `dout`.
pub fn attention_backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lse: &[f32],
    shape: AttentionShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    shape.check(q, k, v);
    assert_eq!(dout.len(), q.len(), "dout shape");
    let AttentionShape {
        seq,
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    assert_eq!(lse.len(), n_heads * seq, "lse shape");
    let scale = shape.scale();
    let group = shape.group();
    type GroupGrads = (Vec<(usize, Vec<f32>)>, Vec<f32>, Vec<f32>);
    let per_group: Vec<GroupGrads> = (0..n_kv_heads)
        .into_par_iter()
        .map(|g| {
            let kh = gather_head(k, n_kv_heads, hd, g);
            let vh = gather_head(v, n_kv_heads, hd, g);
            let mut dk = vec![0.0f32; seq * hd];
            let mut dv = vec![0.0f32; seq * hd];
            let mut dqs = Vec::with_capacity(group);
            let mut p = vec![0.0f32; seq * seq];
            let mut dp = vec![0.0f32; seq * seq];
            for h in g * group..(g + 1) * group {
                let qh = gather_head(q, n_heads, hd, h);
                let doh = gather_head(dout, n_heads, hd, h);
                matmul_nt(&mut p, &qh, &kh, seq, hd, seq, false);
                probs_from_lse(&mut p, &lse[h * seq..(h + 1) * seq], seq, scale);
                matmul_tn(&mut dv, &p, &doh, seq, seq, hd, true);
                matmul_nt(&mut dp, &doh, &vh, seq, hd, seq, false);
                // dS = P ∘ (dP - rowsum(P ∘ dP)), with the scale folded in.
                for (prow, dprow) in p.chunks_exact(seq).zip(dp.chunks_exact_mut(seq)) {
                    let d: f64 = prow
                        .iter()
                        .zip(dprow.iter())
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    let d = d as f32;
                    for (x, &pv) in dprow.iter_mut().zip(prow) {
                        *x = pv * (*x - d) * scale;
                    }
                }
                let mut dqh = vec![0.0f32; seq * hd];
                matmul_nn(&mut dqh, &dp, &kh, seq, seq, hd, false);
                matmul_tn(&mut dk, &dp, &qh, seq, seq, hd, true);
                dqs.push((h, dqh));
            }
            (dqs, dk, dv)
        })
        .collect();
    let mut dq = vec![0.0f32; q.len()];
    let mut dk = vec![0.0f32; k.len()];
    let mut dv = vec![0.0f32; v.len()];
    for (g, (dqs, dkg, dvg)) in per_group.into_iter().enumerate() {
        for (h, dqh) in dqs {
            scatter_head(&mut dq, n_heads, hd, h, &dqh);
        }
        scatter_head(&mut dk, n_kv_heads, hd, g, &dkg);
        scatter_head(&mut dv, n_kv_heads, hd, g, &dvg);
    }
    (dq, dk, dv)
}
