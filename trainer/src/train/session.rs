//! The RL training session: trajectories in, AdamW steps out, checkpoints that resume
//! exactly.
//!
//! One step:
//! 1. pick the step's sequences ([`Dataset::batch_for_step`]: all of them, or a
//!    minibatch drawn from a permutation that depends only on the seed and the step,
//!    so a resumed run draws the same batches without saving RNG state);
//! 2. compute aggregation weights over the whole batch from the loss masks;
//! 3. per sequence (one sequence's activations in memory at a time): training forward,
//!    log-probs at the policy-generated positions, optional reference log-probs, the
//!    clipped policy loss on that slice, fused LM-head backward, model backward,
//!    gradients summed into one buffer;
//! 4. AdamW (clip, warm-up, update).
//!
//! Advantages come from the trajectory's `advantage` when present, else from the
//! rewards of its group (`(role, group_id)`) with the configured estimator, computed
//! once over the whole file so that minibatches see full-group baselines.
//!
//! Does not own: the per-op maths (sibling modules, `crate::rl`), the file formats
//! (`crate::trajectory`, `crate::checkpoint`).

use super::sequence::next_token_logprobs;
use super::sequence::sequence_backward_per_token;
use crate::checkpoint::{self, CheckpointError};
use crate::optim::{AdamW, AdamWConfig};
use crate::rl::{
    AdvantageKind, LossConfig, PolicyLossOutput, advantages, aggregation_weights,
    weighted_policy_loss,
};
use crate::trajectory::{InvalidTrajectory, Role, Trajectory};
use crate::weights::Weights;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// Settings of an RL training run (saved in checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub adamw: AdamWConfig,
    pub loss: LossConfig,
    /// Estimator for trajectories that carry no `advantage`.
    pub advantage: AdvantageKind,
    /// `eps` of the GRPO standard-deviation division.
    pub advantage_eps: f32,
    /// Sampling temperature the behaviour log-probs were computed at.
    pub temperature: f32,
    /// Sequences per step; 0 means every sequence of the dataset in every step.
    pub batch_size: usize,
    /// Seed of the minibatch permutations.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            adamw: AdamWConfig::default(),
            loss: LossConfig::default(),
            advantage: AdvantageKind::Grpo,
            advantage_eps: 1e-6,
            temperature: 1.0,
            batch_size: 0,
            seed: 0,
        }
    }
}

/// Why training could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("trajectory {index}: {source}")]
    Trajectory {
        index: usize,
        #[source]
        source: InvalidTrajectory,
    },
    #[error("trajectory {index} has {len} tokens; the model's context is {max}")]
    TooLong {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("no trajectory has a policy-generated token (loss_mask is 0 everywhere)")]
    NoTrainableTokens,
    #[error("kl_coef is {kl_coef} but no reference model was given")]
    MissingReference { kl_coef: f32 },
    #[error("the reference model's shape differs from the policy's")]
    ReferenceShape,
    #[error("checkpoint has no optimizer state or training config; cannot resume from it")]
    NotResumable,
    #[error("checkpoint training config: {0}")]
    BadConfig(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The device running the step failed (CUDA; the CPU path has no device errors).
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}

/// One trajectory, ready to train on.
#[derive(Clone, Debug, PartialEq)]
struct Prepared {
    tokens: Vec<u32>,
    /// Positions with loss mask 1.
    positions: Vec<usize>,
    /// Behaviour log-probs at `positions`.
    old_logp: Vec<f32>,
    advantage: f32,
    /// Index of its `(role, group_id)` group in the dataset.
    group: usize,
}

/// Trajectories validated against a model and given advantages.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    items: Vec<Prepared>,
}

impl Dataset {
    /// Validates `trajectories` for a model with this vocabulary and context, and
    /// computes missing advantages per group.
    pub fn new(
        trajectories: &[Trajectory],
        model: &crate::Config,
        kind: AdvantageKind,
        eps: f32,
    ) -> Result<Self, TrainError> {
        for (index, t) in trajectories.iter().enumerate() {
            t.validate()
                .and_then(|()| t.check_vocab(model.vocab_size))
                .map_err(|source| TrainError::Trajectory { index, source })?;
            if t.token_ids.len() > model.max_seq_len {
                return Err(TrainError::TooLong {
                    index,
                    len: t.token_ids.len(),
                    max: model.max_seq_len,
                });
            }
        }
        // Groups in order of first appearance; members in file order.
        let mut group_of: HashMap<(Role, &str), usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, t) in trajectories.iter().enumerate() {
            let g = *group_of
                .entry((t.role, t.group_id.as_str()))
                .or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
            groups[g].push(i);
        }
        let mut rewards = Vec::with_capacity(trajectories.len());
        let mut offsets = vec![0];
        for g in &groups {
            rewards.extend(g.iter().map(|&i| trajectories[i].reward));
            offsets.push(rewards.len());
        }
        let computed = advantages(&rewards, &offsets, kind, eps);
        let mut adv = vec![0.0f32; trajectories.len()];
        for (&i, &a) in groups.iter().flatten().zip(&computed) {
            adv[i] = trajectories[i].advantage.unwrap_or(a);
        }
        let mut group_index = vec![0usize; trajectories.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                group_index[i] = g;
            }
        }
        let items: Vec<Prepared> = trajectories
            .iter()
            .zip(adv)
            .zip(group_index)
            .map(|((t, advantage), group)| {
                let positions: Vec<usize> = (0..t.token_ids.len())
                    .filter(|&i| t.loss_mask[i] == 1)
                    .collect();
                Prepared {
                    old_logp: positions.iter().map(|&p| t.logprobs[p]).collect(),
                    tokens: t.token_ids.clone(),
                    positions,
                    advantage,
                    group,
                }
            })
            .collect();
        if items.iter().all(|p| p.positions.is_empty()) {
            return Err(TrainError::NoTrainableTokens);
        }
        Ok(Dataset { items })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The sequences at `batch` (indices from [`Dataset::batch_for_step`]) in the form
    /// the GPU trainer takes.
    #[cfg(feature = "cuda")]
    pub(crate) fn sequences(&self, batch: &[usize]) -> Vec<crate::gpu::train::TrainSequence<'_>> {
        batch
            .iter()
            .map(|&i| {
                let p = &self.items[i];
                crate::gpu::train::TrainSequence {
                    tokens: &p.tokens,
                    positions: &p.positions,
                    old_logp: &p.old_logp,
                    advantage: p.advantage,
                }
            })
            .collect()
    }

    /// The advantage given to each trajectory, in file order.
    pub fn advantages(&self) -> Vec<f32> {
        self.items.iter().map(|p| p.advantage).collect()
    }

    /// `Some` when no sequence of `batch` (indices from [`Dataset::batch_for_step`])
    /// that has trained tokens has a non-zero advantage: the policy gradient of that
    /// step is exactly zero, whatever the weights.
    pub fn no_signal(&self, batch: &[usize]) -> Option<NoLearningSignal> {
        let trained: Vec<&Prepared> = batch
            .iter()
            .map(|&i| &self.items[i])
            .filter(|p| !p.positions.is_empty())
            .collect();
        if trained.iter().any(|p| p.advantage != 0.0) {
            return None;
        }
        let mut groups: Vec<usize> = trained.iter().map(|p| p.group).collect();
        groups.sort_unstable();
        groups.dedup();
        Some(NoLearningSignal {
            groups: groups.len(),
            sequences: trained.len(),
        })
    }

    /// `(groups with at least one non-zero advantage, all groups)` over the dataset:
    /// how much of it can teach anything.
    pub fn groups_with_signal(&self) -> (usize, usize) {
        let n = self.items.iter().map(|p| p.group + 1).max().unwrap_or(0);
        let mut signal = vec![false; n];
        for p in &self.items {
            signal[p.group] |= p.advantage != 0.0 && !p.positions.is_empty();
        }
        (signal.iter().filter(|&&s| s).count(), n)
    }

    /// Indices of the sequences of (1-based) step `step`: everything when `batch_size`
    /// is 0 or covers the dataset; otherwise the next `batch_size` entries of a
    /// sequence of permutations, permutation `e` seeded by `(seed, e)`.
    pub fn batch_for_step(&self, step: u64, batch_size: usize, seed: u64) -> Vec<usize> {
        let n = self.items.len();
        if batch_size == 0 || batch_size >= n {
            return (0..n).collect();
        }
        let start = (step.saturating_sub(1)) as usize * batch_size;
        let mut cached: Option<(usize, Vec<usize>)> = None;
        (start..start + batch_size)
            .map(|g| {
                let epoch = g / n;
                if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(epoch as u64);
                    let mut perm: Vec<usize> = (0..n).collect();
                    perm.shuffle(&mut rng);
                    cached = Some((epoch, perm));
                }
                cached.as_ref().expect("set above").1[g % n]
            })
            .collect()
    }
}

/// A step with nothing to learn from: every sequence of its batch has advantage 0,
/// because every reward of each group was equal (or a group had one member, which has
/// no baseline). The policy gradient is exactly zero; only the KL term (if any),
/// weight decay and the optimizer's momentum move the weights. Settings that give a
/// group some variance: more attempts per bug, a higher sampling temperature, a warm
/// start that solves some bugs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "no learning signal: every reward of the group was equal ({groups} group(s), {sequences} sequence(s), every advantage 0)"
)]
pub struct NoLearningSignal {
    /// Groups in the step's batch.
    pub groups: usize,
    /// Sequences with trained tokens in the step's batch.
    pub sequences: usize,
}

/// What one step did (one JSON object per step with `ssr train --json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: u64,
    /// The policy loss (with the KL term) before the update.
    pub loss: f32,
    /// Its policy-gradient part.
    pub pg_loss: f32,
    /// Mean k3 KL to the reference over trained tokens (0 without a reference).
    pub kl: f32,
    /// Fraction of trained tokens whose gradient the clip removed.
    pub clip_fraction: f32,
    /// Mean importance ratio current/behaviour over trained tokens.
    pub ratio_mean: f32,
    /// Mean entropy of the policy over trained tokens.
    pub entropy: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Sequences in the step.
    pub sequences: usize,
    /// Tokens forwarded (all positions) and trained on (mask 1).
    pub tokens: usize,
    pub trained_tokens: usize,
    /// Wall time of the step and forwarded tokens per second.
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// Set when the step had no learning signal (its loss and gradient norm then say
    /// nothing about learning; report this instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_signal: Option<NoLearningSignal>,
}

/// A policy being trained: weights, optimizer state, settings and the optional frozen
/// reference for the KL penalty.
#[derive(Clone, Debug)]
pub struct TrainSession {
    pub weights: Weights,
    pub optimizer: AdamW,
    pub config: TrainConfig,
    reference: Option<Weights>,
}

const CONFIG_KEY: &str = "train_config";

impl TrainSession {
    /// A fresh session (step 0) starting from `weights`.
    pub fn new(weights: Weights, config: TrainConfig) -> Self {
        let optimizer = AdamW::new(config.adamw, &weights.config);
        TrainSession {
            weights,
            optimizer,
            config,
            reference: None,
        }
    }

    /// Sets the frozen reference policy of the KL penalty.
    pub fn set_reference(&mut self, reference: Weights) -> Result<(), TrainError> {
        if reference.config != self.weights.config {
            return Err(TrainError::ReferenceShape);
        }
        self.reference = Some(reference);
        Ok(())
    }

    /// The frozen reference policy of the KL penalty, if set.
    pub fn reference(&self) -> Option<&Weights> {
        self.reference.as_ref()
    }

    /// Optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        self.optimizer.step
    }

    /// Writes a checkpoint that [`TrainSession::resume`] restores exactly.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let extra = BTreeMap::from([(
            CONFIG_KEY.to_string(),
            serde_json::to_string(&self.config).expect("TrainConfig serializes"),
        )]);
        checkpoint::save(
            dir,
            &self.weights,
            Some(&self.optimizer),
            self.optimizer.step,
            &extra,
        )
    }

    /// Restores a session saved by [`TrainSession::save`] (the reference model, if
    /// any, must be set again: it is an input, not state).
    pub fn resume(dir: &Path) -> Result<Self, TrainError> {
        Self::from_checkpoint(checkpoint::load(dir)?)
    }

    /// A session from a loaded checkpoint with optimizer state and training config.
    pub fn from_checkpoint(ck: checkpoint::Checkpoint) -> Result<Self, TrainError> {
        let (Some(optimizer), Some(cfg)) = (ck.optimizer, ck.extra.get(CONFIG_KEY)) else {
            return Err(TrainError::NotResumable);
        };
        let config: TrainConfig =
            serde_json::from_str(cfg).map_err(|e| TrainError::BadConfig(e.to_string()))?;
        Ok(TrainSession {
            weights: ck.weights,
            optimizer,
            config,
            reference: None,
        })
    }

    /// Changes the settings of later steps (e.g. a new learning rate when continuing a
    /// run); the optimizer moments and step count are kept.
    pub fn set_config(&mut self, config: TrainConfig) {
        self.optimizer.config = config.adamw;
        self.config = config;
    }

    /// One optimizer step on the step's batch of `data`.
    pub fn step(&mut self, data: &Dataset) -> Result<StepMetrics, TrainError> {
        let started = Instant::now();
        let cfg = self.config.clone();
        if cfg.loss.kl_coef > 0.0 && self.reference.is_none() {
            return Err(TrainError::MissingReference {
                kl_coef: cfg.loss.kl_coef,
            });
        }
        let batch = data.batch_for_step(self.optimizer.step + 1, cfg.batch_size, cfg.seed);
        let items: Vec<&Prepared> = batch.iter().map(|&i| &data.items[i]).collect();
        // Aggregation weights over the whole batch (trained positions only).
        let mut offsets = vec![0];
        for p in &items {
            offsets.push(offsets.last().expect("starts with 0") + p.positions.len());
        }
        let ones = vec![1.0f32; *offsets.last().expect("non-empty")];
        let weights = aggregation_weights(&ones, &offsets, cfg.loss.aggregation);

        let mut grads = Weights::zeros(&self.weights.config);
        let mut parts = Vec::with_capacity(items.len());
        let (mut entropy_sum, mut tokens) = (0.0f64, 0usize);
        for (s, p) in items.iter().enumerate() {
            tokens += p.tokens.len();
            if p.positions.is_empty() {
                continue;
            }
            let ref_logp = self
                .reference
                .as_ref()
                .filter(|_| cfg.loss.kl_coef > 0.0)
                .map(|r| next_token_logprobs(r, &p.tokens, &p.positions, cfg.temperature).0);
            let w_slice = &weights[offsets[s]..offsets[s + 1]];
            let adv = vec![p.advantage; p.positions.len()];
            let mask = vec![1.0f32; p.positions.len()];
            // The loss is computed chunk by chunk as the LM head produces log-probs;
            // with batch-wide weights the chunks add up to the batch loss exactly.
            let out = sequence_backward_per_token(
                &self.weights,
                &p.tokens,
                &p.positions,
                cfg.temperature,
                |rows, logp| {
                    let o = weighted_policy_loss(
                        logp,
                        &p.old_logp[rows.clone()],
                        ref_logp.as_ref().map(|r| &r[rows.clone()]),
                        &adv[rows.clone()],
                        &mask[rows.clone()],
                        &w_slice[rows],
                        &cfg.loss,
                    );
                    let d = o.dlogp.clone();
                    parts.push(o);
                    d
                },
                &mut grads,
            );
            entropy_sum += out.entropy.iter().map(|&e| e as f64).sum::<f64>();
        }
        let loss = PolicyLossOutput::merge(parts);
        let stats = self.optimizer.step(&mut self.weights, &mut grads);
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
            sequences: items.len(),
            tokens,
            trained_tokens: loss.tokens,
            seconds,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            no_signal: data.no_signal(&batch),
        })
    }
}
