//! The higher-order phase (SSR_SPEC.md section 8): failed first-order attempts that
//! changed something become higher-order bugs, judged and stored one at a time, and
//! their solver attempts run.
//!
//! Owns: which failed attempts are used (the failed ones with a non-empty patch, in
//! episode order, up to the round's cap) and resuming a judged one. Does not own: the
//! higher-order rules (the arena, over `ssr-game`'s pool), solving (`solve`).

use super::SelfPlayError;
use super::solve::{attempts_on, solve_phase};
use super::split::hold_out;
use super::table::{Done, Played, Table};
use crate::rundir::Outcome;
use ssr_game::bug_store::Judgement;
use ssr_game::{Bug, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The higher-order bugs of a round and their attempts.
#[derive(Debug, Default)]
pub struct HigherOrder {
    pub verdicts: Vec<Verdict>,
    pub solvers: Vec<Done>,
    /// Valid higher-order bugs the held-out split took out (no attempts).
    pub held_out: Vec<String>,
}

/// The attempts that can seed a higher-order bug: failed (scored, not infra), with a
/// non-empty patch, in episode order, at most `cap`.
pub fn seeds(solvers: &[Done], cap: u32) -> Vec<&Done> {
    let mut failed: Vec<&Done> = solvers
        .iter()
        .filter(|d| d.record.infra.is_none())
        .filter(|d| match &d.record.outcome {
            Outcome::Solver(o) => !o.solved && o.patch_nonempty,
            Outcome::Injector(_) => false,
        })
        .collect();
    failed.sort_by(|a, b| a.record.episode_id.cmp(&b.record.episode_id));
    failed.truncate(cap as usize);
    failed
}

/// Makes (or resumes) the round's higher-order bugs from failed first-order attempts
/// on `bugs`, then runs their solver attempts.
pub async fn higher_order_phase(
    table: &Table,
    round: u32,
    solvers: &[Done],
    bugs: &BTreeMap<String, Arc<Bug>>,
    permits: &Arc<Semaphore>,
) -> Result<Played<HigherOrder>, SelfPlayError> {
    let mut verdicts = Vec::new();
    let mut made = BTreeMap::new();
    for d in seeds(solvers, table.config.max_higher_order_per_round) {
        let id = format!("{}-ho", d.record.episode_id);
        let (verdict, bug) = match table.bugs.judgement(&id)? {
            Some(Judgement::Made(bug)) => (bug.verdict(), Some(*bug)),
            Some(Judgement::Rejected(v)) => (v, None),
            None => make_one(table, d, &id, bugs).await?,
        };
        if let Some(bug) = bug.filter(|_| verdict.valid) {
            made.insert(id, Arc::new(bug));
        }
        verdicts.push(verdict);
    }
    let held_out = hold_out(table.split.as_deref(), &mut made);
    let attempts = attempts_on(&made, table.config.attempts_per_higher_order_bug);
    match solve_phase(table, round, "solve higher-order", attempts, permits).await? {
        Played::Finished(solvers) => Ok(Played::Finished(HigherOrder {
            verdicts,
            solvers,
            held_out,
        })),
        Played::Interrupted => Ok(Played::Interrupted),
    }
}

/// Judges and stores higher-order bug `id` from the failed attempt `d`.
async fn make_one(
    table: &Table,
    d: &Done,
    id: &str,
    bugs: &BTreeMap<String, Arc<Bug>>,
) -> Result<(Verdict, Option<Bug>), SelfPlayError> {
    let parent_id = d.record.bug_id.clone().unwrap_or_default();
    let parent = match bugs.get(&parent_id) {
        Some(b) => b.clone(),
        None => Arc::new(table.bugs.read(&parent_id)?),
    };
    // The patch is in memory when the attempt ran in this process.
    let patch = match &d.patch {
        Some(p) => p.clone(),
        None => table
            .bugs
            .attempt(&parent_id, &d.record.episode_id)?
            .unwrap_or_default(),
    };
    table.bugs.clear(id)?;
    let judged = table
        .arena
        .higher_order(&parent_id, &parent, &patch, id)
        .await?;
    match &judged.bug {
        Some(bug) => {
            table.bugs.write(bug)?;
        }
        None => table.bugs.write_rejection(&judged.verdict)?,
    }
    Ok((judged.verdict, judged.bug))
}
