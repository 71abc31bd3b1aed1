//! The solve phase: G solver attempts on each bug, each evaluated from a fresh
//! original as soon as it ends, its patch stored and kept in memory.
//!
//! Owns: one solver attempt from its workspace to its score and record, in the game's
//! order (`ssr_game::score`): an attempt whose model failed is infra and is not
//! evaluated; otherwise the arena's evaluation scores it (infra, tampered or ±1). An
//! infra attempt is recorded with no reward; with `shaped_reward = "similarity"` a
//! failed one also records the shaped reward its trajectory trains on. Does not own: which bugs are attempted
//! (the round), the evaluation (the arena).

use super::arena::SolveOutcome;
use super::config::ShapedReward;
use super::table::{Done, Played, Table, join_all};
use super::{SelfPlayError, record_of};
use crate::episode::{EpisodeSpec, run_episode};
use crate::prompts;
use crate::rundir::{Outcome, SolverOutcome};
use ssr_game::{AttemptScore, Bug, Role};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// One solver attempt to play: the bug (in memory), its id, the attempt index.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub bug_id: String,
    pub bug: Arc<Bug>,
    pub attempt: u32,
}

impl Attempt {
    pub fn episode_id(&self) -> String {
        format!("{}-sol{}", self.bug_id, self.attempt)
    }
}

/// The attempts on each bug: `attempts` per bug, bugs in the order given.
pub fn attempts_on<'a>(
    bugs: impl IntoIterator<Item = (&'a String, &'a Arc<Bug>)>,
    attempts: u32,
) -> Vec<Attempt> {
    bugs.into_iter()
        .flat_map(|(id, bug)| {
            (0..attempts).map(move |attempt| Attempt {
                bug_id: id.clone(),
                bug: bug.clone(),
                attempt,
            })
        })
        .collect()
}

/// Runs (or resumes) solver attempts; the finished ones sorted by episode id.
pub async fn solve_phase(
    table: &Table,
    round: u32,
    name: &str,
    attempts: Vec<Attempt>,
    permits: &Arc<Semaphore>,
) -> Result<Played<Vec<Done>>, SelfPlayError> {
    table.progress.phase(round, name, attempts.len() as u64);
    let mut set = JoinSet::new();
    let mut done = Vec::new();
    for a in attempts {
        let id = a.episode_id();
        if let Some(rec) = table.finished.get(&id) {
            table.progress.tick(&format!("{id} (resumed)"));
            done.push(Done::resumed(rec));
            continue;
        }
        let (table, permits) = (table.clone(), permits.clone());
        set.spawn(async move { solver_attempt(&table, round, a, id, permits).await });
    }
    match join_all(set, table.progress.as_ref(), |d: &Done| {
        d.record.episode_id.clone()
    })
    .await?
    {
        Played::Finished(new) => done.extend(new),
        Played::Interrupted => return Ok(Played::Interrupted),
    }
    done.sort_by(|a, b| a.record.episode_id.cmp(&b.record.episode_id));
    Ok(Played::Finished(done))
}

/// The reward the attempt trains on when shaping changes it (`None`: its `reward`).
/// Only the game's rule decides which attempts may be shaped (failed and scored).
fn training_reward(shaping: ShapedReward, bug: &Bug, outcome: &SolveOutcome) -> Option<f32> {
    let fix = match shaping {
        ShapedReward::None => return None,
        ShapedReward::Similarity => bug.true_fix(),
    };
    let shaped = outcome
        .score
        .training_reward(&outcome.patch, fix.as_deref())?;
    (Some(shaped) != outcome.score.reward()).then_some(shaped as f32)
}

/// One solver attempt, evaluated, stored and recorded. `None` when shutdown stopped it.
/// Also the environment server's solver episode (`id` is then the client's).
pub async fn solver_attempt(
    table: &Table,
    round: u32,
    a: Attempt,
    id: String,
    permits: Arc<Semaphore>,
) -> Result<Option<Done>, SelfPlayError> {
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| SelfPlayError::Task(e.to_string()))?;
    if table.shutdown.is_requested() {
        return Ok(None);
    }
    let cfg = &table.config;
    let (world, task) = table.arena.solver_world(&a.bug, &id).await?;
    let specs = world.tools.specs();
    let spec = EpisodeSpec {
        episode_id: id.clone(),
        role: Role::Solver,
        attempt: a.attempt,
        system: prompts::solver_system(&specs, cfg.syntax),
        task,
        budgets: cfg.solver_budgets.clone(),
        syntax: cfg.syntax,
        sampling: table.sampling(&id),
    };
    let stop = world.cancel_on(&table.shutdown);
    let transcript = run_episode(
        table.policy.as_ref(),
        world.tools.as_ref(),
        &spec,
        &table.shutdown,
    )
    .await;
    drop(stop);
    if !transcript.finished() {
        return Ok(None);
    }
    // A model failure is infra before anything else: no evaluation, no reward.
    let outcome = match transcript.end.model_failure() {
        Some(error) => {
            let score = AttemptScore::model_failed(error);
            SolveOutcome {
                summary: format!("not scored: {}", score.infra_reason().unwrap_or(error)),
                score,
                patch: String::new(),
                evaluate_ms: 0,
            }
        }
        // Every other finished attempt is evaluated, submitted or not: the patch is
        // whatever the solver changed (an empty patch scores −1).
        None => {
            let outcome = table.arena.evaluate(&a.bug, &world).await?;
            table.bugs.write_attempt(&a.bug_id, &id, &outcome.patch)?;
            outcome
        }
    };
    drop(world);
    let train_reward = training_reward(cfg.shaped_reward, &a.bug, &outcome);
    let mut record = record_of(
        &transcript,
        round,
        Some(a.bug_id.clone()),
        a.bug_id.clone(),
        outcome.score.reward().map(|r| r as f32),
        Outcome::Solver(SolverOutcome {
            evaluate_ms: outcome.evaluate_ms,
            patch_nonempty: !outcome.patch.trim().is_empty(),
            solved: outcome.solved(),
            summary: outcome.summary,
        }),
    );
    if let Some(reason) = outcome.score.infra_reason() {
        record.infra = Some(reason.to_string());
    }
    record.train_reward = train_reward;
    table.journal.record(&transcript, &record)?;
    Ok(Some(Done {
        record,
        transcript: Some(transcript),
        patch: Some(outcome.patch),
    }))
}
