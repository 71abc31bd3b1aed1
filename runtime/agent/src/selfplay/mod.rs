//! The self-play orchestrator: rounds of injection, verification, G solver attempts
//! per valid bug, evaluation, rewards, higher-order bugs, trajectories and (with
//! training) a policy update.
//!
//! Owns: the order of phases, concurrency (a semaphore bounds running episodes; every
//! spawned task lives in a `JoinSet` owned by its phase, which awaits it), episode
//! ids and seeds derived from the run seed, resuming from the run directory (an
//! episode is finished once its line is in `episodes.jsonl`), rewards per role, and
//! the round's metrics. Does not own: the rules (behind [`Arena`]), the model (behind
//! [`Policy`]), the training step (behind [`TrainStep`]).

pub mod arena;
pub mod config;
pub mod game_arena;
pub mod progress;
pub mod train;

use crate::episode::{EpisodeSpec, run_episode};
use crate::policy::{Policy, Sampling};
use crate::prompts;
pub use crate::rundir::TrainReport;
use crate::rundir::{EpisodeRecord, RoundMetrics, RunDir, RunDirError, write_json_atomic};
use crate::shutdown::Shutdown;
use crate::trajectory::to_trajectory;
use crate::transcript::{EpisodeEnd, Transcript};
pub use arena::{Arena, ArenaError, BugSource, SolveOutcome, Verdict, World};
pub use config::{InjectorRewardKind, SelfPlayConfig};
use rand::SeedableRng;
use serde_json::json;
use sha2::{Digest, Sha256};
use ssr_trainer::trajectory::Trajectory;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Progress callbacks (the CLI draws bars on stderr; tests ignore them).
pub trait Progress: Send + Sync {
    fn phase(&self, round: u32, phase: &str, total: u64);
    fn tick(&self, message: &str);
}

/// Progress that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {
    fn phase(&self, _: u32, _: &str, _: u64) {}
    fn tick(&self, _: &str) {}
}

/// A training step over one round's trajectories; it updates the policy's weights in
/// place so the next round samples from them. Blocking (runs on a blocking thread).
pub trait TrainStep: Send + Sync {
    /// A fingerprint of the weights the policy samples from now (recorded per round,
    /// so a run shows that round N+1 used the weights round N's step made).
    fn fingerprint(&self) -> Option<String>;
    fn step(&self, round: u32, trajectories: &[Trajectory]) -> Result<TrainReport, String>;
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SelfPlayError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Arena(#[from] ArenaError),
    #[error("training step of round {round}: {reason}")]
    Train { round: u32, reason: String },
    #[error("an episode task failed: {0}")]
    Task(String),
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every round finished.
    Finished,
    /// Stopped by shutdown; finished episodes are kept and `--resume` continues.
    Interrupted,
}

/// A seed for `what`, derived from the run seed (stable across resumes).
pub fn derive_seed(seed: u64, what: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(what.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// Everything a self-play run needs.
pub struct SelfPlay {
    pub config: SelfPlayConfig,
    pub policy: Arc<dyn Policy>,
    pub arena: Arc<dyn Arena>,
    pub run: RunDir,
    pub shutdown: Shutdown,
    pub progress: Arc<dyn Progress>,
    pub trainer: Option<Arc<dyn TrainStep>>,
}

/// One episode finished in this process or loaded from the run directory.
struct Done {
    record: EpisodeRecord,
    transcript: Option<Transcript>,
}

impl SelfPlay {
    /// Runs the rounds not yet finished in the run directory.
    pub async fn run(&self) -> Result<RunOutcome, SelfPlayError> {
        let finished: Vec<u32> = self.run.metrics()?.iter().map(|m| m.round).collect();
        self.run.trim_unfinished_trajectories(&finished)?;
        for round in 0..self.config.rounds {
            if finished.contains(&round) {
                continue;
            }
            if self.shutdown.is_requested() {
                return Ok(RunOutcome::Interrupted);
            }
            if self.round(round).await? == RunOutcome::Interrupted {
                return Ok(RunOutcome::Interrupted);
            }
        }
        Ok(RunOutcome::Finished)
    }

    fn sampling(&self, episode_id: &str) -> Sampling {
        Sampling {
            temperature: self.config.temperature,
            top_p: self.config.top_p,
            max_tokens: 0,
            stop: Vec::new(),
            seed: derive_seed(self.config.seed, episode_id),
        }
    }

    /// One round. Returns `Interrupted` when shutdown stopped it.
    async fn round(&self, round: u32) -> Result<RunOutcome, SelfPlayError> {
        let started = Instant::now();
        let weights_used = match &self.trainer {
            Some(t) => {
                let t = t.clone();
                tokio::task::spawn_blocking(move || t.fingerprint())
                    .await
                    .map_err(|e| SelfPlayError::Task(e.to_string()))?
            }
            None => None,
        };
        let mut phase_ms = BTreeMap::new();
        let index = self.run.episodes()?;
        let cfg = &self.config;

        // Phase 1: model injections and procedural bugs.
        let t = Instant::now();
        let mut verdicts: Vec<Verdict> = Vec::new();
        let mut injector_done: Vec<Done> = Vec::new();
        self.progress.phase(
            round,
            "inject",
            u64::from(cfg.injector_rollouts + cfg.procedural_per_round),
        );
        let mut set = JoinSet::new();
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent_episodes.max(1)));
        for k in 0..cfg.injector_rollouts {
            let id = format!("r{round}-inj{k}");
            if let (Some(rec), Some(v)) = (index.get(&id), read_verdict(&self.run.bug_dir(&id))) {
                injector_done.push(Done {
                    record: rec.clone(),
                    transcript: None,
                });
                verdicts.push(v);
                self.progress.tick(&format!("{id} (resumed)"));
                continue;
            }
            let job = self.injector_job(round, k, id, permits.clone());
            set.spawn(job);
        }
        let mut interrupted = false;
        while let Some(res) = set.join_next().await {
            match res.map_err(|e| SelfPlayError::Task(e.to_string()))? {
                Ok(Some((done, verdict))) => {
                    self.progress.tick(&done.record.episode_id);
                    injector_done.push(done);
                    verdicts.push(verdict);
                }
                Ok(None) => interrupted = true,
                Err(e) => return Err(e),
            }
        }
        for k in 0..cfg.procedural_per_round {
            if self.shutdown.is_requested() {
                interrupted = true;
                break;
            }
            let id = format!("r{round}-proc{k}");
            let dir = self.run.bug_dir(&id);
            let v = match read_verdict(&dir) {
                Some(v) => v,
                None => {
                    let _ = std::fs::remove_dir_all(&dir);
                    let v = self
                        .arena
                        .procedural_bug(derive_seed(cfg.seed, &id), &id, &dir)
                        .await?;
                    save_verdict(&dir, &v)?;
                    v
                }
            };
            self.progress.tick(&id);
            verdicts.push(v);
        }
        phase_ms.insert("inject+verify".to_string(), t.elapsed().as_millis() as u64);
        if interrupted {
            return Ok(RunOutcome::Interrupted);
        }

        // Phase 2: G solver attempts on every valid bug.
        let t = Instant::now();
        let valid: Vec<&Verdict> = verdicts.iter().filter(|v| v.valid).collect();
        let mut solver_done = Vec::new();
        let jobs: Vec<(String, u32)> = valid
            .iter()
            .flat_map(|v| (0..cfg.attempts_per_bug).map(move |a| (v.bug_id.clone(), a)))
            .collect();
        if self
            .solve_phase(round, "solve", &jobs, &index, &permits, &mut solver_done)
            .await?
            == RunOutcome::Interrupted
        {
            return Ok(RunOutcome::Interrupted);
        }
        phase_ms.insert("solve+evaluate".to_string(), t.elapsed().as_millis() as u64);

        // Phase 3: higher-order bugs from failed first-order attempts, and their attempts.
        let t = Instant::now();
        let mut ho_verdicts = Vec::new();
        let mut failed: Vec<&Done> = solver_done
            .iter()
            .filter(|d| d.record.reward == Some(-1.0) && d.record.outcome["patch_nonempty"] == true)
            .collect();
        failed.sort_by(|a, b| a.record.episode_id.cmp(&b.record.episode_id));
        for d in failed
            .into_iter()
            .take(cfg.max_higher_order_per_round as usize)
        {
            let parent = d.record.bug_id.clone().unwrap_or_default();
            let id = format!("{}-ho", d.record.episode_id);
            let dir = self.run.bug_dir(&id);
            let v = match read_verdict(&dir) {
                Some(v) => v,
                None => {
                    let patch = std::fs::read_to_string(patch_path(
                        &self.run,
                        &parent,
                        &d.record.episode_id,
                    ))
                    .unwrap_or_default();
                    let _ = std::fs::remove_dir_all(&dir);
                    let v = self
                        .arena
                        .higher_order(&self.run.bug_dir(&parent), &patch, &id, &dir)
                        .await?;
                    save_verdict(&dir, &v)?;
                    v
                }
            };
            ho_verdicts.push(v);
        }
        let ho_jobs: Vec<(String, u32)> = ho_verdicts
            .iter()
            .filter(|v| v.valid)
            .flat_map(|v| {
                (0..cfg.attempts_per_higher_order_bug).map(move |a| (v.bug_id.clone(), a))
            })
            .collect();
        let mut ho_done = Vec::new();
        if self
            .solve_phase(
                round,
                "solve higher-order",
                &ho_jobs,
                &index,
                &permits,
                &mut ho_done,
            )
            .await?
            == RunOutcome::Interrupted
        {
            return Ok(RunOutcome::Interrupted);
        }
        phase_ms.insert("higher-order".to_string(), t.elapsed().as_millis() as u64);

        // Rewards. Injector: from its bug's first-order attempts.
        let mut solved_per_bug: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for d in &solver_done {
            let e = solved_per_bug
                .entry(d.record.bug_id.clone().unwrap_or_default())
                .or_default();
            e.1 += 1;
            if d.record.reward == Some(1.0) {
                e.0 += 1;
            }
        }
        for d in &mut injector_done {
            let v = verdicts.iter().find(|v| v.bug_id == d.record.episode_id);
            let valid = v.is_some_and(|v| v.valid);
            let (solved, attempts) = solved_per_bug
                .get(&d.record.episode_id)
                .copied()
                .unwrap_or((0, 0));
            let r = ssr_game::reward::injector_reward(
                cfg.injector_reward,
                valid,
                solved as usize,
                attempts as usize,
            );
            d.record.reward = Some(r as f32);
        }

        // Trajectories.
        let mut trajectories = Vec::new();
        let mut skipped = 0u32;
        for (d, group) in injector_done
            .iter()
            .map(|d| (d, format!("r{round}-injector")))
            .chain(
                solver_done
                    .iter()
                    .chain(&ho_done)
                    .map(|d| (d, d.record.bug_id.clone().unwrap_or_default())),
            )
        {
            let transcript = match &d.transcript {
                Some(t) => t.clone(),
                None => self.run.transcript(&d.record.episode_id)?,
            };
            let extra = json!({"round": round, "bug": d.record.bug_id, "seed": cfg.seed});
            match to_trajectory(&transcript, d.record.reward.unwrap_or(0.0), &group, extra) {
                Ok(t) => trajectories.push(t),
                // A policy without token ids (chat-only server, no tokenizer) gives
                // transcripts but no training records; counted in the metrics.
                Err(_) => skipped += 1,
            }
        }
        self.run.append_trajectories(&trajectories)?;

        // Training.
        let mut train_loss = None;
        let mut train = None;
        if let Some(trainer) = &self.trainer {
            let t = Instant::now();
            let trainer = trainer.clone();
            let batch = trajectories.clone();
            let report = tokio::task::spawn_blocking(move || trainer.step(round, &batch))
                .await
                .map_err(|e| SelfPlayError::Task(e.to_string()))?
                .map_err(|reason| SelfPlayError::Train { round, reason })?;
            train_loss = Some(report.loss);
            train = Some(report);
            phase_ms.insert("train".to_string(), t.elapsed().as_millis() as u64);
        }

        // Metrics.
        let mean =
            |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        let all_solver: Vec<&Done> = solver_done.iter().chain(&ho_done).collect();
        let model_valid = verdicts
            .iter()
            .filter(|v| v.source == BugSource::Model && v.valid)
            .count() as u32;
        let mut rejections = BTreeMap::new();
        for v in verdicts.iter().chain(&ho_verdicts).filter(|v| !v.valid) {
            *rejections
                .entry(v.reason_code.clone().unwrap_or_else(|| "unknown".into()))
                .or_insert(0) += 1;
        }
        let solved = all_solver
            .iter()
            .filter(|d| d.record.reward == Some(1.0))
            .count() as u32;
        let m = RoundMetrics {
            round,
            injector_episodes: cfg.injector_rollouts,
            model_submitted: injector_done
                .iter()
                .filter(|d| d.record.end == "submitted")
                .count() as u32,
            model_valid,
            procedural_attempted: cfg.procedural_per_round,
            procedural_valid: verdicts
                .iter()
                .filter(|v| v.source == BugSource::Procedural && v.valid)
                .count() as u32,
            validity_rate: if cfg.injector_rollouts == 0 {
                0.0
            } else {
                f64::from(model_valid) / f64::from(cfg.injector_rollouts)
            },
            higher_order_bugs: ho_verdicts.iter().filter(|v| v.valid).count() as u32,
            solver_episodes: all_solver.len() as u32,
            solved,
            solve_rate: if all_solver.is_empty() {
                0.0
            } else {
                f64::from(solved) / all_solver.len() as f64
            },
            mean_injector_reward: mean(
                injector_done
                    .iter()
                    .filter_map(|d| d.record.reward.map(f64::from))
                    .collect(),
            ),
            mean_solver_reward: mean(
                all_solver
                    .iter()
                    .filter_map(|d| d.record.reward.map(f64::from))
                    .collect(),
            ),
            mean_injector_turns: mean(
                injector_done
                    .iter()
                    .map(|d| f64::from(d.record.turns))
                    .collect(),
            ),
            mean_solver_turns: mean(
                all_solver
                    .iter()
                    .map(|d| f64::from(d.record.turns))
                    .collect(),
            ),
            malformed_calls: injector_done
                .iter()
                .chain(all_solver.iter().copied())
                .map(|d| d.record.malformed_calls)
                .sum(),
            sampled_tokens: injector_done
                .iter()
                .chain(all_solver.iter().copied())
                .map(|d| d.record.sampled_tokens as u64)
                .sum(),
            phase_ms,
            train_loss,
            weights_used,
            train,
            wall_ms: started.elapsed().as_millis() as u64,
            rejections,
            trajectories_skipped: skipped,
        };
        self.run.append_metrics(&m)?;
        Ok(RunOutcome::Finished)
    }

    /// Builds the task of one injector episode (owning everything it uses).
    fn injector_job(
        &self,
        round: u32,
        k: u32,
        id: String,
        permits: Arc<Semaphore>,
    ) -> impl std::future::Future<Output = Result<Option<(Done, Verdict)>, SelfPlayError>> + Send + 'static
    {
        let policy = self.policy.clone();
        let arena = self.arena.clone();
        let run = self.run.clone();
        let shutdown = self.shutdown.clone();
        let cfg = self.config.clone();
        let sampling = self.sampling(&id);
        async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| SelfPlayError::Task(e.to_string()))?;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(
                cfg.seed,
                &format!("{id}/strategy"),
            ));
            let strategy = cfg.strategy.pick(&mut rng);
            let world = arena.injector_world(&id).await?;
            let specs = world.tools.specs();
            let spec = EpisodeSpec {
                episode_id: id.clone(),
                role: "injector".into(),
                attempt: k,
                system: prompts::injector_system(
                    strategy,
                    &specs,
                    cfg.syntax,
                    cfg.min_passing_tests,
                ),
                task: prompts::injector_task(&arena.repo_name()),
                budgets: cfg.injector_budgets.clone(),
                syntax: cfg.syntax,
                sampling,
            };
            let transcript =
                run_episode(policy.as_ref(), world.tools.as_ref(), &spec, &shutdown).await;
            if !transcript.finished() {
                return Ok(None);
            }
            let bug_dir = run.bug_dir(&id);
            let _ = std::fs::remove_dir_all(&bug_dir);
            let verdict = if transcript.end == EpisodeEnd::Submitted {
                arena.verify_submission(&world, &id, &bug_dir).await?
            } else {
                Verdict::rejected(
                    &id,
                    BugSource::Model,
                    "not_submitted",
                    format!(
                        "the episode ended without a submission ({:?})",
                        transcript.end
                    ),
                )
            };
            save_verdict(&bug_dir, &verdict)?;
            let record = record_of(
                &transcript,
                round,
                Some(id.clone()),
                format!("r{round}-injector"),
                None,
                json!({"strategy": strategy, "valid": verdict.valid, "reason": verdict.reason}),
            );
            run.record_episode(&transcript, &record)?;
            Ok(Some((
                Done {
                    record,
                    transcript: Some(transcript),
                },
                verdict,
            )))
        }
    }

    /// Runs (or resumes) solver attempts `(bug, attempt)`, appending to `done`.
    async fn solve_phase(
        &self,
        round: u32,
        name: &str,
        jobs: &[(String, u32)],
        index: &BTreeMap<String, EpisodeRecord>,
        permits: &Arc<Semaphore>,
        done: &mut Vec<Done>,
    ) -> Result<RunOutcome, SelfPlayError> {
        self.progress.phase(round, name, jobs.len() as u64);
        let mut set = JoinSet::new();
        for (bug, a) in jobs {
            let id = format!("{bug}-sol{a}");
            if let Some(rec) = index.get(&id) {
                done.push(Done {
                    record: rec.clone(),
                    transcript: None,
                });
                self.progress.tick(&format!("{id} (resumed)"));
                continue;
            }
            let policy = self.policy.clone();
            let arena = self.arena.clone();
            let run = self.run.clone();
            let shutdown = self.shutdown.clone();
            let cfg = self.config.clone();
            let sampling = self.sampling(&id);
            let permits = permits.clone();
            let bug = bug.clone();
            let a = *a;
            set.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| SelfPlayError::Task(e.to_string()))?;
                if shutdown.is_requested() {
                    return Ok(None);
                }
                let bug_dir = run.bug_dir(&bug);
                let (world, task) = arena.solver_world(&bug_dir, &id).await?;
                let specs = world.tools.specs();
                let spec = EpisodeSpec {
                    episode_id: id.clone(),
                    role: "solver".into(),
                    attempt: a,
                    system: prompts::solver_system(&specs, cfg.syntax),
                    task,
                    budgets: cfg.solver_budgets.clone(),
                    syntax: cfg.syntax,
                    sampling,
                };
                let transcript = run_episode(policy.as_ref(), world.tools.as_ref(), &spec, &shutdown).await;
                if !transcript.finished() {
                    return Ok(None);
                }
                // Every finished attempt is evaluated, submitted or not: the patch is
                // whatever the solver changed (an empty patch scores −1).
                let outcome = arena.evaluate(&bug_dir, &world).await?;
                drop(world);
                let attempts = bug_dir.join("attempts");
                std::fs::create_dir_all(&attempts).map_err(|source| RunDirError::Io { path: attempts.clone(), source })?;
                let p = attempts.join(format!("{id}.diff"));
                std::fs::write(&p, &outcome.patch).map_err(|source| RunDirError::Io { path: p, source })?;
                let reward = if outcome.solved { 1.0 } else { -1.0 };
                let record = record_of(
                    &transcript,
                    round,
                    Some(bug.clone()),
                    bug.clone(),
                    Some(reward),
                    json!({"solved": outcome.solved, "summary": outcome.summary, "patch_nonempty": !outcome.patch.trim().is_empty(), "evaluate_ms": outcome.evaluate_ms}),
                );
                run.record_episode(&transcript, &record)?;
                Ok::<_, SelfPlayError>(Some(Done { record, transcript: Some(transcript) }))
            });
        }
        let mut interrupted = false;
        while let Some(res) = set.join_next().await {
            match res.map_err(|e| SelfPlayError::Task(e.to_string()))? {
                Ok(Some(d)) => {
                    self.progress.tick(&d.record.episode_id);
                    done.push(d);
                }
                Ok(None) => interrupted = true,
                Err(e) => return Err(e),
            }
        }
        done.sort_by(|a, b| a.record.episode_id.cmp(&b.record.episode_id));
        Ok(if interrupted {
            RunOutcome::Interrupted
        } else {
            RunOutcome::Finished
        })
    }
}

fn patch_path(run: &RunDir, bug: &str, episode_id: &str) -> std::path::PathBuf {
    run.bug_dir(bug)
        .join("attempts")
        .join(format!("{episode_id}.diff"))
}

fn read_verdict(bug_dir: &Path) -> Option<Verdict> {
    let s = std::fs::read_to_string(bug_dir.join("verdict.json")).ok()?;
    serde_json::from_str(&s).ok()
}

fn save_verdict(bug_dir: &Path, v: &Verdict) -> Result<(), RunDirError> {
    std::fs::create_dir_all(bug_dir).map_err(|source| RunDirError::Io {
        path: bug_dir.into(),
        source,
    })?;
    write_json_atomic(&bug_dir.join("verdict.json"), v)
}

fn record_of(
    t: &Transcript,
    round: u32,
    bug_id: Option<String>,
    group_id: String,
    reward: Option<f32>,
    outcome: serde_json::Value,
) -> EpisodeRecord {
    let end = serde_json::to_value(&t.end)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_string))
        .unwrap_or_default();
    EpisodeRecord {
        episode_id: t.episode_id.clone(),
        round,
        role: t.role.clone(),
        bug_id,
        group_id,
        turns: t.stats.turns,
        malformed_calls: t.stats.malformed_calls,
        sampled_tokens: t.stats.sampled_tokens,
        total_tokens: t.stats.total_tokens,
        wall_ms: t.stats.wall_ms,
        end,
        reward,
        outcome,
    }
}
