//! The library entry point of `ssr train`: load a policy (GGUF file or checkpoint
//! directory) and a trajectory file, run steps, report each, write a checkpoint.
//!
//! `--model` semantics: a GGUF file starts a fresh run from its weights (dequantized
//! to f32); a checkpoint directory with optimizer state and a training config resumes
//! that run exactly (its step count, moments and settings; explicitly given settings
//! replace the saved ones); a weights-only checkpoint starts a fresh run.
//!
//! Does not own: argument parsing and printing (`src/cli/train.rs`).

use super::session::{Dataset, StepMetrics, TrainConfig, TrainError, TrainSession};
use crate::checkpoint::{self, CheckpointError};
use crate::gguf::{self, GgufError};
use crate::trajectory::{self, TrajectoryError};
use crate::weights::Weights;
use std::path::{Path, PathBuf};

/// Why a training run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("model {path}: {source}")]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Trajectories(#[from] TrajectoryError),
    #[error("{path}: {source}")]
    Train {
        path: PathBuf,
        #[source]
        source: TrainError,
    },
    #[error("{0}")]
    Session(#[from] TrainError),
}

/// A policy to train from.
#[derive(Debug)]
pub enum LoadedPolicy {
    /// Weights to start a fresh run from.
    Fresh(Weights),
    /// A run to continue.
    Resume(Box<TrainSession>),
}

/// Loads `path`: a checkpoint directory (resumable or weights-only) or a GGUF file.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, RunError> {
    if path.is_dir() {
        let ck = checkpoint::load(path)?;
        if ck.optimizer.is_some() {
            return TrainSession::from_checkpoint(ck)
                .map(|s| LoadedPolicy::Resume(Box::new(s)))
                .map_err(|source| RunError::Train {
                    path: path.to_path_buf(),
                    source,
                });
        }
        return Ok(LoadedPolicy::Fresh(ck.weights));
    }
    gguf::load_model(path)
        .map(|(_, w)| LoadedPolicy::Fresh(w))
        .map_err(|source| RunError::Gguf {
            path: path.to_path_buf(),
            source,
        })
}

/// Loads weights only (a reference model for the KL penalty).
pub fn load_weights(path: &Path) -> Result<Weights, RunError> {
    Ok(match load_policy(path)? {
        LoadedPolicy::Fresh(w) => w,
        LoadedPolicy::Resume(s) => s.weights,
    })
}

/// Everything one `ssr train` run needs.
#[derive(Clone, Debug)]
pub struct TrainJob {
    pub trajectories: PathBuf,
    pub model: PathBuf,
    /// Checkpoint directory written at the end (and every `save_every` steps).
    pub out: PathBuf,
    /// Steps to take in this run.
    pub steps: u64,
    /// Settings for a fresh run; for a resumed run `None` keeps the saved ones.
    pub config: Option<TrainConfig>,
    /// Reference model of the KL penalty (required when `kl_coef > 0`).
    pub reference: Option<PathBuf>,
    pub save_every: Option<u64>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: Vec<StepMetrics>,
    /// The run resumed a checkpoint (as opposed to starting fresh).
    pub resumed: bool,
    /// Optimizer step count after the run.
    pub final_step: u64,
}

/// Runs a training job, calling `on_step` after every step.
pub fn run_job(
    job: &TrainJob,
    mut on_step: impl FnMut(&StepMetrics),
) -> Result<RunSummary, RunError> {
    let (mut session, resumed) = match load_policy(&job.model)? {
        LoadedPolicy::Fresh(w) => (
            TrainSession::new(w, job.config.clone().unwrap_or_default()),
            false,
        ),
        LoadedPolicy::Resume(mut s) => {
            if let Some(c) = &job.config {
                s.set_config(c.clone());
            }
            (*s, true)
        }
    };
    if let Some(r) = &job.reference {
        session.set_reference(load_weights(r)?)?;
    }
    let trajectories = trajectory::read_trajectories(&job.trajectories)?;
    let c = &session.config;
    let data = Dataset::new(
        &trajectories,
        &session.weights.config,
        c.advantage,
        c.advantage_eps,
    )
    .map_err(|source| RunError::Train {
        path: job.trajectories.clone(),
        source,
    })?;
    let mut steps = Vec::new();
    for i in 1..=job.steps {
        let m = session.step(&data)?;
        on_step(&m);
        steps.push(m);
        if job
            .save_every
            .is_some_and(|k| k > 0 && i % k == 0 && i < job.steps)
        {
            session.save(&job.out)?;
        }
    }
    session.save(&job.out)?;
    Ok(RunSummary {
        steps,
        resumed,
        final_step: session.step_count(),
    })
}
