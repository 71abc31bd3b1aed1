//! A played round in memory ([`Round`]), the injectors' rewards over it, its
//! trajectories and its metrics ([`RoundMetrics::from`]).
//!
//! Owns: the rewards' bookkeeping (which attempts count for which injector; the
//! formula is `ssr-game`'s), the trajectory groups, every metric's definition. Does
//! not own: playing the phases (the sibling modules), the record formats (`rundir`,
//! the trainer's trajectory).

use super::InjectorRewardKind;
use super::table::Done;
use crate::rundir::{Outcome, RoundMetrics, TrainReport};
use crate::trajectory::to_trajectory;
use crate::transcript::{EndKind, Transcript};
use serde_json::json;
use ssr_game::{BugSource, Verdict};
use ssr_trainer::trajectory::Trajectory;
use std::collections::BTreeMap;

/// Everything one round played, in memory.
#[derive(Debug, Default)]
pub struct Round {
    pub round: u32,
    /// Injector episodes the configuration asked for.
    pub injector_rollouts: u32,
    /// Procedural bugs the configuration asked for.
    pub procedural_attempted: u32,
    pub injectors: Vec<Done>,
    /// Verdicts on the first-order bugs (model and procedural).
    pub verdicts: Vec<Verdict>,
    /// First-order solver attempts, by episode id.
    pub solvers: Vec<Done>,
    pub higher_order_verdicts: Vec<Verdict>,
    pub higher_order_solvers: Vec<Done>,
    pub phase_ms: BTreeMap<String, u64>,
    pub weights_used: Option<String>,
    pub train: Option<TrainReport>,
    pub trajectories_skipped: u32,
    pub wall_ms: u64,
}

fn solved(d: &Done) -> bool {
    matches!(&d.record.outcome, Outcome::Solver(o) if o.solved)
}

impl Round {
    /// Sets each injector's reward from its bug's validity and the share of its
    /// first-order attempts that solved it (SSR_SPEC.md section 7).
    pub fn reward_injectors(&mut self, kind: InjectorRewardKind) {
        let mut per_bug: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for d in &self.solvers {
            let e = per_bug
                .entry(d.record.bug_id.as_deref().unwrap_or_default())
                .or_default();
            e.1 += 1;
            e.0 += usize::from(solved(d));
        }
        for d in &mut self.injectors {
            let id = d.record.episode_id.as_str();
            let valid = self.verdicts.iter().any(|v| v.bug_id == id && v.valid);
            let (solved, attempts) = per_bug.get(id).copied().unwrap_or((0, 0));
            let r = ssr_game::reward::injector_reward(kind, valid, solved, attempts);
            d.record.reward = Some(r as f32);
        }
    }

    /// Every solver attempt, first-order then higher-order.
    pub fn all_solvers(&self) -> impl Iterator<Item = &Done> {
        self.solvers.iter().chain(&self.higher_order_solvers)
    }

    /// The round's trajectories: injectors grouped per round, solvers per bug.
    /// `transcript` gives the transcripts of resumed episodes. An episode without
    /// token ids (a chat-only policy) gives none; it is counted in
    /// `trajectories_skipped`.
    pub fn trajectories<E>(
        &mut self,
        seed: u64,
        mut transcript: impl FnMut(&str) -> Result<Transcript, E>,
    ) -> Result<Vec<Trajectory>, E> {
        let round = self.round;
        let injector_group = format!("r{round}-injector");
        let mut out = Vec::new();
        let mut skipped = 0;
        let episodes = self
            .injectors
            .iter()
            .map(|d| (d, injector_group.clone()))
            .chain(
                self.all_solvers()
                    .map(|d| (d, d.record.bug_id.clone().unwrap_or_default())),
            );
        for (d, group) in episodes {
            let t = match &d.transcript {
                Some(t) => t.clone(),
                None => transcript(&d.record.episode_id)?,
            };
            let extra = json!({"round": round, "bug": d.record.bug_id, "seed": seed});
            match to_trajectory(&t, d.record.reward.unwrap_or(0.0), &group, extra) {
                Ok(traj) => out.push(traj),
                Err(_) => skipped += 1,
            }
        }
        self.trajectories_skipped = skipped;
        Ok(out)
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn ratio(part: u32, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / whole as f64
    }
}

impl From<&Round> for RoundMetrics {
    fn from(r: &Round) -> Self {
        let valid_from = |s: BugSource| {
            r.verdicts
                .iter()
                .filter(|v| v.source == s && v.valid)
                .count() as u32
        };
        let model_valid = valid_from(BugSource::Model);
        let solvers: Vec<&Done> = r.all_solvers().collect();
        let solved = solvers.iter().filter(|d| solved(d)).count() as u32;
        let mut rejections = BTreeMap::new();
        for v in r
            .verdicts
            .iter()
            .chain(&r.higher_order_verdicts)
            .filter(|v| !v.valid)
        {
            let code = v.reason_code.clone().unwrap_or_else(|| "unknown".into());
            *rejections.entry(code).or_insert(0) += 1;
        }
        let everyone = || r.injectors.iter().chain(solvers.iter().copied());
        RoundMetrics {
            round: r.round,
            injector_episodes: r.injector_rollouts,
            model_submitted: r
                .injectors
                .iter()
                .filter(|d| d.record.end == EndKind::Submitted)
                .count() as u32,
            model_valid,
            procedural_attempted: r.procedural_attempted,
            procedural_valid: valid_from(BugSource::Procedural),
            validity_rate: ratio(model_valid, r.injector_rollouts as usize),
            higher_order_bugs: r.higher_order_verdicts.iter().filter(|v| v.valid).count() as u32,
            solver_episodes: solvers.len() as u32,
            solved,
            solve_rate: ratio(solved, solvers.len()),
            mean_injector_reward: mean(
                r.injectors
                    .iter()
                    .filter_map(|d| d.record.reward.map(f64::from)),
            ),
            mean_solver_reward: mean(
                solvers
                    .iter()
                    .filter_map(|d| d.record.reward.map(f64::from)),
            ),
            mean_injector_turns: mean(r.injectors.iter().map(|d| f64::from(d.record.turns))),
            mean_solver_turns: mean(solvers.iter().map(|d| f64::from(d.record.turns))),
            malformed_calls: everyone().map(|d| d.record.malformed_calls).sum(),
            sampled_tokens: everyone().map(|d| d.record.sampled_tokens as u64).sum(),
            phase_ms: r.phase_ms.clone(),
            train_loss: r.train.as_ref().map(|t| t.loss),
            weights_used: r.weights_used.clone(),
            train: r.train.clone(),
            wall_ms: r.wall_ms,
            rejections,
            trajectories_skipped: r.trajectories_skipped,
        }
    }
}
