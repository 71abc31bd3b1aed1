//! The trajectory file: what self-play rollouts hand to the trainer.
//!
//! # Format (JSON lines)
//! One JSON object per line, UTF-8; blank lines are skipped. Fields:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `role` | `"injector"` \| `"solver"` | which role produced the rollout |
//! | `group_id` | string | rollouts sharing a prompt (attempts on one bug, injections on one repository); advantages are computed within a group |
//! | `token_ids` | array of u32 | the whole sequence: prompt, model output, tool observations |
//! | `loss_mask` | array of 0/1 | 1 for tokens the policy generated (trained on), 0 for prompt and observations; same length as `token_ids` |
//! | `logprobs` | array of f32 | behaviour-policy log-prob of each token under the sampling temperature, aligned with `token_ids`; 0 where the mask is 0 (ignored there) |
//! | `reward` | f32 | the rollout's scalar reward |
//! | `advantage` | f32, optional | a precomputed advantage; when absent the trainer computes one from the group's rewards |
//! | `temperature` | f32, optional | the sampling temperature `logprobs` were computed at (0 = greedy, whose log-probs are at temperature 1); `ssr train` trains at it. Absent in files written before it was recorded |
//! | `top_p` | f32 in (0, 1], optional | the nucleus the token was drawn from; recorded for the record: `logprobs` are over the whole vocabulary either way |
//! | `metadata` | object, optional | free-form (episode id, bug id, policy version, ...); carried, never interpreted |
//!
//! Token `i`'s log-prob is the probability of `token_ids[i]` given `token_ids[..i]`,
//! so `loss_mask[0]` must be 0 (the first token has no context). Unknown fields are
//! rejected so that a typo does not silently drop data.
//!
//! Example:
//! ```json
//! {"role":"solver","group_id":"bug-17","token_ids":[1,42,7,9],"loss_mask":[0,0,1,1],"logprobs":[0,0,-0.5,-1.25],"reward":1.0,"metadata":{"episode":"e3"}}
//! ```
//!
//! Owns: the record type, its validation, reading and writing. Does not own: how
//! episodes become tokens (`ssr-agent`) or rewards (`ssr-game`).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Which self-play role produced a rollout (owned by `ssr-role`; its spelling is
/// the lowercase one the records always had).
pub use ssr_role::Role;

/// One rollout, as stored on one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trajectory {
    pub role: Role,
    pub group_id: String,
    pub token_ids: Vec<u32>,
    pub loss_mask: Vec<u8>,
    pub logprobs: Vec<f32>,
    pub reward: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advantage: Option<f32>,
    /// Sampling temperature of `logprobs` (0: greedy); `None` in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus (top-p) of the sampling, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn is_empty_object(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// A record that parses but breaks a rule of the format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidTrajectory {
    #[error("token_ids is empty")]
    Empty,
    #[error("{field} has {found} entries but token_ids has {expected}")]
    Length {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("loss_mask[{index}] is {value}; only 0 and 1 are allowed")]
    MaskValue { index: usize, value: u8 },
    #[error("loss_mask[0] is 1 but the first token has no context to be predicted from")]
    FirstTokenMasked,
    #[error("logprobs[{index}] = {value} is not a log-probability (finite and <= 0)")]
    Logprob { index: usize, value: f32 },
    #[error("{field} is not finite")]
    NotFinite { field: &'static str },
    #[error("metadata must be a JSON object")]
    Metadata,
    #[error("temperature {0} is not a sampling temperature (finite and >= 0)")]
    Temperature(f32),
    #[error("top_p {0} is outside (0, 1]")]
    TopP(f32),
    #[error("token id {token} at {index} is outside the vocabulary ({vocab})")]
    Token {
        index: usize,
        token: u32,
        vocab: usize,
    },
}

/// Why a trajectory file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrajectoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed trajectory: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: invalid trajectory: {source}")]
    Invalid {
        path: PathBuf,
        line: usize,
        source: InvalidTrajectory,
    },
}

impl Trajectory {
    /// Checks the rules of the format (lengths, mask values, log-prob range).
    pub fn validate(&self) -> Result<(), InvalidTrajectory> {
        let n = self.token_ids.len();
        if n == 0 {
            return Err(InvalidTrajectory::Empty);
        }
        for (field, found) in [
            ("loss_mask", self.loss_mask.len()),
            ("logprobs", self.logprobs.len()),
        ] {
            if found != n {
                return Err(InvalidTrajectory::Length {
                    field,
                    expected: n,
                    found,
                });
            }
        }
        if let Some((index, &value)) = self.loss_mask.iter().enumerate().find(|(_, m)| **m > 1) {
            return Err(InvalidTrajectory::MaskValue { index, value });
        }
        if self.loss_mask[0] == 1 {
            return Err(InvalidTrajectory::FirstTokenMasked);
        }
        for (index, (&lp, &m)) in self.logprobs.iter().zip(&self.loss_mask).enumerate() {
            // A tiny positive value is f32 rounding of log(1), not an error.
            if m == 1 && !(lp.is_finite() && lp <= 1e-4) {
                return Err(InvalidTrajectory::Logprob { index, value: lp });
            }
        }
        if !self.reward.is_finite() {
            return Err(InvalidTrajectory::NotFinite { field: "reward" });
        }
        if self.advantage.is_some_and(|a| !a.is_finite()) {
            return Err(InvalidTrajectory::NotFinite { field: "advantage" });
        }
        if !self.metadata.is_object() {
            return Err(InvalidTrajectory::Metadata);
        }
        if let Some(t) = self.temperature.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(InvalidTrajectory::Temperature(t));
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(InvalidTrajectory::TopP(p));
        }
        Ok(())
    }

    /// Checks that every token id fits a vocabulary of `vocab` entries.
    pub fn check_vocab(&self, vocab: usize) -> Result<(), InvalidTrajectory> {
        match self
            .token_ids
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab)
        {
            Some((index, &token)) => Err(InvalidTrajectory::Token {
                index,
                token,
                vocab,
            }),
            None => Ok(()),
        }
    }

    /// The temperature to train this record's log-probs at: the recorded sampling
    /// temperature, with greedy (0) read as 1 (the sampler reports greedy log-probs
    /// untempered); `None` when none was recorded.
    pub fn training_temperature(&self) -> Option<f32> {
        self.temperature.map(|t| if t > 0.0 { t } else { 1.0 })
    }

    /// Tokens the policy generated (mask 1).
    pub fn trained_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m == 1).count()
    }
}

/// Records of one file that disagree on the temperature their log-probs were sampled
/// at (one training step uses one temperature).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "trajectory {index} was sampled at temperature {found}, trajectory {first_index} at {first}; train them separately"
)]
pub struct MixedTemperatures {
    pub first_index: usize,
    /// `"none recorded"` or the temperature, as printed.
    pub first: String,
    pub index: usize,
    pub found: String,
}

/// The one training temperature the records carry ([`Trajectory::training_temperature`]),
/// `None` when none records one; an error when they differ, or when some record one
/// and others do not.
pub fn common_temperature(records: &[Trajectory]) -> Result<Option<f32>, MixedTemperatures> {
    let show = |t: Option<f32>| t.map_or_else(|| "none recorded".to_string(), |t| t.to_string());
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let want = first.training_temperature();
    for (index, r) in records.iter().enumerate().skip(1) {
        let got = r.training_temperature();
        if got != want {
            return Err(MixedTemperatures {
                first_index: 0,
                first: show(want),
                index,
                found: show(got),
            });
        }
    }
    Ok(want)
}

/// Parses trajectories from JSON lines; `path` names the source in errors.
pub fn parse_trajectories(
    reader: impl BufRead,
    path: &Path,
) -> Result<Vec<Trajectory>, TrajectoryError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|source| TrajectoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let t: Trajectory =
            serde_json::from_str(&line).map_err(|source| TrajectoryError::Parse {
                path: path.to_path_buf(),
                line: line_no,
                source,
            })?;
        t.validate().map_err(|source| TrajectoryError::Invalid {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        out.push(t);
    }
    Ok(out)
}

/// Reads and validates a trajectory file.
pub fn read_trajectories(path: &Path) -> Result<Vec<Trajectory>, TrajectoryError> {
    let f = std::fs::File::open(path).map_err(|source| TrajectoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_trajectories(std::io::BufReader::new(f), path)
}

/// Writes trajectories as JSON lines (one object per line), replacing the file.
pub fn write_trajectories(path: &Path, trajectories: &[Trajectory]) -> Result<(), TrajectoryError> {
    let io = |source| TrajectoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    for t in trajectories {
        append_trajectory(&mut w, t).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Appends one trajectory as a line to `w` (for writers that stream rollouts).
pub fn append_trajectory(w: &mut impl Write, t: &Trajectory) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, t)?;
    w.write_all(b"\n")
}
