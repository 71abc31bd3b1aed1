//! The run directory (`runs/<id>/`, DESIGN.md "Run directory") and resuming from it.
//!
//! Layout:
//! ```text
//! run.json            metadata: id, seed, policy, creation time, resolved config
//! bugs/               the run's bug store (ssr-game's `BugStore`: artifact, report.json,
//!                     bug.json, higher_order.diff, attempts/<ep>.diff; verdict.json
//!                     only for a bug rejected without a report)
//! transcripts/<ep>.json   one per finished episode
//! episodes.jsonl      one line per finished episode: the resume index
//! trajectories.jsonl  the trainer's records, written when a round's rewards are final
//! metrics.jsonl       one line per finished round
//! report.html         written by `ssr report`
//! checkpoints/        trainer checkpoints after `--train` steps
//! ```
//! Every append is one `write` of a whole line followed by a flush, so a killed run
//! leaves at most one torn last line, which reading skips. Owns: paths, appends,
//! reading back. Does not own: what an episode or a round means (the orchestrator).

use crate::prompts::Strategy;
use crate::transcript::{EndKind, Transcript};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ssr_role::Role;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the run directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path} exists and belongs to another run (seed {found}, asked {asked})")]
    SeedMismatch {
        path: PathBuf,
        found: u64,
        asked: u64,
    },
}

/// The run's metadata (`run.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub id: String,
    /// The seed every other seed of the run derives from.
    pub seed: u64,
    pub policy: String,
    pub created_unix: u64,
    /// The resolved configuration, as used.
    pub config: Value,
    /// Times the run was started (1 + resumes).
    pub starts: u32,
}

/// One finished episode as the resume index records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    pub episode_id: String,
    pub round: u32,
    pub role: Role,
    /// The bug the episode made (injector) or attacked (solver).
    pub bug_id: Option<String>,
    pub group_id: String,
    /// Turns the model took.
    pub turns: u32,
    pub malformed_calls: u32,
    pub sampled_tokens: usize,
    pub total_tokens: usize,
    pub wall_ms: u64,
    pub end: EndKind,
    /// Solver: +1/−1 once evaluated. Injector: filled at round end. `None` for good
    /// when the episode is infra, or for an injector whose bug had too few scored
    /// attempts (`ssr_game::score`).
    pub reward: Option<f32>,
    /// The reward the trajectory trains on when it differs from `reward` (a failed
    /// attempt's patch-similarity score, `shaped_reward = "similarity"`). Solve counts
    /// and rates never read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_reward: Option<f32>,
    pub outcome: Outcome,
    /// Why the episode is an infrastructure failure (the model failed, the sandbox
    /// could not evaluate it): no reward, no trajectory, not in any solve rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<String>,
}

/// What an episode's judgement said, per role. Fields are in alphabetical order, the
/// order the index has always had on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    Solver(SolverOutcome),
    Injector(InjectorOutcome),
}

/// A solver attempt's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolverOutcome {
    pub evaluate_ms: u64,
    /// The attempt changed something (an empty patch cannot seed a higher-order bug).
    pub patch_nonempty: bool,
    pub solved: bool,
    pub summary: String,
}

/// An injector episode's verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InjectorOutcome {
    pub reason: Option<String>,
    pub strategy: Strategy,
    pub valid: bool,
}

/// A run directory, open for appending.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating) `root`. A directory holding another run's `run.json` with a
    /// different seed is refused.
    pub fn open(root: &Path) -> Result<Self, RunDirError> {
        for sub in ["bugs", "transcripts", "checkpoints"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|source| RunDirError::Io { path: p, source })?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The root of the run's bug store (`ssr-game`'s `BugStore` owns what is inside).
    pub fn bugs_root(&self) -> PathBuf {
        self.root.join("bugs")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn trajectories_path(&self) -> PathBuf {
        self.root.join("trajectories.jsonl")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn episodes_path(&self) -> PathBuf {
        self.root.join("episodes.jsonl")
    }
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.html")
    }
    pub fn transcript_path(&self, episode_id: &str) -> PathBuf {
        self.root
            .join("transcripts")
            .join(format!("{episode_id}.json"))
    }

    /// Reads `run.json`, if the run was started before.
    pub fn meta(&self) -> Result<Option<RunMeta>, RunDirError> {
        let path = self.root.join("run.json");
        match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| RunDirError::Format {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RunDirError::Io { path, source }),
        }
    }

    /// Writes `run.json` (atomically: write then rename).
    pub fn write_meta(&self, meta: &RunMeta) -> Result<(), RunDirError> {
        write_json_atomic(&self.root.join("run.json"), meta)
    }

    /// Stores a finished episode: its transcript, then its index line.
    pub fn record_episode(
        &self,
        transcript: &Transcript,
        record: &EpisodeRecord,
    ) -> Result<(), RunDirError> {
        write_json_atomic(&self.transcript_path(&transcript.episode_id), transcript)?;
        append_line(&self.episodes_path(), record)
    }

    /// Finished episodes by id (the last record of an id wins: rewards are re-recorded
    /// when a round ends).
    pub fn episodes(&self) -> Result<BTreeMap<String, EpisodeRecord>, RunDirError> {
        Ok(read_lines::<EpisodeRecord>(&self.episodes_path())?
            .into_iter()
            .map(|r| (r.episode_id.clone(), r))
            .collect())
    }

    pub fn transcript(&self, episode_id: &str) -> Result<Transcript, RunDirError> {
        let path = self.transcript_path(episode_id);
        let s = std::fs::read_to_string(&path).map_err(|source| RunDirError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&s).map_err(|e| RunDirError::Format {
            path,
            reason: e.to_string(),
        })
    }

    pub fn append_metrics(&self, m: &RoundMetrics) -> Result<(), RunDirError> {
        append_line(&self.metrics_path(), m)
    }

    pub fn metrics(&self) -> Result<Vec<RoundMetrics>, RunDirError> {
        read_lines(&self.metrics_path())
    }

    /// Drops trajectory and rejection-sampling lines of rounds that have no metrics
    /// line (a round killed while they were being written is redone whole on resume).
    pub fn trim_unfinished_trajectories(&self, finished_rounds: &[u32]) -> Result<(), RunDirError> {
        trim_unfinished(self.trajectories_path(), finished_rounds)?;
        trim_unfinished(self.rft_path(), finished_rounds)
    }
}

/// Keeps the lines of `path` whose `metadata.round` is a finished round.
fn trim_unfinished(path: PathBuf, finished_rounds: &[u32]) -> Result<(), RunDirError> {
    {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(RunDirError::Io { path, source }),
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["metadata"]["round"].as_u64())
                    .is_some_and(|r| finished_rounds.contains(&(r as u32)))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.len() != text.len() {
            write_atomic(&path, kept.as_bytes())?;
        }
        Ok(())
    }
}

impl RunDir {
    /// The rejection-sampling demonstrations (`rft = true`), the trainer's `Demo`
    /// records, one a line.
    pub fn rft_path(&self) -> PathBuf {
        self.root.join("rft.jsonl")
    }

    /// Appends rejection-sampling demonstrations.
    pub fn append_rft(&self, demos: &[ssr_trainer::train::Demo]) -> Result<(), RunDirError> {
        for d in demos {
            append_line(&self.rft_path(), d)?;
        }
        Ok(())
    }

    /// Appends trajectory records.
    pub fn append_trajectories(
        &self,
        records: &[ssr_trainer::trajectory::Trajectory],
    ) -> Result<(), RunDirError> {
        for r in records {
            append_line(&self.trajectories_path(), r)?;
        }
        Ok(())
    }
}

/// The metrics of one finished round (`metrics.jsonl`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoundMetrics {
    pub round: u32,
    pub injector_episodes: u32,
    /// Injector episodes that ended with a submitted artifact.
    pub model_submitted: u32,
    pub model_valid: u32,
    pub procedural_attempted: u32,
    pub procedural_valid: u32,
    /// Valid model bugs / model injector episodes.
    pub validity_rate: f64,
    pub higher_order_bugs: u32,
    pub solver_episodes: u32,
    pub solved: u32,
    /// Solved / scored solver attempts (infra attempts left out).
    pub solve_rate: f64,
    /// Solver attempts with no score (the model or the sandbox failed).
    pub infra_attempts: u32,
    /// Episodes, of both roles, whose model call failed (`policy_error`).
    pub model_failures: u32,
    /// Episodes of both roles that asked the model (the denominator of
    /// `model_failures`).
    pub model_episodes: u32,
    /// The first model failure's message, when there was one.
    pub model_error: Option<String>,
    /// Injector episodes with no reward: infra, or a valid bug with fewer than ⌈G/2⌉
    /// scored attempts.
    pub injectors_unrewarded: u32,
    pub mean_injector_reward: Option<f64>,
    pub mean_solver_reward: Option<f64>,
    pub mean_injector_turns: Option<f64>,
    pub mean_solver_turns: Option<f64>,
    pub malformed_calls: u32,
    pub sampled_tokens: u64,
    /// Wall time per phase (`inject`, `verify`, `solve`, `evaluate`, `train`), ms.
    pub phase_ms: BTreeMap<String, u64>,
    pub train_loss: Option<f64>,
    /// Fingerprint of the weights this round sampled from (with `--train`).
    #[serde(default)]
    pub weights_used: Option<String>,
    /// The round's training step (with `--train`).
    #[serde(default)]
    pub train: Option<TrainReport>,
    pub wall_ms: u64,
    /// Verification rejections by reason.
    pub rejections: BTreeMap<String, u32>,
    /// Finished episodes that gave no training record (a policy without token ids).
    pub trajectories_skipped: u32,
    /// Finished episodes left out of training because they have no reward (infra,
    /// or an injector without enough scored attempts).
    pub trajectories_unrewarded: u32,
    /// Unsolved episodes that ran out of turns, context or time, masked from the loss
    /// by compact filtering (`compact_filtering = true`; 0 otherwise).
    pub trajectories_truncated: u32,
    /// Solved attempts turned into supervised demonstrations (`rft = true`).
    pub rft_demos: u32,
    /// Valid bugs the held-out split took out of training (no attempts, no reward).
    #[serde(default)]
    pub held_out_excluded: u32,
    /// The held-out evaluation run after this round (`heldout_every`), when it ran.
    #[serde(default)]
    pub heldout: Option<crate::selfplay::heldout::HeldoutReport>,
}

/// What a training step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub loss: f64,
    pub grad_norm: f64,
    pub trained_tokens: usize,
    pub sequences: usize,
    /// Fingerprint of the weights after the step (the next round's policy).
    pub weights_after: String,
    /// Where the step's checkpoint was written.
    pub checkpoint: std::path::PathBuf,
    /// The device that ran the step (absent in runs recorded before it was kept).
    #[serde(default)]
    pub device: Option<ssr_trainer::ActiveDevice>,
    /// Set when the step had no learning signal (every advantage 0): the trainer's
    /// message. The weights then moved only by weight decay and momentum.
    #[serde(default)]
    pub no_signal: Option<String>,
    /// The supervised step on the round's own solved attempts (`rft = true`), when
    /// there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rft: Option<SftReport>,
}

/// What the rejection-sampling supervised step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftReport {
    /// Mean masked next-token loss before the update (nats per trained token).
    pub loss: f64,
    pub grad_norm: f64,
    pub sequences: usize,
    pub trained_tokens: usize,
}

fn append_line<T: Serialize>(path: &Path, value: &T) -> Result<(), RunDirError> {
    let mut line = serde_json::to_vec(value).map_err(|e| RunDirError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    let io = |source| RunDirError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(&line).map_err(io)?;
    f.flush().map_err(io)
}

/// Reads JSON lines, skipping a torn last line (a run killed mid-append).
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, RunDirError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RunDirError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(RunDirError::Format {
                    path: path.into(),
                    reason: format!("line {}: {e}", i + 1),
                });
            }
        }
    }
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    let tmp = path.with_extension("tmp");
    let io = |source| RunDirError::Io {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), RunDirError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RunDirError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path()).unwrap();
        run.append_metrics(&RoundMetrics {
            round: 0,
            ..Default::default()
        })
        .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run.metrics_path())
            .unwrap();
        f.write_all(b"{\"round\": 1, \"inj").unwrap();
        assert_eq!(run.metrics().unwrap().len(), 1);
    }
}
