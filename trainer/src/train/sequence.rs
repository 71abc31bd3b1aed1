//! One sequence through the model with the fused LM head: next-token log-probs at
//! chosen positions, and the gradient of a loss on them into every weight.
//!
//! Position `i ≥ 1` scores `tokens[i]` from the hidden state of row `i - 1`; only the
//! chosen positions go through the LM head (for agent trajectories most tokens are
//! prompt and tool output, which never need logits).

use super::model::{Activations, backward, forward};
use crate::rl::{lm_head_backward_with, lm_head_logprobs};
use crate::weights::Weights;
use std::ops::Range;

/// The hidden rows that predict `positions` (row `p - 1` for position `p`).
fn gather_rows(hidden: &[f32], dim: usize, positions: &[usize]) -> Vec<f32> {
    let mut h = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        h.extend_from_slice(&hidden[(p - 1) * dim..p * dim]);
    }
    h
}

fn check_positions(tokens: &[u32], positions: &[usize]) {
    assert!(
        positions.iter().all(|&p| p >= 1 && p < tokens.len()),
        "positions must lie in 1..{}",
        tokens.len()
    );
}

/// `log P(tokens[p] | tokens[..p])` and the entropy of that distribution, for each
/// position `p`, at the given sampling temperature. No gradient.
pub fn next_token_logprobs(
    w: &Weights,
    tokens: &[u32],
    positions: &[usize],
    temperature: f32,
) -> (Vec<f32>, Vec<f32>) {
    check_positions(tokens, positions);
    let acts = forward(w, tokens);
    let dim = w.config.dim;
    let h = gather_rows(&acts.hidden, dim, positions);
    let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
    lm_head_logprobs(&h, w.lm_head(), dim, &targets, temperature)
}

/// What [`sequence_backward`] computed on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceOutput {
    /// Log-prob at each position (before the update).
    pub logprob: Vec<f32>,
    /// Entropy at each position.
    pub entropy: Vec<f32>,
}

/// Forward, fused LM head and backward for one sequence, for any loss of the
/// log-probs.
///
/// `loss` receives the log-probs at all `positions` and returns `d loss / d logprob`
/// (one per position); every weight gradient is added into `grads`, the LM head's
/// into `grads.lm_head` (or into the embeddings when they are tied). This runs the
/// LM-head product twice (log-probs first, then the backward); a loss that is a sum
/// of per-token terms should use [`sequence_backward_per_token`], which runs it once.
pub fn sequence_backward(
    w: &Weights,
    tokens: &[u32],
    positions: &[usize],
    temperature: f32,
    loss: impl FnOnce(&[f32]) -> Vec<f32>,
    grads: &mut Weights,
) -> SequenceOutput {
    check_positions(tokens, positions);
    let dim = w.config.dim;
    let acts = forward(w, tokens);
    let h = gather_rows(&acts.hidden, dim, positions);
    let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
    let (logprob, entropy) = lm_head_logprobs(&h, w.lm_head(), dim, &targets, temperature);
    let dlogprob = loss(&logprob);
    assert_eq!(
        dlogprob.len(),
        positions.len(),
        "loss: one gradient per position"
    );
    lm_head_and_model_backward(
        w,
        &acts,
        positions,
        &h,
        &targets,
        temperature,
        grads,
        |rows, _| dlogprob[rows].to_vec(),
    );
    SequenceOutput { logprob, entropy }
}

/// [`sequence_backward`] for a loss that is a sum of per-token terms, in one pass of
/// the LM head.
///
/// `loss(range, logprob)` receives the log-probs of `positions[range]` (the LM head
/// works in chunks of `crate::rl::LM_HEAD_CHUNK_TOKENS`, in order, covering every
/// position once) and returns `d loss / d logprob` for them, while that chunk's logits
/// are still in memory. The clipped policy loss with batch-wide aggregation weights
/// and the next-token loss have this form.
pub fn sequence_backward_per_token(
    w: &Weights,
    tokens: &[u32],
    positions: &[usize],
    temperature: f32,
    loss: impl FnMut(Range<usize>, &[f32]) -> Vec<f32>,
    grads: &mut Weights,
) -> SequenceOutput {
    check_positions(tokens, positions);
    let dim = w.config.dim;
    let acts = forward(w, tokens);
    let h = gather_rows(&acts.hidden, dim, positions);
    let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
    let (logprob, entropy) =
        lm_head_and_model_backward(w, &acts, positions, &h, &targets, temperature, grads, loss);
    SequenceOutput { logprob, entropy }
}

/// The fused LM-head backward (gradient from `loss` per chunk) and the model backward.
#[allow(clippy::too_many_arguments)]
fn lm_head_and_model_backward(
    w: &Weights,
    acts: &Activations,
    positions: &[usize],
    h: &[f32],
    targets: &[u32],
    temperature: f32,
    grads: &mut Weights,
    mut loss: impl FnMut(Range<usize>, &[f32]) -> Vec<f32>,
) -> (Vec<f32>, Vec<f32>) {
    let dim = w.config.dim;
    let mut dh = vec![0.0f32; h.len()];
    let out = {
        let dhead = match &mut grads.lm_head {
            Some(g) => g,
            None => &mut grads.tok_embeddings,
        };
        lm_head_backward_with(
            h,
            w.lm_head(),
            dim,
            targets,
            temperature,
            |rows, lp| (loss(rows, lp), None),
            &mut dh,
            dhead,
        )
    };
    let mut dhidden = vec![0.0f32; acts.hidden.len()];
    for (&p, d) in positions.iter().zip(dh.chunks_exact(dim)) {
        dhidden[(p - 1) * dim..p * dim].copy_from_slice(d);
    }
    backward(w, acts, &dhidden, grads);
    out
}

/// Supervised next-token loss (mean negative log-likelihood over positions `1..T`) of
/// one sequence; adds its gradient into `grads` and returns the loss.
pub fn next_token_loss(w: &Weights, tokens: &[u32], grads: &mut Weights) -> f32 {
    let positions: Vec<usize> = (1..tokens.len()).collect();
    let n = positions.len() as f32;
    let out = sequence_backward_per_token(
        w,
        tokens,
        &positions,
        1.0,
        |_, lp| vec![-1.0 / n; lp.len()],
        grads,
    );
    -(out.logprob.iter().map(|&x| x as f64).sum::<f64>() / n as f64) as f32
}
