//! The training step of `ssr selfplay --train`: the trainer's RL session over one
//! round's trajectories, then the new weights go into the embedded engine, so the next
//! round samples from them, and a checkpoint is written.
//!
//! Owns: the glue (session lifetime, weight hand-over, checkpoint per round). Does not
//! own: the maths (`ssr-trainer`).

use super::TrainStep;
use ssr_trainer::infer::Engine;
use ssr_trainer::train::{Dataset, TrainConfig, TrainSession};
use ssr_trainer::trajectory::Trajectory;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// Trains the embedded engine's weights in place.
pub struct EngineTrainer {
    engine: Arc<RwLock<Engine>>,
    session: Mutex<TrainSession>,
    checkpoints: PathBuf,
}

impl EngineTrainer {
    /// A session starting from the engine's current weights (or resuming the latest
    /// checkpoint in `checkpoints`).
    pub fn new(
        engine: Arc<RwLock<Engine>>,
        learning_rate: f32,
        temperature: f32,
        seed: u64,
        checkpoints: PathBuf,
    ) -> Result<Self, String> {
        let latest = latest_checkpoint(&checkpoints);
        let session = match latest {
            Some(dir) => {
                let s = TrainSession::resume(&dir)
                    .map_err(|e| format!("resuming {}: {e}", dir.display()))?;
                engine
                    .write()
                    .map_err(|_| "engine lock poisoned".to_string())?
                    .set_weights(s.weights.clone())
                    .map_err(|e| e.to_string())?;
                s
            }
            None => {
                let weights = engine
                    .read()
                    .map_err(|_| "engine lock poisoned".to_string())?
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
        Ok(EngineTrainer {
            engine,
            session: Mutex::new(session),
            checkpoints,
        })
    }
}

/// The checkpoint directory with the highest round number, `round-NNNN`.
fn latest_checkpoint(root: &std::path::Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("round-"))
                && ssr_trainer::checkpoint::is_checkpoint(p)
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

impl TrainStep for EngineTrainer {
    fn step(&self, round: u32, trajectories: &[Trajectory]) -> Result<f64, String> {
        let mut session = self
            .session
            .lock()
            .map_err(|_| "training session lock poisoned".to_string())?;
        // Trajectories whose sampled tokens are all masked or whose logprobs are
        // unknown cannot train; the session refuses a batch with no trainable token.
        let usable: Vec<Trajectory> = trajectories
            .iter()
            .filter(|t| t.metadata["logprobs_known"] != false && t.loss_mask.contains(&1))
            .cloned()
            .collect();
        if usable.is_empty() {
            return Err(
                "no trajectory of this round has sampled tokens with known logprobs".into(),
            );
        }
        let cfg = session.config.clone();
        let data = Dataset::new(
            &usable,
            &session.weights.config,
            cfg.advantage,
            cfg.advantage_eps,
        )
        .map_err(|e| e.to_string())?;
        let metrics = session.step(&data).map_err(|e| e.to_string())?;
        self.engine
            .write()
            .map_err(|_| "engine lock poisoned".to_string())?
            .set_weights(session.weights.clone())
            .map_err(|e| e.to_string())?;
        session
            .save(&self.checkpoints.join(format!("round-{round:04}")))
            .map_err(|e| e.to_string())?;
        Ok(f64::from(metrics.loss))
    }
}
