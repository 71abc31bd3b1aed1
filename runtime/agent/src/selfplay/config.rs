//! The self-play run configuration (`--config FILE`, TOML). Every field has a default;
//! the resolved configuration is stored in the run's `run.json`.
//!
//! Owns: round sizes, budgets per role, sampling, concurrency, the procedural share,
//! reward choice, training switch. Does not own: the game's verification settings
//! (`ssr-game`'s `VerifyConfig`, passed through unchanged).

use crate::budget::Budgets;
use crate::prompts::StrategyMix;
use crate::toolcall::ToolCallSyntax;
use serde::{Deserialize, Serialize};

/// How the injector is rewarded (SSR_SPEC.md section 7).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InjectorReward {
    /// −1 rejected; −α when s ∈ {0, 1}; else 1 − (1 + α)·s.
    SolveRate { alpha: f64 },
    /// −1 rejected, +1 valid.
    ValidityOnly,
}

impl Default for InjectorReward {
    fn default() -> Self {
        InjectorReward::SolveRate { alpha: 0.8 }
    }
}

/// Settings of a self-play run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfPlayConfig {
    /// The seed every random choice of the run derives from.
    pub seed: u64,
    pub rounds: u32,
    /// Model injector episodes per round.
    pub injector_rollouts: u32,
    /// Procedural (model-free) injections per round, mixed in so solver episodes
    /// happen even while the model's bugs are all invalid.
    pub procedural_per_round: u32,
    /// Solver attempts per valid first-order bug (G).
    pub attempts_per_bug: u32,
    /// Solver attempts per higher-order bug.
    pub attempts_per_higher_order_bug: u32,
    /// Higher-order bugs made per round at most (0 disables them).
    pub max_higher_order_per_round: u32,
    /// Episodes running at once.
    pub max_concurrent_episodes: usize,
    pub strategy: StrategyMix,
    pub syntax: ToolCallSyntax,
    pub injector_budgets: Budgets,
    pub solver_budgets: Budgets,
    pub temperature: f32,
    pub top_p: f32,
    pub injector_reward: InjectorReward,
    /// At least this many passing tests in an artifact (the verifier's setting).
    pub min_passing_tests: usize,
    /// Take a training step on the embedded model after each round.
    pub train: bool,
    /// Learning rate of the training step.
    pub learning_rate: f32,
}

impl Default for SelfPlayConfig {
    fn default() -> Self {
        SelfPlayConfig {
            seed: 0,
            rounds: 1,
            injector_rollouts: 2,
            procedural_per_round: 1,
            attempts_per_bug: 8,
            attempts_per_higher_order_bug: 2,
            max_higher_order_per_round: 2,
            max_concurrent_episodes: 8,
            strategy: StrategyMix::RemovalOrHistory,
            syntax: ToolCallSyntax::Cwm,
            injector_budgets: Budgets::cwm(),
            solver_budgets: Budgets::cwm(),
            temperature: 1.0,
            top_p: 1.0,
            injector_reward: InjectorReward::default(),
            min_passing_tests: 5,
            train: false,
            learning_rate: 1e-5,
        }
    }
}

impl SelfPlayConfig {
    /// Defaults that finish within about 15 minutes with the embedded model on a
    /// 2-core machine: few short episodes, small groups.
    pub fn embedded_quick() -> Self {
        SelfPlayConfig {
            injector_rollouts: 1,
            procedural_per_round: 1,
            attempts_per_bug: 2,
            attempts_per_higher_order_bug: 1,
            max_higher_order_per_round: 1,
            max_concurrent_episodes: 2,
            injector_budgets: Budgets {
                max_turns: 6,
                max_new_tokens: 160,
                ..Budgets::embedded()
            },
            solver_budgets: Budgets {
                max_turns: 6,
                max_new_tokens: 160,
                ..Budgets::embedded()
            },
            temperature: 0.7,
            ..SelfPlayConfig::default()
        }
    }

    /// Parses a TOML configuration (missing fields take their defaults).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The injector's reward for a bug (SSR_SPEC.md section 7).
    pub fn injector_reward(&self, valid: bool, solved: u32, attempts: u32) -> f32 {
        if !valid {
            return -1.0;
        }
        match self.injector_reward {
            InjectorReward::ValidityOnly => 1.0,
            InjectorReward::SolveRate { alpha } => {
                let s = if attempts == 0 {
                    0.0
                } else {
                    f64::from(solved.min(attempts)) / f64::from(attempts)
                };
                if s == 0.0 || s == 1.0 {
                    -alpha as f32
                } else {
                    (1.0 - (1.0 + alpha) * s) as f32
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injector_rewards_match_the_paper_table() {
        let c = SelfPlayConfig::default();
        let r = |k| c.injector_reward(true, k, 8);
        assert!((r(1) - 0.775).abs() < 1e-6);
        assert!((r(2) - 0.55).abs() < 1e-6);
        assert!((r(4) - 0.10).abs() < 1e-6);
        assert!((r(7) + 0.575).abs() < 1e-6);
        assert!((r(0) + 0.8).abs() < 1e-6 && (r(8) + 0.8).abs() < 1e-6);
        assert_eq!(c.injector_reward(false, 3, 8), -1.0);
    }
}
