//! Reinforcement-learning maths on token-level tensors: log-probabilities and entropy
//! from logits (and their gradient), group advantages, and the clipped policy loss.
//!
//! Owns: the f32 CPU references of the RL ops. The GPU kernels in `kernels/` carry the
//! same names and are validated against these functions, so their signatures are a
//! contract: change them only together with the kernels.
//!
//! Does not own: where rewards come from (`ssr-game`), the model forward/backward
//! (`crate::train`), or the optimizer (`crate::optim`). Inputs are plain slices: rows of
//! tokens concatenated, with offsets marking sequence or group boundaries.
//!
//! Shape errors (slices of different lengths, offsets that do not cover the input) are
//! programming errors and panic with a message; data from users (trajectory files) is
//! validated with typed errors before it reaches this module (`crate::trajectory`).

mod advantage;
mod lm_head;
mod logprob;
mod loss;

pub use advantage::{AdvantageKind, advantages};
pub(crate) use lm_head::lm_head_backward_with;
pub use lm_head::{LM_HEAD_CHUNK_TOKENS, LmHeadOutput, lm_head_logprobs, lm_head_loss};
pub use logprob::{logprobs_from_logits, logprobs_from_logits_backward};
pub use loss::{
    Aggregation, LossConfig, PolicyLossOutput, aggregation_weights, policy_loss,
    weighted_policy_loss,
};
