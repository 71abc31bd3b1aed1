//! Rewards of both roles (`SSR_SPEC.md` section 7): the solver's ±1 and the
//! injector's reward from the solve rate of its bug, with α = 0.8 by default, plus the
//! validity-only variant the paper found almost as good.
//!
//! Does not own: deciding whether an attempt solved the bug (that is `evaluate`).

use serde::{Deserialize, Serialize};

/// Which injector reward is used.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InjectorRewardKind {
    /// −1 rejected; −α when the solve rate is 0 or 1; else `1 − (1 + α)·s`.
    SolveRate { alpha: f64 },
    /// −1 rejected, +1 valid (the solve rate is ignored).
    ValidityOnly,
}

impl Default for InjectorRewardKind {
    fn default() -> Self {
        InjectorRewardKind::SolveRate { alpha: 0.8 }
    }
}

/// Reward settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    pub injector: InjectorRewardKind,
    /// First-order solver attempts per bug (G).
    pub attempts_per_bug: usize,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            injector: InjectorRewardKind::default(),
            attempts_per_bug: 8,
        }
    }
}

/// +1 for a solved attempt, −1 otherwise.
pub fn solver_reward(solved: bool) -> f64 {
    if solved { 1.0 } else { -1.0 }
}

/// The injector's reward. `solved` is how many of the bug's `attempts` first-order
/// solver attempts scored +1; `valid` is the verifier's verdict. With no attempts
/// (the bug was valid but never attempted) the solve rate is taken as 0.
pub fn injector_reward(
    kind: InjectorRewardKind,
    valid: bool,
    solved: usize,
    attempts: usize,
) -> f64 {
    if !valid {
        return -1.0;
    }
    match kind {
        InjectorRewardKind::ValidityOnly => 1.0,
        InjectorRewardKind::SolveRate { alpha } => {
            let s = if attempts == 0 {
                0.0
            } else {
                solved.min(attempts) as f64 / attempts as f64
            };
            if s == 0.0 || s == 1.0 {
                -alpha
            } else {
                1.0 - (1.0 + alpha) * s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reward table of `SSR_SPEC.md` section 7, G = 8, α = 0.8.
    #[test]
    fn reward_table_of_section_7() {
        let k = InjectorRewardKind::default();
        let table = [
            (0, -0.8),
            (1, 0.775),
            (2, 0.55),
            (4, 0.10),
            (7, -0.575),
            (8, -0.8),
        ];
        for (solved, want) in table {
            let got = injector_reward(k, true, solved, 8);
            assert!((got - want).abs() < 1e-9, "k={solved}: {got} != {want}");
        }
        assert_eq!(injector_reward(k, false, 3, 8), -1.0);
    }

    #[test]
    fn validity_only_ignores_solve_rate() {
        let k = InjectorRewardKind::ValidityOnly;
        assert_eq!(injector_reward(k, true, 0, 8), 1.0);
        assert_eq!(injector_reward(k, true, 8, 8), 1.0);
        assert_eq!(injector_reward(k, false, 4, 8), -1.0);
    }

    #[test]
    fn solver_reward_is_plus_minus_one() {
        assert_eq!(solver_reward(true), 1.0);
        assert_eq!(solver_reward(false), -1.0);
    }
}
