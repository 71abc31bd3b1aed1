//! Training throughput on a given model: one full RL step (training forward, fused LM
//! head, backward, AdamW) over a synthetic sequence, with the forward-only time of the
//! same sequence measured side by side as the baseline.
//!
//! For `ssr bench model` (which owns the printing). A training step costs about three
//! forwards (the backward is two matrix products per forward product), so the ratio
//! of training to forward-only tokens/s is expected near 1/3; far below says the
//! backward is slower than its arithmetic.

use super::sequence::{next_token_logprobs, sequence_backward_per_token};
use crate::optim::{AdamW, AdamWConfig};
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Result of [`measure_training_throughput`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainThroughput {
    /// Tokens in the sequence (all of them are trained on except the first).
    pub tokens: usize,
    /// Training forward + fused LM head (no backward): the baseline.
    pub forward_s: f64,
    /// Training forward, LM head and backward.
    pub forward_backward_s: f64,
    /// One AdamW update of every parameter.
    pub optimizer_s: f64,
    /// `tokens / (forward_backward_s + optimizer_s)`.
    pub train_tokens_per_second: f64,
    /// `tokens / forward_s`.
    pub forward_tokens_per_second: f64,
}

/// Why the throughput could not be measured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThroughputError {
    #[error("a training sequence needs at least 2 tokens, got {seq_len}")]
    TooShort { seq_len: usize },
    #[error("{seq_len} tokens exceed the model's context of {context}")]
    TooLong { seq_len: usize, context: usize },
}

/// Measures one training step on a copy of `weights` over `seq_len` deterministic
/// pseudo-random tokens (the weights themselves are not changed).
pub fn measure_training_throughput(
    weights: &Weights,
    seq_len: usize,
) -> Result<TrainThroughput, ThroughputError> {
    if seq_len < 2 {
        return Err(ThroughputError::TooShort { seq_len });
    }
    let context = weights.config.max_seq_len;
    if seq_len > context {
        return Err(ThroughputError::TooLong { seq_len, context });
    }
    let vocab = weights.config.vocab_size as u64;
    // A fixed LCG: the token values do not change the arithmetic, only the gathers.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let tokens: Vec<u32> = (0..seq_len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab) as u32
        })
        .collect();
    let positions: Vec<usize> = (1..seq_len).collect();
    let n = positions.len() as f32;

    // Warm-up: the first pass pays for page faults of fresh allocations and thread
    // start-up, which a training loop pays once.
    let _ = next_token_logprobs(
        weights,
        &tokens[..seq_len.min(16)],
        &positions[..seq_len.min(16) - 1],
        1.0,
    );
    let t0 = Instant::now();
    let _ = next_token_logprobs(weights, &tokens, &positions, 1.0);
    let forward_s = t0.elapsed().as_secs_f64();

    let mut w = weights.clone();
    let mut grads = Weights::zeros(&w.config);
    let t1 = Instant::now();
    sequence_backward_per_token(
        &w,
        &tokens,
        &positions,
        1.0,
        |_, lp| vec![-1.0 / n; lp.len()],
        &mut grads,
    );
    let forward_backward_s = t1.elapsed().as_secs_f64();

    // The second optimizer step is timed: the first touches the freshly allocated
    // (lazily zeroed) moment buffers, a one-time cost of a run.
    let mut opt = AdamW::new(AdamWConfig::default(), &w.config);
    opt.step(&mut w, &mut grads.clone());
    let t2 = Instant::now();
    opt.step(&mut w, &mut grads);
    let optimizer_s = t2.elapsed().as_secs_f64();

    Ok(TrainThroughput {
        tokens: seq_len,
        forward_s,
        forward_backward_s,
        optimizer_s,
        train_tokens_per_second: seq_len as f64 / (forward_backward_s + optimizer_s),
        forward_tokens_per_second: seq_len as f64 / forward_s,
    })
}
