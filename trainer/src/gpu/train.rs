//! One RL optimizer step on the GPU: the backend `crate::train::Trainer` (and through it
//! `ssr train`) switches to when a GPU is present, with the same results as the CPU
//! `TrainSession::step` within tolerance.
//!
//! Same algorithm as the twin `crate::train::TrainSession::step`: aggregation weights
//! over the whole batch, per sequence the forward, the fused LM head, the host policy loss
//! (`crate::rl::weighted_policy_loss`, the very CPU function) and the backward into device
//! gradients; optionally an NCCL average of the gradients across ranks; then AdamW on the
//! device, which also rewrites the bf16 weight copies of the Bf16 precision (the
//! default; `precision.rs`). Checkpoints: `GpuTrainer::weights_to_host` and
//! `moments_to_host` feed the CPU checkpoint writer (f32 masters), so the format is
//! identical in either precision.
//!
//! Does not own: batching and datasets (the session picks the batch and passes its
//! sequences) or checkpoint files.

use std::time::Instant;

use super::context::Gpu;
use super::error::GpuError;
use super::model::DeviceWeights;
use super::nccl::Communicator;
use super::optim::{GpuAdamW, GpuParam};
use super::precision::GpuPrecision;
use crate::rl::{PolicyLossOutput, aggregation_weights, weighted_policy_loss};
use crate::train::{StepMetrics, TrainConfig};
use crate::weights::Weights;

/// One sequence of a batch (the session's prepared trajectory).
#[derive(Clone, Copy, Debug)]
pub struct TrainSequence<'a> {
    pub tokens: &'a [u32],
    /// Positions with loss mask 1 (position `p` scores `tokens[p]`).
    pub positions: &'a [usize],
    /// Behaviour log-probs at `positions`.
    pub old_logp: &'a [f32],
    pub advantage: f32,
}

/// Weights, gradients, optimizer state and optional reference model on the device.
pub struct GpuTrainer {
    pub config: TrainConfig,
    weights: DeviceWeights,
    grads: DeviceWeights,
    reference: Option<DeviceWeights>,
    optimizer: GpuAdamW,
    comm: Option<Communicator>,
}

impl std::fmt::Debug for GpuTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTrainer")
            .field("step", &self.optimizer.step)
            .finish_non_exhaustive()
    }
}

impl GpuTrainer {
    /// Uploads the model (and reference, when the KL term is on) in the default
    /// precision (bf16). `step` and moments resume a run (`None`: fresh moments at step 0).
    pub fn new(
        gpu: &Gpu,
        weights: &Weights,
        reference: Option<&Weights>,
        config: TrainConfig,
        resume: Option<(u64, &Weights, &Weights)>,
        comm: Option<Communicator>,
    ) -> Result<Self, GpuError> {
        Self::with_precision(
            gpu,
            weights,
            reference,
            config,
            resume,
            comm,
            GpuPrecision::default(),
        )
    }

    /// [`GpuTrainer::new`] in the given precision (the reference model uses it too).
    pub fn with_precision(
        gpu: &Gpu,
        weights: &Weights,
        reference: Option<&Weights>,
        config: TrainConfig,
        resume: Option<(u64, &Weights, &Weights)>,
        comm: Option<Communicator>,
        precision: GpuPrecision,
    ) -> Result<Self, GpuError> {
        let w = DeviceWeights::upload_with(gpu, weights, precision)?;
        let grads = DeviceWeights::zeros(gpu, &weights.config)?;
        let optimizer = match resume {
            None => {
                let lens: Vec<usize> = weights.tensors().iter().map(|(_, t)| t.len()).collect();
                GpuAdamW::new(gpu, config.adamw, &lens)?
            }
            Some((step, m, v)) => {
                let m: Vec<&[f32]> = m.tensors().into_iter().map(|(_, t)| t).collect();
                let v: Vec<&[f32]> = v.tensors().into_iter().map(|(_, t)| t).collect();
                GpuAdamW::from_host(gpu, config.adamw, step, &m, &v)?
            }
        };
        let reference = reference
            .map(|r| DeviceWeights::upload_with(gpu, r, precision))
            .transpose()?;
        Ok(GpuTrainer {
            config,
            weights: w,
            grads,
            reference,
            optimizer,
            comm,
        })
    }

    pub fn step_count(&self) -> u64 {
        self.optimizer.step
    }

    /// The precision of the model's GEMMs.
    pub fn precision(&self) -> GpuPrecision {
        self.weights.precision()
    }

    /// The policy's device weights (f32 masters and their bf16 copies).
    pub fn device_weights(&mut self) -> &mut DeviceWeights {
        &mut self.weights
    }

    /// Whether a reference model is on the device.
    pub fn has_reference(&self) -> bool {
        self.reference.is_some()
    }

    /// Changes the settings of later steps (moments and step count are kept), as
    /// `TrainSession::set_config` does.
    pub fn set_config(&mut self, config: TrainConfig) {
        self.optimizer.config = config.adamw;
        self.config = config;
    }

    /// Uploads the frozen reference policy of the KL penalty (same shape as the policy).
    pub fn set_reference(&mut self, gpu: &Gpu, reference: &Weights) -> Result<(), GpuError> {
        if reference.config != self.weights.config {
            return Err(GpuError::Invalid {
                op: "set reference",
                detail: "the reference model's shape differs from the policy's".into(),
            });
        }
        self.reference = Some(DeviceWeights::upload_with(
            gpu,
            reference,
            self.weights.precision(),
        )?);
        Ok(())
    }

    /// The current weights on the host (for checkpoints and the inference engine).
    pub fn weights_to_host(&self, gpu: &Gpu) -> Result<Weights, GpuError> {
        self.weights.to_host(gpu)
    }

    /// AdamW moments as host `Weights` (same names as the CPU optimizer's `m`, `v`).
    pub fn moments_to_host(&self, gpu: &Gpu) -> Result<(Weights, Weights), GpuError> {
        let (m, v) = self.optimizer.moments_to_host(gpu)?;
        let mut mw = Weights::zeros(&self.weights.config);
        let mut vw = Weights::zeros(&self.weights.config);
        for ((_, dst), src) in mw.tensors_mut().into_iter().zip(m) {
            *dst = src;
        }
        for ((_, dst), src) in vw.tensors_mut().into_iter().zip(v) {
            *dst = src;
        }
        Ok((mw, vw))
    }

    /// One optimizer step on `batch` (the twin of `TrainSession::step` after batching).
    // tidy: long-function: one optimizer step as the device runs it (checks, per-sequence
    // forward, loss and backward, the all-reduce, AdamW), kept step for step beside its CPU twin
    // `TrainSession::step` so the two compare line by line. GPU code, checked only on real
    // hardware: not split without a device to rerun it.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        batch: &[TrainSequence<'_>],
    ) -> Result<StepMetrics, GpuError> {
        let started = Instant::now();
        let cfg = self.config.clone();
        if cfg.loss.kl_coef > 0.0 && self.reference.is_none() {
            return Err(GpuError::Invalid {
                op: "train step",
                detail: "kl_coef > 0 needs a reference model".into(),
            });
        }
        let _r = super::nvtx::Range::new(format!("train step {}", self.optimizer.step + 1));
        let mut offsets = vec![0usize];
        for s in batch {
            offsets.push(offsets[offsets.len() - 1] + s.positions.len());
        }
        let ones = vec![1.0f32; offsets[offsets.len() - 1]];
        let weights = aggregation_weights(&ones, &offsets, cfg.loss.aggregation);
        self.grads.zero(gpu)?;
        let mut parts = Vec::with_capacity(batch.len());
        let (mut entropy_sum, mut tokens) = (0.0f64, 0usize);
        for (i, s) in batch.iter().enumerate() {
            tokens += s.tokens.len();
            if s.positions.is_empty() {
                continue;
            }
            let _seq = super::nvtx::Range::new(format!("sequence {i}"));
            let ref_logp = match (&self.reference, cfg.loss.kl_coef > 0.0) {
                (Some(r), true) => {
                    let _r = super::nvtx::Range::new("reference logprobs");
                    Some(
                        gpu.next_token_logprobs(r, s.tokens, s.positions, cfg.temperature)?
                            .0,
                    )
                }
                _ => None,
            };
            let w_slice = &weights[offsets[i]..offsets[i + 1]];
            let adv = vec![s.advantage; s.positions.len()];
            let mask = vec![1.0f32; s.positions.len()];
            let mut part = None;
            let out = gpu.sequence_backward(
                &self.weights,
                s.tokens,
                s.positions,
                cfg.temperature,
                |logp| {
                    let o = weighted_policy_loss(
                        logp,
                        s.old_logp,
                        ref_logp.as_deref(),
                        &adv,
                        &mask,
                        w_slice,
                        &cfg.loss,
                    );
                    let d = o.dlogp.clone();
                    part = Some(o);
                    d
                },
                &mut self.grads,
            )?;
            entropy_sum += out.entropy.iter().map(|&e| f64::from(e)).sum::<f64>();
            if let Some(p) = part {
                parts.push(p);
            }
        }
        if let Some(comm) = &self.comm {
            for (_, g) in self.grads.tensors_mut() {
                comm.all_reduce_mean(g)?;
            }
        }
        let loss = PolicyLossOutput::merge(parts);
        let grads: Vec<_> = self.grads.tensors().into_iter().map(|(_, g)| g).collect();
        let masters = self.weights.params_mut();
        let names: Vec<String> = masters.iter().map(|(n, _, _)| n.clone()).collect();
        // The AdamW kernel writes each bf16 copy from its updated master in the same pass.
        let mut params: Vec<GpuParam<'_>> = names
            .iter()
            .zip(masters)
            .zip(grads)
            .map(|((name, (_, weight, weight_bf16)), grad)| GpuParam {
                name,
                weight,
                grad,
                weight_bf16,
            })
            .collect();
        let stats = self.optimizer.step(gpu, &mut params)?;
        gpu.synchronize()?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: stats.step,
            loss: loss.loss,
            pg_loss: loss.pg_loss,
            kl: loss.kl,
            clip_fraction: loss.clip_fraction,
            ratio_mean: loss.ratio_mean,
            entropy: if loss.tokens > 0 {
                (entropy_sum / loss.tokens as f64) as f32
            } else {
                0.0
            },
            grad_norm: stats.grad_norm,
            lr: stats.lr,
            sequences: batch.len(),
            tokens,
            trained_tokens: loss.tokens,
            seconds,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            // Filled by `train::Trainer::step`, which holds the dataset.
            no_signal: None,
        })
    }
}
