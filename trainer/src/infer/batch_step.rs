//! One decode step of several sequences together: each sequence feeds one token at its
//! own position over its own [`KvCache`], and every weight matrix is read once for all
//! of them.
//!
//! Owns: the batched forward of a decode step (the matrix products over all rows at
//! once, the attention of each sequence over its own cache). Does not own: which
//! sequences are in the batch or when they end (`infer::batch`), nor the single-sequence
//! forward and its layers (`infer::forward`, whose pieces this reuses).
//!
//! Exactness: a row of this step computes, operation for operation, what
//! `forward::forward` computes for the same token alone: the same RMSNorm, RoPE and
//! attention code per row, and the Q8_0 products, which are batch-invariant
//! (`Q8Matrix::matmul`). So a sequence decoded in a batch gets bit-for-bit the logits,
//! tokens and log-probabilities it gets alone. Without a Q8_0 copy (f32 precision, or
//! widths that are not multiples of 32) the f32 GEMM is not batch-invariant, so each
//! sequence then runs its own single-row forward: exact, but without the shared pass
//! over the weights.

use super::forward::{self, KvCache, LogitsFor, ModelRef, attention, rmsnorm, swiglu};
use crate::cpu::matmul::matmul_nt;
use rayon::prelude::*;

/// Runs `tokens[i]` at position `caches[i].len()` of sequence `i`, appends its keys and
/// values to `caches[i]`, and returns the logits `[tokens.len(), vocab]`. Ids are
/// checked, and each cache has room for one more position (the caller's duty, as for
/// `forward::forward`).
pub fn decode_step(m: ModelRef<'_>, caches: &mut [&mut KvCache], tokens: &[u32]) -> Vec<f32> {
    assert_eq!(caches.len(), tokens.len(), "one token per sequence");
    assert!(
        caches.iter().all(|c| c.len() < c.capacity()),
        "KV cache overflow (checked by the batch)"
    );
    let Some(q8) = m.q8 else {
        // No batch-invariant kernel: one exact single-row forward per sequence.
        return caches
            .iter_mut()
            .zip(tokens)
            .flat_map(|(c, t)| forward::forward(m, c, std::slice::from_ref(t), LogitsFor::Last))
            .collect();
    };
    let c = &m.w.config;
    let (d, hd, nh, ff) = (c.dim, c.head_dim(), c.n_heads, c.ffn_dim);
    let (qd, kvd) = (nh * hd, c.kv_dim());
    let n = tokens.len();
    let pos: Vec<usize> = caches.iter().map(|c| c.len()).collect();

    let mut x = Vec::with_capacity(n * d);
    for &t in tokens {
        x.extend_from_slice(&m.w.tok_embeddings[t as usize * d..(t as usize + 1) * d]);
    }
    let mut h = vec![0.0; n * d];
    let mut q = vec![0.0; n * qd];
    let mut k = vec![0.0; n * kvd];
    let mut v = vec![0.0; n * kvd];
    let mut att = vec![0.0; n * qd];
    let mut proj = vec![0.0; n * d];
    let mut gate = vec![0.0; n * ff];
    let mut up = vec![0.0; n * ff];
    let mut fused = vec![0.0; n * (qd + 2 * kvd).max(2 * ff)];

    for (li, (l, pl)) in m.w.layers.iter().zip(&q8.layers).enumerate() {
        rmsnorm(&mut h, &x, &l.attn_norm, c.norm_eps);
        let fq = &mut fused[..n * (qd + 2 * kvd)];
        pl.qkv.matmul(&h, n, fq);
        for (r, row) in fq.chunks_exact(qd + 2 * kvd).enumerate() {
            q[r * qd..(r + 1) * qd].copy_from_slice(&row[..qd]);
            k[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
            v[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
        }
        for r in 0..n {
            m.rope.apply(&mut q[r * qd..(r + 1) * qd], qd, pos[r]);
            m.rope.apply(&mut k[r * kvd..(r + 1) * kvd], kvd, pos[r]);
            let (kr, vr) = (&k[r * kvd..(r + 1) * kvd], &v[r * kvd..(r + 1) * kvd]);
            caches[r].append(li, pos[r], kr, vr);
        }
        // Sequences attend in parallel: each is a one-row attention over its own cache,
        // the same call a lone decode step makes.
        let shared: Vec<&KvCache> = caches.iter().map(|c| &**c).collect();
        att.par_chunks_mut(qd)
            .zip(q.par_chunks(qd))
            .zip(shared.par_iter().zip(pos.par_iter()))
            .for_each(|((a, qr), (cache, &p))| attention(a, qr, cache, li, 1, p, p + 1, nh));
        pl.wo.matmul(&att, n, &mut proj);
        x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);

        rmsnorm(&mut h, &x, &l.ffn_norm, c.norm_eps);
        let fg = &mut fused[..n * 2 * ff];
        pl.gate_up.matmul(&h, n, fg);
        for (r, row) in fg.chunks_exact(2 * ff).enumerate() {
            gate[r * ff..(r + 1) * ff].copy_from_slice(&row[..ff]);
            up[r * ff..(r + 1) * ff].copy_from_slice(&row[ff..]);
        }
        swiglu(&mut gate, &up);
        pl.down.matmul(&gate, n, &mut proj);
        x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
    }
    for (cache, p) in caches.iter_mut().zip(&pos) {
        cache.len = p + 1;
    }

    let vocab = c.vocab_size;
    let mut hn = vec![0.0; n * d];
    rmsnorm(&mut hn, &x, &m.w.final_norm, c.norm_eps);
    let mut logits = vec![0.0; n * vocab];
    match &q8.lm_head {
        Some(head) => head.matmul(&hn, n, &mut logits),
        // What a lone step uses without a Q8_0 head: the f32 GEMM, one row at a time.
        None => {
            for (o, hr) in logits.chunks_exact_mut(vocab).zip(hn.chunks_exact(d)) {
                matmul_nt(o, hr, m.w.lm_head(), 1, d, vocab, false);
            }
        }
    }
    logits
}
