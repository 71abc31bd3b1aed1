//! Training: the f32 CPU training forward over full sequences that keeps its
//! activations, the backward of every operation, and the RL training session built on
//! them.
//!
//! Owns: one file per operation, each with a forward and a `_backward` of the same
//! stem ([`embedding`], [`norm`], [`rope`], [`attention`], [`swiglu`], [`linear`]), the
//! whole-model forward/backward ([`model`]), one sequence through the fused LM head
//! ([`sequence`]), the step loop over trajectories ([`session`]), and the
//! device-dispatching [`Trainer`] over it and its GPU twin ([`trainer`]).
//!
//! Does not own: inference with a KV cache (`crate::infer`), the matrix products
//! (`crate::cpu::matmul`), the RL maths (`crate::rl`), the optimizer (`crate::optim`).
//!
//! Every parallel loop writes disjoint outputs and every float reduction runs in a
//! fixed order, so a step is bit-for-bit reproducible on the same machine and thread
//! count: exact checkpoint resume depends on it.

pub mod attention;
pub mod bench;
pub mod embedding;
pub mod linear;
pub mod model;
pub mod norm;
pub mod rope;
pub mod run;
pub mod sequence;
pub mod session;
pub mod sft;
pub mod swiglu;
pub mod trainer;

pub use bench::{ThroughputError, TrainThroughput, measure_training_throughput};
pub use model::{Activations, backward, forward};
pub use run::{
    LoadedPolicy, PreparedJob, RunError, RunSummary, TrainJob, TrainOverrides, load_policy,
    prepare_job, run_job,
};
pub use sequence::{
    SequenceOutput, next_token_logprobs, next_token_loss, sequence_backward,
    sequence_backward_per_token,
};
pub use session::{Dataset, NoLearningSignal, StepMetrics, TrainConfig, TrainError, TrainSession};
pub use sft::{Demo, DemoError, SftMetrics, read_demos};
pub use trainer::Trainer;
