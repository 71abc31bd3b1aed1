//! One rule for what an attempt scores, used by self-play, by the evaluator and by
//! the environment server. Each attempt gets exactly one [`AttemptScore`], decided in
//! this order:
//!
//! 1. **infra**: the sandbox, the engine or the model could not run (a sandbox or
//!    set-up failure of a test run, a stored state that does not apply, a model that
//!    is unreachable or fails). No reward, no trajectory, not counted in the
//!    injector's solve rate.
//! 2. **tampered**: the test process ran but its result cannot be trusted
//!    (`SSR_SPEC.md` section 11): −1, with notes.
//! 3. **scored**: the spec's ±1 (section 5).
//!
//! And for the injector ([`injector_score`]): a valid bug with fewer than ⌈G/2⌉
//! scored attempts gives its injector no reward; otherwise the reward of section 7
//! (`reward`) over the scored attempts only.
//!
//! Does not own: deciding what a test run showed (`evaluate`), the reward formulas
//! (`reward`), or what an agent's episode ended with (the agent reports a model
//! failure through [`AttemptScore::model_failed`]).

use crate::evaluate::EvalOutcome;
use crate::reward::{InjectorRewardKind, injector_reward, shaped_solver_reward, solver_reward};
use serde::{Deserialize, Serialize};

/// What one solver attempt scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptScore {
    /// The sandbox, the engine or the model could not run: no reward, no trajectory.
    Infra { reason: String },
    /// The run's result was forged or cannot be trusted: −1.
    Tampered { notes: Vec<String> },
    /// The spec's reward: +1 solved, −1 otherwise.
    Scored { reward: f64 },
}

impl AttemptScore {
    /// The score of an attempt whose model call failed (unreachable, an HTTP error,
    /// garbage it could not read): infra, whatever the workspace holds. Checked before
    /// any evaluation, which is then not run.
    pub fn model_failed(error: &str) -> Self {
        AttemptScore::Infra {
            reason: format!("the model failed: {error}"),
        }
    }

    /// The score of an evaluated attempt, from the evaluator's outcome. Exhaustive on
    /// purpose: a new outcome must say which of the three it is.
    pub fn of(outcome: &EvalOutcome) -> Self {
        match outcome {
            EvalOutcome::Infra { error } => AttemptScore::Infra {
                reason: error.clone(),
            },
            EvalOutcome::Tampered { notes } => AttemptScore::Tampered {
                notes: notes.clone(),
            },
            EvalOutcome::Solved => AttemptScore::Scored {
                reward: solver_reward(true),
            },
            EvalOutcome::EmptyPatch
            | EvalOutcome::DoesNotApply { .. }
            | EvalOutcome::TimedOut { .. }
            | EvalOutcome::RunFailed { .. }
            | EvalOutcome::TestsFailing { .. } => AttemptScore::Scored {
                reward: solver_reward(false),
            },
        }
    }

    /// The reward, `None` for infra.
    pub fn reward(&self) -> Option<f64> {
        match self {
            AttemptScore::Infra { .. } => None,
            AttemptScore::Tampered { .. } => Some(solver_reward(false)),
            AttemptScore::Scored { reward } => Some(*reward),
        }
    }

    /// Whether the attempt solved its bug (the only way to count in a solve rate).
    pub fn solved(&self) -> bool {
        matches!(self, AttemptScore::Scored { reward } if *reward > 0.0)
    }

    /// Whether the attempt is left out of rewards, training and solve rates.
    pub fn is_infra(&self) -> bool {
        matches!(self, AttemptScore::Infra { .. })
    }

    /// The reward the attempt's trajectory trains on. `true_fix` is the bug's known
    /// fix when patch-similarity shaping is on (SWE-RL): a failed, scored attempt then
    /// trains on [`shaped_solver_reward`] of its `patch`. A solve stays +1, a tampered
    /// attempt −1 and an infra one has none: shaping never rewards a forged run, and
    /// never gives an infra attempt a score. Whether it solved stays [`Self::solved`].
    pub fn training_reward(&self, patch: &str, true_fix: Option<&str>) -> Option<f64> {
        match (self, true_fix) {
            (AttemptScore::Scored { .. }, Some(fix)) if !self.solved() => {
                Some(shaped_solver_reward(patch, fix))
            }
            _ => self.reward(),
        }
    }

    /// The infra reason, when it is one.
    pub fn infra_reason(&self) -> Option<&str> {
        match self {
            AttemptScore::Infra { reason } => Some(reason),
            _ => None,
        }
    }
}

/// The fewest scored attempts a valid bug needs before its injector is rewarded:
/// ⌈G/2⌉ of the `group` (G) attempts asked for.
pub fn min_scored_attempts(group: usize) -> usize {
    group.div_ceil(2)
}

/// The injector's reward from its bug's verdict and the scores of the bug's
/// first-order attempts (`group` = G asked for). `None`: no reward (the bug was valid
/// but fewer than ⌈G/2⌉ attempts were scored, so its solve rate says too little).
/// Infra attempts are simply not counted: the solve rate is solved / scored.
///
/// Why the ⌈G/2⌉ rule only under the solve-rate reward: the validity-only reward does
/// not read the attempts at all, so their number cannot make it unreliable.
pub fn injector_score<'a>(
    kind: InjectorRewardKind,
    valid: bool,
    attempts: impl IntoIterator<Item = &'a AttemptScore>,
    group: usize,
) -> Option<f64> {
    if !valid {
        return Some(injector_reward(kind, false, 0, 0));
    }
    let (mut solved, mut scored) = (0, 0);
    for a in attempts {
        if !a.is_infra() {
            scored += 1;
            solved += usize::from(a.solved());
        }
    }
    if matches!(kind, InjectorRewardKind::SolveRate { .. }) && scored < min_scored_attempts(group) {
        return None;
    }
    Some(injector_reward(kind, true, solved, scored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(r: f64) -> AttemptScore {
        AttemptScore::Scored { reward: r }
    }

    fn infra() -> AttemptScore {
        AttemptScore::Infra {
            reason: "sandbox".into(),
        }
    }

    #[test]
    fn each_outcome_is_one_of_the_three() {
        let error = || "e".to_string();
        let cases = [
            (EvalOutcome::Solved, Some(1.0), false),
            (EvalOutcome::EmptyPatch, Some(-1.0), false),
            (
                EvalOutcome::DoesNotApply { error: error() },
                Some(-1.0),
                false,
            ),
            (EvalOutcome::TimedOut { error: error() }, Some(-1.0), false),
            (EvalOutcome::RunFailed { error: error() }, Some(-1.0), false),
            (
                EvalOutcome::TestsFailing {
                    failing: 1,
                    missing: 0,
                },
                Some(-1.0),
                false,
            ),
            (EvalOutcome::Tampered { notes: vec![] }, Some(-1.0), false),
            (EvalOutcome::Infra { error: error() }, None, true),
        ];
        for (outcome, reward, infra) in cases {
            let s = AttemptScore::of(&outcome);
            assert_eq!(s.reward(), reward, "{outcome:?}");
            assert_eq!(s.is_infra(), infra, "{outcome:?}");
            assert_eq!(s.solved(), outcome == EvalOutcome::Solved, "{outcome:?}");
        }
    }

    #[test]
    fn only_failed_scored_attempts_are_shaped() {
        let fix = "-x = 2\n+x = 1\n";
        let near = "-x = 2\n+x = 3\n";
        // A failed attempt with a known fix trains on its similarity, inside [−1, 1).
        let shaped = scored(-1.0).training_reward(near, Some(fix)).unwrap();
        assert!(shaped > -1.0 && shaped < 1.0, "{shaped}");
        assert_eq!(shaped, shaped_solver_reward(near, fix));
        // No known fix: the flat −1.
        assert_eq!(scored(-1.0).training_reward(near, None), Some(-1.0));
        // A solve stays +1 whatever its patch looks like.
        assert_eq!(scored(1.0).training_reward("", Some(fix)), Some(1.0));
        // Infra never gets a score, tampered never more than −1, even with the exact fix.
        assert_eq!(infra().training_reward(fix, Some(fix)), None);
        let tampered = AttemptScore::Tampered { notes: vec![] };
        assert_eq!(tampered.training_reward(fix, Some(fix)), Some(-1.0));
    }

    #[test]
    fn a_model_failure_is_infra_and_has_no_reward() {
        let s = AttemptScore::model_failed("HTTP 500");
        assert!(s.is_infra());
        assert_eq!(s.reward(), None);
        assert!(s.infra_reason().unwrap().contains("HTTP 500"));
    }

    #[test]
    fn infra_attempts_are_not_counted_in_the_solve_rate() {
        let k = InjectorRewardKind::default();
        // G = 8: 2 solved of 4 scored (s = 0.5), 4 infra left out.
        let mut a = vec![scored(1.0), scored(1.0), scored(-1.0), scored(-1.0)];
        a.extend((0..4).map(|_| infra()));
        let r = injector_score(k, true, &a, 8).unwrap();
        assert!((r - (1.0 - 1.8 * 0.5)).abs() < 1e-9, "{r}");
    }

    #[test]
    fn fewer_than_half_scored_gives_the_injector_no_reward() {
        let k = InjectorRewardKind::default();
        // G = 8 needs 4 scored; G = 3 needs 2.
        let three: Vec<_> = (0..3).map(|_| scored(-1.0)).chain([infra()]).collect();
        assert_eq!(injector_score(k, true, &three, 8), None);
        assert_eq!(injector_score(k, true, &three, 5), Some(-0.8));
        assert_eq!(min_scored_attempts(3), 2);
        assert_eq!(min_scored_attempts(8), 4);
        assert_eq!(injector_score(k, true, &[] as &[AttemptScore], 8), None);
        // G = 0 (no attempts asked): the old rule, solve rate 0.
        assert_eq!(
            injector_score(k, true, &[] as &[AttemptScore], 0),
            Some(-0.8)
        );
    }

    #[test]
    fn a_rejected_bug_is_minus_one_whatever_the_attempts() {
        let k = InjectorRewardKind::default();
        assert_eq!(
            injector_score(k, false, &[] as &[AttemptScore], 8),
            Some(-1.0)
        );
        let v = InjectorRewardKind::ValidityOnly;
        assert_eq!(injector_score(v, true, &[infra()], 8), Some(1.0));
    }

    #[test]
    fn tampered_is_minus_one_and_never_solved() {
        let s = AttemptScore::Tampered {
            notes: vec!["canary".into()],
        };
        assert_eq!(s.reward(), Some(-1.0));
        assert!(!s.solved());
        assert!(!s.is_infra());
    }
}
