//! The LM head fused with log-softmax, target gather, entropy and their gradient,
//! computed over chunks of tokens so that the full `[T, vocab]` logits never exist.
//!
//! This is the CPU twin of the fused GPU LM-head kernel. For each chunk of
//! [`LM_HEAD_CHUNK_TOKENS`] rows of `hidden`:
//! 1. `logits = hidden_chunk · weightᵀ` (`[chunk, vocab]`, the only large buffer),
//! 2. log-prob of the target and entropy at the temperature ([`super::logprobs_from_logits`]),
//! 3. for the backward, `dlogits` from the upstream per-token gradients, then
//!    `dhidden_chunk = dlogits · weight` and `dweight += dlogitsᵀ · hidden_chunk`.
//!
//! Peak extra memory is two `[chunk, vocab]` f32 buffers: 2 × 128 × 49152 × 4 B ≈ 50 MB
//! for SmolLM2, against 100 MB per 256 tokens for materialised logits.

use super::logprob::{RowStats, logprobs_from_logits, row_grad, row_stats};
use crate::cpu::matmul::{matmul_nn, matmul_nt, matmul_tn};
use rayon::prelude::*;

/// Rows of `hidden` per chunk. Why 128: large enough that the `[chunk, dim] ×
/// [dim, vocab]` products run near the GEMM's peak, and that the rank-`chunk` update of
/// the `[vocab, dim]` weight gradient (memory-bound: the whole matrix is read and
/// written per chunk) is amortised; small enough that the logits buffer stays ~25 MB.
pub const LM_HEAD_CHUNK_TOKENS: usize = 128;

/// Results of [`lm_head_loss`].
#[derive(Clone, Debug, PartialEq)]
pub struct LmHeadOutput {
    /// Log-prob of each target, `[T]`.
    pub logprob: Vec<f32>,
    /// Entropy of each row's distribution, `[T]`.
    pub entropy: Vec<f32>,
    /// Gradient wrt `hidden`, `[T, dim]`.
    pub dhidden: Vec<f32>,
    /// Gradient wrt the LM-head weight, `[vocab, dim]`.
    pub dweight: Vec<f32>,
}

fn check(hidden: &[f32], weight: &[f32], dim: usize, targets: &[u32]) -> usize {
    assert!(dim > 0, "dim must be positive");
    assert_eq!(
        hidden.len(),
        targets.len() * dim,
        "hidden must be [targets.len(), dim]"
    );
    assert_eq!(weight.len() % dim, 0, "weight must be [vocab, dim]");
    weight.len() / dim
}

/// Log-probs and entropies of `targets` under `softmax(hidden · weightᵀ / temperature)`,
/// chunked, without gradients.
///
/// `hidden` is `[T, dim]` with `T = targets.len()`, `weight` `[vocab, dim]`.
pub fn lm_head_logprobs(
    hidden: &[f32],
    weight: &[f32],
    dim: usize,
    targets: &[u32],
    temperature: f32,
) -> (Vec<f32>, Vec<f32>) {
    let vocab = check(hidden, weight, dim, targets);
    let mut logits = vec![0.0f32; LM_HEAD_CHUNK_TOKENS.min(targets.len()) * vocab];
    let (mut logprob, mut entropy) = (Vec::new(), Vec::new());
    for (h, t) in hidden
        .chunks(LM_HEAD_CHUNK_TOKENS * dim)
        .zip(targets.chunks(LM_HEAD_CHUNK_TOKENS))
    {
        let rows = t.len();
        let logits = &mut logits[..rows * vocab];
        matmul_nt(logits, h, weight, rows, dim, vocab, false);
        let (lp, ent) = logprobs_from_logits(logits, t, vocab, temperature);
        logprob.extend(lp);
        entropy.extend(ent);
    }
    (logprob, entropy)
}

/// Forward and backward of the fused LM head: log-prob and entropy of each target,
/// and the gradients of `Σ dlogprob·logprob + Σ dentropy·entropy` wrt `hidden` and
/// `weight`.
///
/// `hidden` is `[T, dim]` with `T = targets.len()`, `weight` `[vocab, dim]`;
/// `dlogprob` (and `dentropy`, when given) have one value per token.
#[allow(clippy::too_many_arguments)]
pub fn lm_head_loss(
    hidden: &[f32],
    weight: &[f32],
    dim: usize,
    targets: &[u32],
    temperature: f32,
    dlogprob: &[f32],
    dentropy: Option<&[f32]>,
) -> LmHeadOutput {
    let mut dhidden = vec![0.0; hidden.len()];
    let mut dweight = vec![0.0; weight.len()];
    let (logprob, entropy) = lm_head_backward_into(
        hidden,
        weight,
        dim,
        targets,
        temperature,
        dlogprob,
        dentropy,
        &mut dhidden,
        &mut dweight,
    );
    LmHeadOutput {
        logprob,
        entropy,
        dhidden,
        dweight,
    }
}

/// [`lm_head_loss`] writing `dhidden` (overwritten) and accumulating into `dweight`
/// (added to), so the trainer can sum straight into its gradient buffers. Returns
/// `(logprob, entropy)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lm_head_backward_into(
    hidden: &[f32],
    weight: &[f32],
    dim: usize,
    targets: &[u32],
    temperature: f32,
    dlogprob: &[f32],
    dentropy: Option<&[f32]>,
    dhidden: &mut [f32],
    dweight: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        dlogprob.len(),
        targets.len(),
        "dlogprob: one value per token"
    );
    if let Some(d) = dentropy {
        assert_eq!(d.len(), targets.len(), "dentropy: one value per token");
    }
    lm_head_backward_with(
        hidden,
        weight,
        dim,
        targets,
        temperature,
        |rows, _| {
            (
                dlogprob[rows.clone()].to_vec(),
                dentropy.map(|d| d[rows].to_vec()),
            )
        },
        dhidden,
        dweight,
    )
}

/// The fused LM head in one pass over the logits: for each chunk, the log-probs are
/// computed, `upstream(rows, logprobs)` returns the gradients for those rows, and the
/// backward of the chunk follows while its logits are still in memory.
///
/// Why: a loss whose per-token gradient depends only on that token's log-prob (the
/// clipped policy loss with precomputed aggregation weights, the next-token loss) then
/// needs one logits product instead of two; for SmolLM2 the LM head is ~40% of a
/// step's arithmetic.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lm_head_backward_with(
    hidden: &[f32],
    weight: &[f32],
    dim: usize,
    targets: &[u32],
    temperature: f32,
    mut upstream: impl FnMut(std::ops::Range<usize>, &[f32]) -> (Vec<f32>, Option<Vec<f32>>),
    dhidden: &mut [f32],
    dweight: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let vocab = check(hidden, weight, dim, targets);
    assert!(
        temperature > 0.0 && temperature.is_finite(),
        "temperature must be positive"
    );
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        panic!("target {t} out of range for vocab {vocab}");
    }
    assert_eq!(dhidden.len(), hidden.len(), "dhidden must be [T, dim]");
    assert_eq!(dweight.len(), weight.len(), "dweight must be [vocab, dim]");
    let inv_t = 1.0 / temperature;
    let chunk = LM_HEAD_CHUNK_TOKENS;
    let cap = chunk.min(targets.len()) * vocab;
    let (mut logits, mut dlogits) = (vec![0.0f32; cap], vec![0.0f32; cap]);
    let (mut logprob, mut entropy) = (Vec::new(), Vec::new());
    for (c, (h, t)) in hidden
        .chunks(chunk * dim)
        .zip(targets.chunks(chunk))
        .enumerate()
    {
        let rows = t.len();
        let r0 = c * chunk;
        let logits = &mut logits[..rows * vocab];
        let dlogits = &mut dlogits[..rows * vocab];
        matmul_nt(logits, h, weight, rows, dim, vocab, false);
        let stats: Vec<RowStats> = logits
            .par_chunks_exact(vocab)
            .map(|row| row_stats(row, inv_t))
            .collect();
        let lp: Vec<f32> = stats
            .iter()
            .zip(logits.chunks_exact(vocab))
            .zip(t)
            .map(|((s, row), &tg)| ((row[tg as usize] * inv_t) as f64 - s.lse) as f32)
            .collect();
        let (dlp, dent) = upstream(r0..r0 + rows, &lp);
        assert_eq!(dlp.len(), rows, "upstream: one dlogprob per row");
        if let Some(d) = &dent {
            assert_eq!(d.len(), rows, "upstream: one dentropy per row");
        }
        let ent: Vec<f32> = logits
            .par_chunks_exact(vocab)
            .zip(dlogits.par_chunks_exact_mut(vocab))
            .enumerate()
            .map(|(r, (row, drow))| {
                let dh = dent.as_ref().map_or(0.0, |d| d[r]);
                row_grad(row, t[r], inv_t, &stats[r], dlp[r], dh, drow).1
            })
            .collect();
        logprob.extend(lp);
        entropy.extend(ent);
        matmul_nn(
            &mut dhidden[r0 * dim..(r0 + rows) * dim],
            dlogits,
            weight,
            rows,
            vocab,
            dim,
            false,
        );
        matmul_tn(dweight, dlogits, h, vocab, rows, dim, true);
    }
    (logprob, entropy)
}
