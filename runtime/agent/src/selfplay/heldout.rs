//! The held-out evaluation (`ssr heldout`, and self-play every N rounds): K solver
//! attempts on each held-out bug, and optionally injector episodes on the same
//! repository state, with the policy as it is now. Nothing is trained on.
//!
//! Metrics ([`HeldoutReport`]):
//! - solve rate: pass@K per bug (a bug passes when one of its scored attempts solved
//!   it, as the evaluator's outcome says, never the reward value), with a 95 % Wilson
//!   interval over the bugs that had at least one scored attempt; a bug whose every
//!   attempt was infra is counted apart;
//! - malformed-call rate: malformed tool calls / model turns, over every episode;
//! - mean turns and mean sampled tokens per solver attempt;
//! - valid-artifact rate: the injector plays on the repository the held-out bugs were
//!   made from (its HEAD, the split's state), with the training prompt, and its
//!   artifact is judged by the verifier; infra episodes are left out.
//!
//! Owns: the evaluation's episode ids, its metrics, the Wilson interval. Does not own:
//! playing an episode (`solve::solver_attempt`, `inject::injector_episode`), which bugs
//! are held out (`ssr_game::split`).

use super::inject::injector_episode;
use super::solve::{Attempt, solver_attempt};
use super::table::{Done, Table};
use super::{SelfPlayError, derive_seed};
use crate::rundir::Outcome;
use serde::{Deserialize, Serialize};
use ssr_game::split::SplitJudge;
use ssr_game::{Bug, bug_store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The 95 % two-sided normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `n` at normal quantile `z`;
/// `None` when `n` is 0 (no interval over nothing).
pub fn wilson(successes: usize, n: usize, z: f64) -> Option<(f64, f64)> {
    if n == 0 || successes > n {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// One held-out bug's attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BugResult {
    pub bug_id: String,
    pub attempts: u32,
    /// Attempts with a score (not infra).
    pub scored: u32,
    pub solved: u32,
}

/// What one held-out evaluation measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldoutReport {
    /// Held-out bugs played.
    pub bugs: usize,
    /// Bugs with at least one scored attempt (the denominator of the solve rate).
    pub bugs_scored: usize,
    /// K of pass@K.
    pub attempts_per_bug: u32,
    /// Bugs solved by at least one of their attempts.
    pub bugs_solved: usize,
    /// pass@K: `bugs_solved / bugs_scored` (`None` with no scored bug).
    pub solve_rate: Option<f64>,
    /// The 95 % Wilson interval of the solve rate over bugs.
    pub solve_rate_ci95: Option<(f64, f64)>,
    pub solver_attempts: usize,
    pub infra_attempts: usize,
    /// Malformed tool calls / model turns, solver and injector episodes together.
    pub malformed_calls: u64,
    pub turns: u64,
    pub malformed_rate: Option<f64>,
    /// Per solver attempt.
    pub mean_turns: Option<f64>,
    pub mean_sampled_tokens: Option<f64>,
    pub injector_episodes: u32,
    /// Injector episodes whose verification ran (not infra).
    pub injector_judged: u32,
    pub injector_valid: u32,
    /// `injector_valid / injector_judged`.
    pub valid_artifact_rate: Option<f64>,
    pub per_bug: Vec<BugResult>,
}

impl HeldoutReport {
    /// One line: pass@K with its interval, malformed-call and valid-artifact rates.
    pub fn summary(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.3}"));
        let ci = self
            .solve_rate_ci95
            .map_or_else(|| "–".into(), |(lo, hi)| format!("[{lo:.3}, {hi:.3}]"));
        format!(
            "pass@{} {} (95% Wilson {ci}) over {} bugs; malformed-call rate {}; valid artifacts {}",
            self.attempts_per_bug,
            opt(self.solve_rate),
            self.bugs_scored,
            opt(self.malformed_rate),
            opt(self.valid_artifact_rate)
        )
    }
}

/// What an evaluation plays: K attempts per bug, `injector_episodes` injector episodes;
/// `label` prefixes every episode id (and so every seed).
#[derive(Clone, Debug)]
pub struct HeldoutPlan {
    pub label: String,
    pub attempts: u32,
    pub injector_episodes: u32,
}

/// Why the held-out bugs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HeldoutError {
    #[error("{0}: no bug directory (`<id>/bug.json` and the artifact) in it")]
    NoBugs(std::path::PathBuf),
    #[error(
        "{dir}: none of its {total} valid bugs is held out by the split; pass the bugs of \
         the split's repository, or no --split"
    )]
    NoneHeldOut {
        dir: std::path::PathBuf,
        total: usize,
    },
    #[error(transparent)]
    Store(#[from] ssr_game::bug_store::StoreError),
    #[error(transparent)]
    Split(#[from] ssr_game::split::SplitError),
}

/// The valid bugs under `dir` (`ssr inject`'s layout), sorted by id.
pub fn load_bugs(dir: &Path) -> Result<Vec<(String, Arc<Bug>)>, HeldoutError> {
    let listed = bug_store::list(dir).map_err(|_| HeldoutError::NoBugs(dir.into()))?;
    let mut bugs = Vec::new();
    for d in listed {
        let s = bug_store::read(&d)?;
        if !s.report.valid {
            continue;
        }
        let bug = Bug {
            artifact: s.artifact,
            report: s.report,
            meta: s.meta,
            higher_order_patch: None,
        };
        bugs.push((bug.meta.id.clone(), Arc::new(bug)));
    }
    if bugs.is_empty() {
        return Err(HeldoutError::NoBugs(dir.into()));
    }
    Ok(bugs)
}

/// The bugs of `dir` (as [`load_bugs`] gave them) that `split` holds out.
pub fn held_out_only(
    bugs: Vec<(String, Arc<Bug>)>,
    split: &SplitJudge,
    dir: &Path,
) -> Result<Vec<(String, Arc<Bug>)>, HeldoutError> {
    let total = bugs.len();
    let mut kept = Vec::new();
    for (id, bug) in bugs {
        if split.judge_bug(&bug)?.held_out {
            kept.push((id, bug));
        }
    }
    if kept.is_empty() {
        return Err(HeldoutError::NoneHeldOut {
            dir: dir.into(),
            total,
        });
    }
    Ok(kept)
}

/// Plays the evaluation on `table` (its policy and arena; its bug store and journal
/// receive the episodes, so pass scratch ones). `None` when shutdown stopped it.
pub async fn evaluate(
    table: &Table,
    bugs: &[(String, Arc<Bug>)],
    plan: &HeldoutPlan,
) -> Result<Option<HeldoutReport>, SelfPlayError> {
    let permits = Arc::new(Semaphore::new(table.config.max_concurrent_episodes.max(1)));
    let mut solvers = JoinSet::new();
    for (bug_id, bug) in bugs {
        for attempt in 0..plan.attempts {
            let a = Attempt {
                bug_id: bug_id.clone(),
                bug: bug.clone(),
                attempt,
            };
            let id = format!("{}-{bug_id}-sol{attempt}", plan.label);
            let (table, permits) = (table.clone(), permits.clone());
            solvers.spawn(async move { solver_attempt(&table, 0, a, id, permits).await });
        }
    }
    let mut injectors = JoinSet::new();
    for k in 0..plan.injector_episodes {
        let id = format!("{}-inj{k}", plan.label);
        let (table, permits) = (table.clone(), permits.clone());
        injectors.spawn(async move { injector_episode(&table, id, permits).await });
    }
    let mut done = Vec::new();
    while let Some(r) = solvers.join_next().await {
        match r.map_err(|e| SelfPlayError::Task(e.to_string()))?? {
            Some(d) => done.push(d),
            None => return Ok(None),
        }
    }
    let mut judged = Vec::new();
    while let Some(r) = injectors.join_next().await {
        match r.map_err(|e| SelfPlayError::Task(e.to_string()))?? {
            Some((d, verdict, _)) => judged.push((d, verdict.valid && !verdict.is_infra())),
            None => return Ok(None),
        }
    }
    Ok(Some(report(bugs, plan, &done, &judged)))
}

/// The metrics of finished episodes.
fn report(
    bugs: &[(String, Arc<Bug>)],
    plan: &HeldoutPlan,
    solvers: &[Done],
    injectors: &[(Done, bool)],
) -> HeldoutReport {
    let mut per_bug: BTreeMap<&str, BugResult> = bugs
        .iter()
        .map(|(id, _)| {
            let r = BugResult {
                bug_id: id.clone(),
                attempts: 0,
                scored: 0,
                solved: 0,
            };
            (id.as_str(), r)
        })
        .collect();
    for d in solvers {
        let Some(r) = d.record.bug_id.as_deref().and_then(|b| per_bug.get_mut(b)) else {
            continue;
        };
        r.attempts += 1;
        if d.record.infra.is_none() {
            r.scored += 1;
            if matches!(&d.record.outcome, Outcome::Solver(o) if o.solved) {
                r.solved += 1;
            }
        }
    }
    let per_bug: Vec<BugResult> = per_bug.into_values().collect();
    let bugs_scored = per_bug.iter().filter(|b| b.scored > 0).count();
    let bugs_solved = per_bug.iter().filter(|b| b.solved > 0).count();
    let every = || solvers.iter().chain(injectors.iter().map(|(d, _)| d));
    let malformed_calls: u64 = every().map(|d| u64::from(d.record.malformed_calls)).sum();
    let turns: u64 = every().map(|d| u64::from(d.record.turns)).sum();
    let injector_judged = injectors.iter().filter(|(d, _)| d.record.infra.is_none());
    let injector_valid = injector_judged.clone().filter(|(_, valid)| *valid).count() as u32;
    let injector_judged = injector_judged.count() as u32;
    let per_attempt = |f: &dyn Fn(&Done) -> f64| {
        (!solvers.is_empty()).then(|| solvers.iter().map(f).sum::<f64>() / solvers.len() as f64)
    };
    HeldoutReport {
        bugs: bugs.len(),
        bugs_scored,
        attempts_per_bug: plan.attempts,
        bugs_solved,
        solve_rate: (bugs_scored > 0).then(|| bugs_solved as f64 / bugs_scored as f64),
        solve_rate_ci95: wilson(bugs_solved, bugs_scored, Z95),
        solver_attempts: solvers.len(),
        infra_attempts: solvers.iter().filter(|d| d.record.infra.is_some()).count(),
        malformed_calls,
        turns,
        malformed_rate: (turns > 0).then(|| malformed_calls as f64 / turns as f64),
        mean_turns: per_attempt(&|d| f64::from(d.record.turns)),
        mean_sampled_tokens: per_attempt(&|d| d.record.sampled_tokens as f64),
        injector_episodes: plan.injector_episodes,
        injector_judged,
        injector_valid,
        valid_artifact_rate: (injector_judged > 0)
            .then(|| f64::from(injector_valid) / f64::from(injector_judged)),
        per_bug,
    }
}

/// The label of the evaluation after round `round` of a run seeded `seed` (its
/// episode ids and seeds; distinct per round so each point samples afresh).
pub fn round_label(seed: u64, round: u32) -> String {
    format!("ho{:x}-r{round}", derive_seed(seed, "heldout") & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4
    }

    /// Known values (Wilson 1927; as R's `prop.test(correct = FALSE)` and
    /// statsmodels' `proportion_confint(method="wilson")` give them).
    #[test]
    fn wilson_interval_matches_known_values() {
        assert!(close(wilson(5, 10, Z95).unwrap(), (0.2366, 0.7634)));
        assert!(close(wilson(0, 10, Z95).unwrap(), (0.0, 0.2775)));
        assert!(close(wilson(10, 10, Z95).unwrap(), (0.7225, 1.0)));
        assert!(close(wilson(0, 4, Z95).unwrap(), (0.0, 0.4899)));
        assert!(close(wilson(4, 4, Z95).unwrap(), (0.5101, 1.0)));
        assert!(close(wilson(81, 263, Z95).unwrap(), (0.2553, 0.3662)));
        assert_eq!(wilson(0, 0, Z95), None);
        assert_eq!(wilson(3, 2, Z95), None);
    }
}
