//! The self-play orchestrator: rounds of injection, verification, G solver attempts
//! per valid bug, evaluation, rewards, higher-order bugs, trajectories and (with
//! training) a policy update.
//!
//! A round is a sequence of phases, each a function over typed inputs and outputs
//! that takes what it plays with as a [`Table`] (policy, arena, bug store, journal)
//! and needs no run directory:
//!
//! ```text
//! inject_phase ─► MadeBugs ─► solve_phase ─► Vec<Done> ─► higher_order_phase ─► HigherOrder
//!   (injector episodes ∥ procedural bugs,      (G attempts per valid bug,      (failed patches →
//!    each judged and stored)                    each evaluated and stored)      bugs → attempts)
//!                           └──────────────► Round ◄─────────────────────────────────┘
//!          Round::reward_injectors ─► Round::trajectories ─► train ─► RoundMetrics::from(&Round)
//! ```
//!
//! Owns: the order of phases, concurrency (a semaphore bounds running episodes; every
//! spawned task lives in a `JoinSet` owned by its phase, which awaits it), episode ids
//! and seeds derived from the run seed, resuming from the run directory (an episode is
//! finished once its line is in `episodes.jsonl`, a bug once its verdict is in the
//! bug store), and opening a run for the command line (`open`: the composition root,
//! [`SelfPlay::open`]). Does not own: the rules (behind [`Arena`]), the bug directory layout
//! (`ssr-game`'s [`BugStore`]), the model (behind [`Policy`]), the training step
//! (behind [`TrainStep`]).

pub mod arena;
pub mod config;
pub mod fake_arena;
pub mod game_arena;
pub mod heldout;
pub mod heldout_open;
pub mod higher_order;
pub mod image;
pub mod inject;
pub mod open;
pub mod progress;
pub mod resume;
pub mod rft;
pub mod round;
pub mod solve;
pub mod split;
pub mod table;
pub mod train;

use crate::policy::Policy;
pub use crate::rundir::TrainReport;
use crate::rundir::{EpisodeRecord, Outcome, RoundMetrics, RunDir, RunDirError};
use crate::shutdown::Shutdown;
use crate::transcript::Transcript;
pub use arena::{Arena, ArenaError, BugSource, Judged, SolveOutcome, Verdict, World};
pub use config::{InjectorRewardKind, SelfPlayConfig};
use higher_order::higher_order_phase;
use inject::inject_phase;
pub use open::{OpenConfig, OpenError, Opened, PolicyKind, PolicySources, RepoChoice};
pub use round::Round;
use sha2::{Digest, Sha256};
use solve::{attempts_on, solve_phase};
use ssr_game::BugStore;
use ssr_game::bug_store::StoreError;
use ssr_game::split::SplitJudge;
use ssr_trainer::train::Demo;
use ssr_trainer::trajectory::Trajectory;
use std::sync::Arc;
use std::time::Instant;
pub use table::{Done, Journal, MemoryJournal, Played, Table};
use tokio::sync::Semaphore;
pub use train::TrainStepError;

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
    /// `demos`: the round's rejection-sampling demonstrations (`rft = true`), one
    /// supervised step on them after the RL step when there are any.
    fn step(
        &self,
        round: u32,
        trajectories: &[Trajectory],
        demos: &[Demo],
    ) -> Result<TrainReport, TrainStepError>;
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SelfPlayError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("the bug store: {0}")]
    BugStore(#[from] StoreError),
    #[error(transparent)]
    Arena(#[from] ArenaError),
    #[error("training step of round {round}: {source}")]
    Train {
        round: u32,
        #[source]
        source: TrainStepError,
    },
    #[error("an episode task failed: {0}")]
    Task(String),
    /// Every episode of a round that asked the model failed: no reward was given,
    /// and another round would fail the same way.
    #[error("round {round}: every episode failed to reach the model; {error}")]
    ModelUnreachable { round: u32, error: String },
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
    /// The held-out split the run honours (`SelfPlayConfig::split`); `None`: every
    /// bug plays.
    pub split: Option<Arc<SplitJudge>>,
    /// The held-out evaluation run every N rounds (`SelfPlayConfig::heldout`).
    pub heldout: Option<Arc<HeldoutSet>>,
    /// The image the repository was taken out of (recorded with every bug).
    pub image: Option<ssr_game::image::ImageMeta>,
}

/// The held-out bugs of a run and when they are played.
pub struct HeldoutSet {
    pub bugs: Vec<(String, Arc<ssr_game::Bug>)>,
    pub schedule: config::HeldoutSchedule,
}

/// Times the phases of a round.
struct PhaseClock {
    lap: Instant,
    phase_ms: std::collections::BTreeMap<String, u64>,
}

impl PhaseClock {
    fn start() -> Self {
        PhaseClock {
            lap: Instant::now(),
            phase_ms: Default::default(),
        }
    }
    fn lap(&mut self, name: &str) {
        self.phase_ms
            .insert(name.into(), self.lap.elapsed().as_millis() as u64);
        self.lap = Instant::now();
    }
}

/// Unwraps a phase's result, returning `Interrupted` from the round when shutdown
/// stopped the phase.
macro_rules! played {
    ($phase:expr) => {
        match $phase {
            Played::Finished(x) => x,
            Played::Interrupted => return Ok(RunOutcome::Interrupted),
        }
    };
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

    /// The table of a round: this run's players, its bug store and its index.
    fn table(&self) -> Result<Table, SelfPlayError> {
        Ok(Table {
            config: Arc::new(self.config.clone()),
            policy: self.policy.clone(),
            arena: self.arena.clone(),
            bugs: BugStore::new(self.run.bugs_root()).on_image(self.image.clone()),
            journal: Arc::new(self.run.clone()),
            shutdown: self.shutdown.clone(),
            progress: self.progress.clone(),
            finished: Arc::new(self.run.episodes()?),
            split: self.split.clone(),
        })
    }

    /// One round, phase by phase. Returns `Interrupted` when shutdown stopped it.
    async fn round(&self, round: u32) -> Result<RunOutcome, SelfPlayError> {
        let started = Instant::now();
        let weights_used = self.fingerprint().await?;
        let table = self.table()?;
        let heldout = played!(self.heldout_point(round).await?);
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_episodes.max(1)));
        let mut clock = PhaseClock::start();
        let mut made = played!(inject_phase(&table, round, &permits).await?);
        let mut held_out = split::hold_out(self.split.as_deref(), &mut made.bugs);
        clock.lap("inject+verify");
        let attempts = attempts_on(&made.bugs, self.config.attempts_per_bug);
        let solvers = played!(solve_phase(&table, round, "solve", attempts, &permits).await?);
        clock.lap("solve+evaluate");
        let higher =
            played!(higher_order_phase(&table, round, &solvers, &made.bugs, &permits).await?);
        clock.lap("higher-order");
        held_out.extend(higher.held_out);
        let mut r = Round {
            round,
            injector_rollouts: self.config.injector_rollouts,
            procedural_attempted: self.config.procedural_per_round,
            injectors: made.injectors,
            verdicts: made.verdicts,
            solvers,
            higher_order_verdicts: higher.verdicts,
            higher_order_solvers: higher.solvers,
            weights_used,
            held_out,
            ..Round::default()
        };
        r.reward_injectors(self.config.injector_reward, self.config.attempts_per_bug);
        let (seed, compact) = (self.config.seed, self.config.compact_filtering);
        let trajectories = r.trajectories(seed, compact, |id| self.run.transcript(id))?;
        self.run.append_trajectories(&trajectories)?;
        let demos = match self.config.rft {
            true => r.rft_demos(seed, |id| self.run.transcript(id))?,
            false => Vec::new(),
        };
        self.run.append_rft(&demos)?;
        if self.trainer.is_some() {
            r.train = self.train(round, trajectories, demos).await?;
            clock.lap("train");
        }
        r.phase_ms = clock.phase_ms;
        r.wall_ms = started.elapsed().as_millis() as u64;
        let mut metrics = RoundMetrics::from(&r);
        metrics.heldout = heldout;
        self.run.append_metrics(&metrics)?;
        if let Some(error) = r.model_unreachable() {
            return Err(SelfPlayError::ModelUnreachable { round, error });
        }
        Ok(RunOutcome::Finished)
    }

    /// The held-out evaluation at the start of round `round` when the schedule has
    /// one: it measures the weights the round samples from, before its training step
    /// (round 0's point is the starting policy). Its episodes go to a scratch bug
    /// store and an in-memory journal: they are no part of the run's game.
    async fn heldout_point(
        &self,
        round: u32,
    ) -> Result<Played<Option<heldout::HeldoutReport>>, SelfPlayError> {
        let Some(set) = self.heldout.clone() else {
            return Ok(Played::Finished(None));
        };
        if !round.is_multiple_of(set.schedule.every.max(1)) {
            return Ok(Played::Finished(None));
        }
        let scratch = tempfile::Builder::new()
            .prefix(".heldout-")
            .tempdir_in(self.run.root())
            .map_err(|e| SelfPlayError::Task(format!("a scratch bug store: {e}")))?;
        let table = Table {
            bugs: BugStore::new(scratch.path()),
            journal: Arc::new(MemoryJournal::default()),
            finished: Arc::new(Default::default()),
            ..self.table()?
        };
        let plan = heldout::HeldoutPlan {
            label: heldout::round_label(self.config.seed, round),
            attempts: set.schedule.attempts,
            injector_episodes: set.schedule.injector_episodes,
        };
        let n = set.bugs.len() as u64 * u64::from(plan.attempts);
        self.progress
            .phase(round, "held-out", n + u64::from(plan.injector_episodes));
        Ok(match heldout::evaluate(&table, &set.bugs, &plan).await? {
            Some(report) => Played::Finished(Some(report)),
            None => Played::Interrupted,
        })
    }

    /// The fingerprint of the weights this round samples from (with a trainer).
    async fn fingerprint(&self) -> Result<Option<String>, SelfPlayError> {
        let Some(t) = self.trainer.clone() else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || t.fingerprint())
            .await
            .map_err(|e| SelfPlayError::Task(e.to_string()))
    }

    /// The round's training step, on a blocking thread.
    async fn train(
        &self,
        round: u32,
        batch: Vec<Trajectory>,
        demos: Vec<Demo>,
    ) -> Result<Option<TrainReport>, SelfPlayError> {
        let Some(trainer) = self.trainer.clone() else {
            return Ok(None);
        };
        let report = tokio::task::spawn_blocking(move || trainer.step(round, &batch, &demos))
            .await
            .map_err(|e| SelfPlayError::Task(e.to_string()))?
            .map_err(|source| SelfPlayError::Train { round, source })?;
        Ok(Some(report))
    }
}

/// The index record of a finished episode.
fn record_of(
    t: &Transcript,
    round: u32,
    bug_id: Option<String>,
    group_id: String,
    reward: Option<f32>,
    outcome: Outcome,
) -> EpisodeRecord {
    EpisodeRecord {
        episode_id: t.episode_id.clone(),
        round,
        role: t.role,
        bug_id,
        group_id,
        turns: t.stats.turns,
        malformed_calls: t.stats.malformed_calls,
        sampled_tokens: t.stats.sampled_tokens,
        total_tokens: t.stats.total_tokens,
        wall_ms: t.stats.wall_ms,
        end: t.end.kind(),
        reward,
        train_reward: None,
        outcome,
        infra: t.end.model_failure().and_then(|e| {
            ssr_game::AttemptScore::model_failed(e)
                .infra_reason()
                .map(str::to_owned)
        }),
    }
}
