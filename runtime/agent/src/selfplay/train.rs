//! The training step of `ssr selfplay --train`: the trainer's RL session over one
//! round's trajectories, then the new weights go into the embedded engine, so the next
//! round samples from them, and a checkpoint is written.
//!
//! Owns: the glue (session lifetime, weight hand-over, checkpoint per round, the
//! weights' fingerprint that shows which weights a round sampled from). Does not own:
//! the maths (`ssr-trainer`).

use super::{TrainReport, TrainStep};
use crate::rundir::SftReport;
use crate::trajectory::TrajectoryMeta;
use sha2::{Digest, Sha256};
use ssr_trainer::DeviceError;
use ssr_trainer::infer::{Engine, EngineError};
use ssr_trainer::train::{
    Dataset, Demo, StepMetrics, TrainConfig, TrainError, TrainSession, Trainer,
};
use ssr_trainer::trajectory::Trajectory;
use ssr_trainer::weights::Weights;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// The one place the self-play run calls the trainer for an optimizer step.
///
/// Why a function of its own: the device (CUDA when usable, else the CPU, chosen when
/// the [`Trainer`] was made) stays behind this one call.
pub fn train_step(session: &mut Trainer, data: &Dataset) -> Result<StepMetrics, TrainError> {
    session.step(data)
}

/// SHA-256 over every parameter tensor (name, then its f32 bytes), in the weights'
/// fixed order: equal fingerprints mean equal weights.
pub fn weights_fingerprint(weights: &Weights) -> String {
    let mut h = Sha256::new();
    weights.for_each(|name, t| {
        h.update(name.as_bytes());
        for x in t {
            h.update(x.to_le_bytes());
        }
    });
    hex::encode(&h.finalize()[..12])
}

/// Why a training step (or setting one up) failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainStepError {
    #[error("resuming {path}: {source}")]
    Resume {
        path: PathBuf,
        #[source]
        source: Box<TrainError>,
    },
    // Boxed: the trainer's error is large, and this one travels in every round's result.
    #[error(transparent)]
    Train(Box<TrainError>),
    #[error("the engine refused the weights: {0}")]
    Engine(#[from] EngineError),
    #[error("no training device: {0}")]
    Device(#[from] DeviceError),
    #[error("the {0} lock is poisoned (a training step panicked)")]
    Poisoned(&'static str),
    #[error("no trajectory of this round has sampled tokens with known logprobs")]
    NothingToTrain,
    #[error("removing old checkpoints in {dir} (keep_checkpoints): {source}")]
    Retain {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<TrainError> for TrainStepError {
    fn from(e: TrainError) -> Self {
        TrainStepError::Train(Box::new(e))
    }
}

/// Trains the embedded engine's weights in place.
pub struct EngineTrainer {
    engine: Arc<RwLock<Engine>>,
    session: Mutex<Trainer>,
    checkpoints: PathBuf,
    keep: std::num::NonZeroUsize,
}

impl EngineTrainer {
    /// A session starting from the engine's current weights (or resuming the latest
    /// checkpoint in `checkpoints`).
    pub fn new(
        engine: Arc<RwLock<Engine>>,
        settings: &super::SelfPlayConfig,
        checkpoints: PathBuf,
    ) -> Result<Self, TrainStepError> {
        let (learning_rate, temperature, seed) =
            (settings.learning_rate, settings.temperature, settings.seed);
        let latest = latest_checkpoint(&checkpoints);
        let session = match latest {
            Some(dir) => {
                let s = TrainSession::resume(&dir).map_err(|source| TrainStepError::Resume {
                    path: dir.clone(),
                    source: Box::new(source),
                })?;
                engine
                    .write()
                    .map_err(|_| TrainStepError::Poisoned("engine"))?
                    .set_weights(s.weights.clone())?;
                s
            }
            None => {
                let weights = engine
                    .read()
                    .map_err(|_| TrainStepError::Poisoned("engine"))?
                    .weights()
                    .clone();
                // The behaviour logprobs were computed at the sampling temperature.
                let mut cfg = TrainConfig {
                    seed,
                    temperature,
                    ..TrainConfig::default()
                };
                cfg.adamw.lr = learning_rate;
                TrainSession::new(weights, cfg)
            }
        };
        // The run's device (`auto`: CUDA device 0 when usable, else the CPU): same
        // steps, same checkpoints.
        let session = Trainer::new(session, settings.device)?;
        Ok(EngineTrainer {
            engine,
            session: Mutex::new(session),
            checkpoints,
            keep: settings.keep_checkpoints,
        })
    }
}

/// The checkpoint directory with the highest round number, `round-NNNN`.
fn latest_checkpoint(root: &std::path::Path) -> Option<PathBuf> {
    round_checkpoints(root).pop()
}

/// Deletes every round checkpoint but the newest `keep` (the retention setting).
fn retain_newest(root: &std::path::Path, keep: std::num::NonZeroUsize) -> std::io::Result<()> {
    let dirs = round_checkpoints(root);
    let excess = dirs.len().saturating_sub(keep.get());
    for old in &dirs[..excess] {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}

/// The `round-NNNN` checkpoints under `root`, oldest first (the zero-padded names
/// sort by round).
fn round_checkpoints(root: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("round-"))
                && ssr_trainer::checkpoint::is_checkpoint(p)
        })
        .collect();
    dirs.sort();
    dirs
}

impl TrainStep for EngineTrainer {
    fn fingerprint(&self) -> Option<String> {
        let engine = self.engine.read().ok()?;
        Some(weights_fingerprint(engine.weights()))
    }

    fn step(
        &self,
        round: u32,
        trajectories: &[Trajectory],
        demos: &[Demo],
    ) -> Result<TrainReport, TrainStepError> {
        let mut session = self
            .session
            .lock()
            .map_err(|_| TrainStepError::Poisoned("training session"))?;
        // Trajectories whose sampled tokens are all masked or whose logprobs are
        // unknown cannot train; the session refuses a batch with no trainable token.
        let usable: Vec<Trajectory> = trajectories
            .iter()
            .filter(|t| t.logprobs_known() && t.loss_mask.contains(&1))
            .cloned()
            .collect();
        if usable.is_empty() {
            return Err(TrainStepError::NothingToTrain);
        }
        let cfg = session.config().clone();
        let data = Dataset::new(
            &usable,
            session.model_config(),
            cfg.advantage,
            cfg.advantage_eps,
        )?;
        let metrics = train_step(&mut session, &data)?;
        // Rejection sampling: the same optimizer, one supervised step on the round's
        // own solved attempts (`rft = true`), before the weights go to the engine.
        let rft = match demos {
            [] => None,
            demos => {
                let m = session.sft_step(demos)?;
                Some(SftReport {
                    loss: f64::from(m.loss),
                    grad_norm: f64::from(m.grad_norm),
                    sequences: m.sequences,
                    trained_tokens: m.trained_tokens,
                })
            }
        };
        let weights = session.weights()?.clone();
        let fingerprint = weights_fingerprint(&weights);
        self.engine
            .write()
            .map_err(|_| TrainStepError::Poisoned("engine"))?
            .set_weights(weights)?;
        let checkpoint = self.checkpoints.join(format!("round-{round:04}"));
        session.save(&checkpoint)?;
        retain_newest(&self.checkpoints, self.keep).map_err(|source| TrainStepError::Retain {
            dir: self.checkpoints.clone(),
            source,
        })?;
        Ok(TrainReport {
            loss: f64::from(metrics.loss),
            grad_norm: f64::from(metrics.grad_norm),
            trained_tokens: metrics.trained_tokens,
            sequences: metrics.sequences,
            weights_after: fingerprint,
            checkpoint,
            device: Some(session.device().clone()),
            no_signal: metrics.no_signal.as_ref().map(ToString::to_string),
            rft,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_round_checkpoints_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        for round in [0u32, 1, 2, 10] {
            let ck = dir.path().join(format!("round-{round:04}"));
            std::fs::create_dir_all(&ck).unwrap();
            std::fs::write(ck.join(ssr_trainer::checkpoint::MODEL_FILE), b"").unwrap();
        }
        // Not a checkpoint (no model file): never deleted.
        std::fs::create_dir_all(dir.path().join("round-0003")).unwrap();
        let keep = std::num::NonZeroUsize::new(2).unwrap();
        retain_newest(dir.path(), keep).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["round-0002", "round-0003", "round-0010"]);
        assert_eq!(
            latest_checkpoint(dir.path()).unwrap(),
            dir.path().join("round-0010")
        );
    }
}
