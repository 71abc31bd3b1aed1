//! One sequence through the model with the fused LM head: next-token log-probs at
//! chosen positions, and the gradient of a loss on them into every weight.
//!
//! Position `i ≥ 1` scores `tokens[i]` from the hidden state of row `i - 1`; only the
//! chosen positions go through the LM head (for agent trajectories most tokens are
//! prompt and tool output, which never need logits).

use super::model::{backward, forward};
use crate::rl::{lm_head_backward_into, lm_head_logprobs};
use crate::weights::Weights;

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

/// Forward, fused LM head and backward for one sequence.
///
/// `loss` receives the log-probs at `positions` and returns `d loss / d logprob`
/// (one per position); every weight gradient is added into `grads`, the LM head's
/// into `grads.lm_head` (or into the embeddings when they are tied).
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
    // Two passes over the LM head: the loss gradient needs the log-probs first. Why
    // not one fused pass with a per-token callback: the extra forward costs ~7% of a
    // SmolLM2 step and keeps `lm_head_loss` the same contract as the GPU kernel.
    let (logprob, entropy) = lm_head_logprobs(&h, w.lm_head(), dim, &targets, temperature);
    let dlogprob = loss(&logprob);
    assert_eq!(
        dlogprob.len(),
        positions.len(),
        "loss: one gradient per position"
    );
    let mut dh = vec![0.0f32; h.len()];
    {
        let dhead = match &mut grads.lm_head {
            Some(g) => g,
            None => &mut grads.tok_embeddings,
        };
        lm_head_backward_into(
            &h,
            w.lm_head(),
            dim,
            &targets,
            temperature,
            &dlogprob,
            None,
            &mut dh,
            dhead,
        );
    }
    let mut dhidden = vec![0.0f32; acts.hidden.len()];
    for (&p, d) in positions.iter().zip(dh.chunks_exact(dim)) {
        dhidden[(p - 1) * dim..p * dim].copy_from_slice(d);
    }
    backward(w, &acts, &dhidden, grads);
    SequenceOutput { logprob, entropy }
}

/// Supervised next-token loss (mean negative log-likelihood over positions `1..T`) of
/// one sequence; adds its gradient into `grads` and returns the loss.
pub fn next_token_loss(w: &Weights, tokens: &[u32], grads: &mut Weights) -> f32 {
    let positions: Vec<usize> = (1..tokens.len()).collect();
    let n = positions.len() as f32;
    let out = sequence_backward(
        w,
        tokens,
        &positions,
        1.0,
        |lp| vec![-1.0 / n; lp.len()],
        grads,
    );
    -(out.logprob.iter().map(|&x| x as f64).sum::<f64>() / n as f64) as f32
}
