//! Supervised fine-tuning on demonstrations (the warm start): the masked next-token
//! loss on the tokens a demonstration's mask marks (the assistant's), through the same
//! training forward, fused LM head, backward and AdamW as an RL step.
//!
//! Owns: the demonstration record ([`Demo`], JSON lines: `token_ids`, `loss_mask`,
//! optional `metadata`; the trajectory format without the RL fields), its validation
//! and reading, and [`TrainSession::sft_step`]. Does not own: how demonstrations are
//! built from bugs (the game and agent side), the model maths (`train::sequence`).
//!
//! Loss: the mean over every masked token of the batch of `-log p(token | prefix)` at
//! temperature 1, so long and short demonstrations weigh by their token counts.

use super::sequence::sequence_backward_per_token;
use super::session::{TrainError, TrainSession};
use crate::trajectory::InvalidTrajectory;
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One demonstration, as stored on one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demo {
    /// The whole conversation: prompt, assistant turns, tool observations.
    pub token_ids: Vec<u32>,
    /// 1 for the tokens to learn (the assistant's), 0 elsewhere; same length.
    pub loss_mask: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl Demo {
    /// The format's rules: non-empty, mask as long as the ids, 0/1, first token not
    /// trained (it has no context), ids within the vocabulary.
    pub fn validate(&self, vocab: usize) -> Result<(), InvalidTrajectory> {
        let n = self.token_ids.len();
        if n == 0 {
            return Err(InvalidTrajectory::Empty);
        }
        if self.loss_mask.len() != n {
            return Err(InvalidTrajectory::Length {
                field: "loss_mask",
                expected: n,
                found: self.loss_mask.len(),
            });
        }
        if let Some((index, &value)) = self.loss_mask.iter().enumerate().find(|(_, m)| **m > 1) {
            return Err(InvalidTrajectory::MaskValue { index, value });
        }
        if self.loss_mask[0] == 1 {
            return Err(InvalidTrajectory::FirstTokenMasked);
        }
        if let Some((index, &token)) = self
            .token_ids
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab)
        {
            return Err(InvalidTrajectory::Token {
                index,
                token,
                vocab,
            });
        }
        Ok(())
    }

    /// Positions trained on (mask 1).
    fn positions(&self) -> Vec<usize> {
        (0..self.token_ids.len())
            .filter(|&i| self.loss_mask[i] == 1)
            .collect()
    }
}

/// Why a demonstration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed demonstration: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: invalid demonstration: {source}")]
    Invalid {
        path: PathBuf,
        line: usize,
        source: InvalidTrajectory,
    },
}

/// Reads demonstrations (JSON lines; blank lines skipped) and validates them for a
/// vocabulary of `vocab` tokens.
pub fn read_demos(path: &Path, vocab: usize) -> Result<Vec<Demo>, DemoError> {
    let f = std::fs::File::open(path).map_err(|source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| DemoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let d: Demo = serde_json::from_str(&line).map_err(|source| DemoError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        d.validate(vocab).map_err(|source| DemoError::Invalid {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        out.push(d);
    }
    Ok(out)
}

/// What one supervised step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftMetrics {
    /// 1-based optimizer step (shared with RL steps: one optimizer).
    pub step: u64,
    /// Mean masked next-token loss before the update (nats per trained token).
    pub loss: f32,
    pub grad_norm: f32,
    pub lr: f32,
    pub sequences: usize,
    /// Tokens forwarded, and trained on (mask 1).
    pub tokens: usize,
    pub trained_tokens: usize,
    pub seconds: f64,
}

impl TrainSession {
    /// One AdamW step on the masked supervised loss over every demonstration of `demos`
    /// (already validated, e.g. by [`read_demos`]).
    pub fn sft_step(&mut self, demos: &[Demo]) -> Result<SftMetrics, TrainError> {
        let started = Instant::now();
        let max = self.weights.config.max_seq_len;
        for (index, d) in demos.iter().enumerate() {
            d.validate(self.weights.config.vocab_size)
                .map_err(|source| TrainError::Trajectory { index, source })?;
            if d.token_ids.len() > max {
                return Err(TrainError::TooLong {
                    index,
                    len: d.token_ids.len(),
                    max,
                });
            }
        }
        let positions: Vec<Vec<usize>> = demos.iter().map(Demo::positions).collect();
        let trained: usize = positions.iter().map(Vec::len).sum();
        if trained == 0 {
            return Err(TrainError::NoTrainableTokens);
        }
        let scale = 1.0 / trained as f32;
        let mut grads = Weights::zeros(&self.weights.config);
        let mut nll = 0.0f64;
        for (d, pos) in demos.iter().zip(&positions) {
            if pos.is_empty() {
                continue;
            }
            sequence_backward_per_token(
                &self.weights,
                &d.token_ids,
                pos,
                1.0,
                |_, logp| {
                    nll -= logp.iter().map(|&l| l as f64).sum::<f64>();
                    vec![-scale; logp.len()]
                },
                &mut grads,
            );
        }
        let stats = self.optimizer.step(&mut self.weights, &mut grads);
        Ok(SftMetrics {
            step: stats.step,
            loss: (nll / trained as f64) as f32,
            grad_norm: stats.grad_norm,
            lr: stats.lr,
            sequences: demos.len(),
            tokens: demos.iter().map(|d| d.token_ids.len()).sum(),
            trained_tokens: trained,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
