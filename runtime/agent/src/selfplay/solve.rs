//! The solve phase: G solver attempts on each bug, each evaluated from a fresh
//! original as soon as it ends, its patch stored and kept in memory.
//!
//! Owns: one solver attempt from its workspace to its ±1 reward and record. Does not
//! own: which bugs are attempted (the round), the evaluation (the arena).

use super::table::{Done, Played, Table, join_all};
use super::{SelfPlayError, record_of};
use crate::episode::{EpisodeSpec, run_episode};
use crate::prompts;
use crate::rundir::{Outcome, SolverOutcome};
use ssr_game::{Bug, Role};
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
    // Every finished attempt is evaluated, submitted or not: the patch is whatever
    // the solver changed (an empty patch scores −1).
    let outcome = table.arena.evaluate(&a.bug, &world).await?;
    drop(world);
    table.bugs.write_attempt(&a.bug_id, &id, &outcome.patch)?;
    let reward = if outcome.solved { 1.0 } else { -1.0 };
    let record = record_of(
        &transcript,
        round,
        Some(a.bug_id.clone()),
        a.bug_id.clone(),
        Some(reward),
        Outcome::Solver(SolverOutcome {
            evaluate_ms: outcome.evaluate_ms,
            patch_nonempty: !outcome.patch.trim().is_empty(),
            solved: outcome.solved,
            summary: outcome.summary,
        }),
    );
    table.journal.record(&transcript, &record)?;
    Ok(Some(Done {
        record,
        transcript: Some(transcript),
        patch: Some(outcome.patch),
    }))
}
