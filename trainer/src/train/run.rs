//! The library entry point of `ssr train`: load a policy (GGUF file or checkpoint
//! directory) and a trajectory file, run steps, report each, write a checkpoint.
//!
//! `--model` semantics: a GGUF file starts a fresh run from its weights (dequantized
//! to f32); a checkpoint directory with optimizer state and a training config resumes
//! that run exactly (its step count, moments and settings; explicitly given settings
//! replace the saved ones); a weights-only checkpoint starts a fresh run.
//!
//! The steps run on the job's [`Device`] through [`Trainer`] (CUDA when present under
//! `auto`, else the CPU); [`PreparedJob::device`] says which, before the first step.
//!
//! Does not own: argument parsing and printing (`src/cli/train.rs`).

use super::session::{Dataset, StepMetrics, TrainConfig, TrainError, TrainSession};
use super::trainer::Trainer;
use crate::checkpoint::{self, CheckpointError};
use crate::device::{ActiveDevice, Device};
use crate::gguf::{self, GgufError};
use crate::rl::{AdvantageKind, Aggregation};
use crate::trajectory::{self, MixedTemperatures, TrajectoryError};
use crate::weights::Weights;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Why a training run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("model {path}: {source}")]
    Gguf { path: PathBuf, source: GgufError },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Trajectories(#[from] TrajectoryError),
    #[error("{path}: {source}")]
    Train {
        path: PathBuf,
        source: Box<TrainError>,
    },
    #[error("{0}")]
    Session(Box<TrainError>),
    #[error("{path}: {source}")]
    MixedTemperatures {
        path: PathBuf,
        source: MixedTemperatures,
    },
    /// `--temperature` given, and the trajectories record another one.
    #[error(
        "{path}: the trajectories were sampled at temperature {recorded}, but the temperature given is {given}; drop the flag (the recorded one is used) or give {recorded}"
    )]
    TemperatureConflict {
        path: PathBuf,
        given: f32,
        recorded: f32,
    },
}

impl From<TrainError> for RunError {
    fn from(e: TrainError) -> Self {
        RunError::Session(Box::new(e))
    }
}

/// A policy to train from.
#[derive(Debug)]
pub enum LoadedPolicy {
    /// Weights to start a fresh run from.
    Fresh(Weights),
    /// A run to continue.
    Resume(Box<TrainSession>),
}

/// Loads `path`: a checkpoint directory (resumable or weights-only), a directory of
/// checkpoints (`--keep-checkpoints`; its newest is loaded) or a GGUF file.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, RunError> {
    if path.is_dir()
        && !checkpoint::is_checkpoint(path)
        && let Some(latest) = checkpoint::latest_step(path)?
    {
        return load_policy(&latest);
    }
    if path.is_dir() {
        let ck = checkpoint::load(path)?;
        if ck.optimizer.is_some() {
            return TrainSession::from_checkpoint(ck)
                .map(|s| LoadedPolicy::Resume(Box::new(s)))
                .map_err(|source| RunError::Train {
                    path: path.to_path_buf(),
                    source: Box::new(source),
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

/// Settings given on the command line; `None` keeps the base value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOverrides {
    pub lr: Option<f32>,
    pub warmup_steps: Option<u64>,
    pub weight_decay: Option<f32>,
    /// `Some(None)` disables clipping.
    pub max_grad_norm: Option<Option<f32>>,
    pub clip_low: Option<f32>,
    pub clip_high: Option<f32>,
    pub kl_coef: Option<f32>,
    pub aggregation: Option<Aggregation>,
    pub advantage: Option<AdvantageKind>,
    pub temperature: Option<f32>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
}

impl TrainOverrides {
    /// `base` with every given setting replaced.
    pub fn apply(&self, mut base: TrainConfig) -> TrainConfig {
        let a = &mut base.adamw;
        set(&mut a.lr, self.lr);
        set(&mut a.warmup_steps, self.warmup_steps);
        set(&mut a.weight_decay, self.weight_decay);
        set(&mut a.max_grad_norm, self.max_grad_norm);
        let l = &mut base.loss;
        set(&mut l.clip_low, self.clip_low);
        set(&mut l.clip_high, self.clip_high);
        set(&mut l.kl_coef, self.kl_coef);
        set(&mut l.aggregation, self.aggregation);
        set(&mut base.advantage, self.advantage);
        set(&mut base.temperature, self.temperature);
        set(&mut base.batch_size, self.batch_size);
        set(&mut base.seed, self.seed);
        base
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
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
    /// Settings given explicitly; the rest come from the resumed checkpoint, or the
    /// defaults for a fresh run. The temperature recorded in the trajectories, when
    /// they record one, wins over both (and an explicit different one is an error).
    pub overrides: TrainOverrides,
    /// Reference model of the KL penalty (required when `kl_coef > 0`).
    pub reference: Option<PathBuf>,
    pub save_every: Option<u64>,
    /// `None`: `out` is the checkpoint, replaced at each save. `Some(k)`: `out` is a
    /// directory of checkpoints, one `step-N/` per save, of which the newest `k` are
    /// kept (`checkpoint::retain_last`).
    pub keep_checkpoints: Option<NonZeroUsize>,
    /// Where the steps run.
    pub device: Device,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: Vec<StepMetrics>,
    /// The checkpoint written last (`out`, or its newest `step-N/`).
    pub checkpoint: PathBuf,
    /// The run resumed a checkpoint (as opposed to starting fresh).
    pub resumed: bool,
    /// Optimizer step count after the run.
    pub final_step: u64,
    /// The device that ran the steps.
    pub device: ActiveDevice,
}

/// A job with its policy on its device and its trajectories validated: what
/// [`prepare_job`] returns, ready to [`PreparedJob::run`].
#[derive(Debug)]
pub struct PreparedJob {
    trainer: Trainer,
    data: Dataset,
    resumed: bool,
}

impl PreparedJob {
    /// The device the steps will run on.
    pub fn device(&self) -> &ActiveDevice {
        self.trainer.device()
    }

    /// Whether the job continues a checkpoint (as opposed to starting fresh).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Runs `job.steps` steps, calling `on_step` after each, writing the checkpoint
    /// every `save_every` steps and at the end.
    pub fn run(
        mut self,
        job: &TrainJob,
        mut on_step: impl FnMut(&StepMetrics),
    ) -> Result<RunSummary, RunError> {
        let mut steps = Vec::new();
        for i in 1..=job.steps {
            let m = self.trainer.step(&self.data)?;
            on_step(&m);
            steps.push(m);
            if job
                .save_every
                .is_some_and(|k| k > 0 && i % k == 0 && i < job.steps)
            {
                self.save(job)?;
            }
        }
        let checkpoint = self.save(job)?;
        Ok(RunSummary {
            steps,
            checkpoint,
            resumed: self.resumed,
            final_step: self.trainer.step_count(),
            device: self.trainer.device().clone(),
        })
    }
}

impl PreparedJob {
    /// Writes the checkpoint where the job keeps it (module doc of `TrainJob::out`),
    /// then applies the retention; returns the checkpoint's directory.
    fn save(&mut self, job: &TrainJob) -> Result<PathBuf, RunError> {
        let Some(keep) = job.keep_checkpoints else {
            self.trainer.save(&job.out)?;
            return Ok(job.out.clone());
        };
        let dir = job
            .out
            .join(checkpoint::step_dir_name(self.trainer.step_count()));
        self.trainer.save(&dir)?;
        checkpoint::retain_last(&job.out, keep)?;
        Ok(dir)
    }
}

/// Loads the policy, the reference and the trajectories, and moves the policy to the
/// job's device.
pub fn prepare_job(job: &TrainJob) -> Result<PreparedJob, RunError> {
    let (mut session, resumed) = match load_policy(&job.model)? {
        LoadedPolicy::Fresh(w) => {
            let config = job.overrides.apply(TrainConfig::default());
            (TrainSession::new(w, config), false)
        }
        LoadedPolicy::Resume(mut s) => {
            let config = job.overrides.apply(s.config.clone());
            s.set_config(config);
            (*s, true)
        }
    };
    if let Some(r) = &job.reference {
        session.set_reference(load_weights(r)?)?;
    }
    let trajectories = trajectory::read_trajectories(&job.trajectories)?;
    let path = || job.trajectories.clone();
    let recorded = trajectory::common_temperature(&trajectories).map_err(|source| {
        RunError::MixedTemperatures {
            path: path(),
            source,
        }
    })?;
    if let Some(recorded) = recorded {
        // The behaviour log-probs were computed at the recorded temperature: training at
        // another would make every importance ratio wrong (issue 14: a clip fraction of
        // 24% on the first step), so a different explicit setting is refused.
        if let Some(given) = job.overrides.temperature.filter(|&t| t != recorded) {
            return Err(RunError::TemperatureConflict {
                path: path(),
                given,
                recorded,
            });
        }
        let mut config = session.config.clone();
        config.temperature = recorded;
        session.set_config(config);
    }
    let c = &session.config;
    let data = Dataset::new(
        &trajectories,
        &session.weights.config,
        c.advantage,
        c.advantage_eps,
    )
    .map_err(|source| RunError::Train {
        path: job.trajectories.clone(),
        source: Box::new(source),
    })?;
    let trainer = Trainer::new(session, job.device).map_err(TrainError::from)?;
    Ok(PreparedJob {
        trainer,
        data,
        resumed,
    })
}

/// Runs a training job, calling `on_step` after every step ([`prepare_job`], then
/// [`PreparedJob::run`]).
pub fn run_job(job: &TrainJob, on_step: impl FnMut(&StepMetrics)) -> Result<RunSummary, RunError> {
    prepare_job(job)?.run(job, on_step)
}
