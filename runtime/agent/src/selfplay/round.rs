//! A played round in memory ([`Round`]), the injectors' rewards over it, its
//! trajectories and its metrics ([`RoundMetrics::from`]).
//!
//! Owns: the rewards' bookkeeping (which attempts count for which injector; the
//! formula and the infra rule are `ssr-game`'s `score`), the trajectory groups (an
//! episode with no reward, infra or an injector without enough scored attempts, is in
//! none: it is left out of its group's advantage and of training), every metric's
//! definition (infra episodes counted apart, out of the rates). Does not own: playing
//! the phases (the sibling modules), the record formats (`rundir`, the trainer's
//! trajectory).

use super::InjectorRewardKind;
use super::table::Done;
use crate::rundir::{Outcome, RoundMetrics, TrainReport};
use crate::trajectory::to_trajectory;
use crate::transcript::{EndKind, Transcript};
use serde_json::json;
use ssr_game::score::injector_score;
use ssr_game::{AttemptScore, BugSource, Verdict};
use ssr_trainer::train::Demo;
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
    pub trajectories_unrewarded: u32,
    /// Unsolved episodes masked from the loss by compact filtering.
    pub trajectories_truncated: u32,
    /// Solved attempts made into supervised demonstrations (`rft = true`).
    pub rft_demos: u32,
    pub wall_ms: u64,
    /// Valid bugs (first- and higher-order) the held-out split took out of the round.
    pub held_out: Vec<String>,
}

fn solved(d: &Done) -> bool {
    matches!(&d.record.outcome, Outcome::Solver(o) if o.solved)
}

fn is_infra(d: &Done) -> bool {
    d.record.infra.is_some()
}

/// Whether the episode ran out of turns, context or time without solving its bug
/// (an injector's never solves): what compact filtering masks.
fn truncated_unsolved(d: &Done) -> bool {
    let ran_out = matches!(
        d.record.end,
        EndKind::TurnsExhausted | EndKind::ContextExhausted | EndKind::EpisodeTimeout
    );
    ran_out && !solved(d)
}

/// A recorded solver attempt's score under the game's rule (from its record, which a
/// resumed run has too).
fn score_of(d: &Done) -> AttemptScore {
    match &d.record.infra {
        Some(reason) => AttemptScore::Infra {
            reason: reason.clone(),
        },
        None => AttemptScore::Scored {
            reward: if solved(d) { 1.0 } else { -1.0 },
        },
    }
}

impl Round {
    /// Sets each injector's reward from its bug's validity and the share of its
    /// scored first-order attempts that solved it (SSR_SPEC.md section 7; infra
    /// attempts not counted, and fewer than ⌈G/2⌉ scored, `attempts_per_bug` = G,
    /// gives no reward). An injector episode that is infra itself gets none.
    pub fn reward_injectors(&mut self, kind: InjectorRewardKind, attempts_per_bug: u32) {
        let mut per_bug: BTreeMap<&str, Vec<AttemptScore>> = BTreeMap::new();
        for d in &self.solvers {
            per_bug
                .entry(d.record.bug_id.as_deref().unwrap_or_default())
                .or_default()
                .push(score_of(d));
        }
        for d in &mut self.injectors {
            if d.record.infra.is_some() {
                d.record.reward = None;
                continue;
            }
            let id = d.record.episode_id.as_str();
            // A held-out bug is not trained on, its injector's episode included.
            if self.held_out.iter().any(|h| h == id) {
                d.record.reward = None;
                continue;
            }
            let valid = self.verdicts.iter().any(|v| v.bug_id == id && v.valid);
            let scores = per_bug.get(id).map_or(&[][..], Vec::as_slice);
            let r = injector_score(kind, valid, scores, attempts_per_bug as usize);
            d.record.reward = r.map(|r| r as f32);
        }
    }

    /// The first model failure's message when every episode of the round that asked
    /// the model failed (and there was at least one): the run cannot go on.
    pub fn model_unreachable(&self) -> Option<String> {
        let mut asked = self.injectors.iter().chain(self.all_solvers()).peekable();
        asked.peek()?;
        let mut first = None;
        for d in asked {
            if d.record.end != EndKind::PolicyError {
                return None;
            }
            first = first.or_else(|| d.record.infra.clone());
        }
        first
    }

    /// Every solver attempt, first-order then higher-order.
    pub fn all_solvers(&self) -> impl Iterator<Item = &Done> {
        self.solvers.iter().chain(&self.higher_order_solvers)
    }

    /// The round's trajectories: injectors grouped per round, solvers per bug.
    /// `transcript` gives the transcripts of resumed episodes. An episode without
    /// token ids (a chat-only policy) gives none; it is counted in
    /// `trajectories_skipped`. An episode without a reward (infra, or an injector
    /// whose bug had too few scored attempts) gives none either, so it is in no
    /// group's advantage; it is counted in `trajectories_unrewarded`. With `compact`
    /// (compact filtering), an unsolved episode that ran out of turns, context or time
    /// gives none: it is masked from the loss rather than scored, and counted in
    /// `trajectories_truncated`. A trajectory's reward is the record's training reward
    /// (shaped) when it has one.
    pub fn trajectories<E>(
        &mut self,
        seed: u64,
        compact: bool,
        mut transcript: impl FnMut(&str) -> Result<Transcript, E>,
    ) -> Result<Vec<Trajectory>, E> {
        let round = self.round;
        let injector_group = format!("r{round}-injector");
        let mut out = Vec::new();
        let (mut skipped, mut unrewarded, mut truncated) = (0, 0, 0);
        let episodes = self
            .injectors
            .iter()
            .map(|d| (d, injector_group.clone()))
            .chain(
                self.all_solvers()
                    .map(|d| (d, d.record.bug_id.clone().unwrap_or_default())),
            );
        for (d, group) in episodes {
            let reward = d.record.train_reward.or(d.record.reward);
            let Some(reward) = reward.filter(|_| !is_infra(d)) else {
                unrewarded += 1;
                continue;
            };
            if compact && truncated_unsolved(d) {
                truncated += 1;
                continue;
            }
            let t = match &d.transcript {
                Some(t) => t.clone(),
                None => transcript(&d.record.episode_id)?,
            };
            let extra = json!({"round": round, "bug": d.record.bug_id, "seed": seed});
            match to_trajectory(&t, reward, &group, extra) {
                Ok(traj) => out.push(traj),
                Err(_) => skipped += 1,
            }
        }
        self.trajectories_skipped = skipped;
        self.trajectories_unrewarded = unrewarded;
        self.trajectories_truncated = truncated;
        Ok(out)
    }

    /// The round's rejection-sampling demonstrations (`rft = true`): every solved,
    /// scored solver attempt with token ids, its erroneous turns masked
    /// ([`super::rft`]). Counted in `rft_demos`.
    pub fn rft_demos<E>(
        &mut self,
        seed: u64,
        mut transcript: impl FnMut(&str) -> Result<Transcript, E>,
    ) -> Result<Vec<Demo>, E> {
        let round = self.round;
        let mut out = Vec::new();
        for d in self.all_solvers().filter(|d| solved(d) && !is_infra(d)) {
            let t = match &d.transcript {
                Some(t) => t.clone(),
                None => transcript(&d.record.episode_id)?,
            };
            let metadata = json!({"round": round, "bug": d.record.bug_id, "seed": seed,
                "episode": d.record.episode_id, "source": "rft"});
            out.extend(super::rft::demo_of(&t, metadata));
        }
        self.rft_demos = out.len() as u32;
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
        let infra_attempts = solvers.iter().filter(|d| is_infra(d)).count() as u32;
        // Injector episodes that never reached the model made no artifact to judge:
        // out of the validity rate and the rejections.
        let infra_injectors: Vec<&str> = r
            .injectors
            .iter()
            .filter(|d| is_infra(d))
            .map(|d| d.record.episode_id.as_str())
            .collect();
        let mut rejections = BTreeMap::new();
        for v in r
            .verdicts
            .iter()
            .chain(&r.higher_order_verdicts)
            .filter(|v| !v.valid && !infra_injectors.contains(&v.bug_id.as_str()))
        {
            let code = v.reason_code.clone().unwrap_or_else(|| "unknown".into());
            *rejections.entry(code).or_insert(0) += 1;
        }
        let everyone = || r.injectors.iter().chain(solvers.iter().copied());
        let model_failed = || everyone().filter(|d| d.record.end == EndKind::PolicyError);
        let injectors_reached = r
            .injector_rollouts
            .saturating_sub(infra_injectors.len() as u32);
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
            validity_rate: ratio(model_valid, injectors_reached as usize),
            higher_order_bugs: r.higher_order_verdicts.iter().filter(|v| v.valid).count() as u32,
            solver_episodes: solvers.len() as u32,
            solved,
            solve_rate: ratio(solved, solvers.len() - infra_attempts as usize),
            infra_attempts,
            model_failures: model_failed().count() as u32,
            model_episodes: everyone().count() as u32,
            model_error: model_failed().find_map(|d| d.record.infra.clone()),
            injectors_unrewarded: r
                .injectors
                .iter()
                .filter(|d| d.record.reward.is_none())
                .count() as u32,
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
            trajectories_unrewarded: r.trajectories_unrewarded,
            trajectories_truncated: r.trajectories_truncated,
            rft_demos: r.rft_demos,
            held_out_excluded: r.held_out.len() as u32,
            heldout: None,
        }
    }
}
