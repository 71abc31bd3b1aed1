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
/// How the injector is rewarded (SSR_SPEC.md section 7): the game's setting.
pub use ssr_game::reward::InjectorRewardKind;

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
    pub injector_reward: InjectorRewardKind,
    /// At least this many passing tests in an artifact (the verifier's setting).
    pub min_passing_tests: usize,
    /// Take a training step on the embedded model after each round.
    pub train: bool,
    /// Learning rate of the training step.
    pub learning_rate: f32,
    /// Training checkpoints (`checkpoints/round-NNNN`, about 1.6 GB each for the
    /// embedded model) kept on disk: the newest K; older ones are deleted after each
    /// save, so a long run's disk use stays bounded. At least 1 (the one to resume).
    pub keep_checkpoints: std::num::NonZeroUsize,
    /// Where the training step runs (`--device`): `auto` (CUDA device 0 when usable,
    /// else the CPU; never the emulated device, `gpu-emu/`), `cpu`, `cuda` or `cuda:N`
    /// (an error where that device cannot run). The embedded policy generates on the CPU
    /// whatever this says.
    pub device: ssr_trainer::Device,
    /// The operator's tool policy (TOML, `ssr tools policy` prints the built-in one):
    /// grants per role and tool, limits, custom tools' ceilings. `None`: built-in.
    pub tools_policy: Option<std::path::PathBuf>,
    /// Folders scanned for custom WASM tools (a `tool.toml` next to its component).
    pub tools_dirs: Vec<std::path::PathBuf>,
    /// Environment variables every test run and every agent shell command gets, for
    /// repositories whose tests need a setting (`[test_env]` in TOML).
    pub test_env: std::collections::BTreeMap<String, String>,
    /// A held-out split file (`ssr split`): the bugs it holds out, whoever made them,
    /// get no solver attempt and no training; each round counts them. `None`: every
    /// bug plays (the spec's game).
    pub split: Option<std::path::PathBuf>,
    /// The held-out evaluation run every N rounds (`None`: never).
    pub heldout: Option<HeldoutSchedule>,
    /// A container image to play in (SWE-bench style): every test run and agent shell
    /// command runs in its environment, and without a repository the repository is
    /// taken out of it (`--image`).
    pub image: Option<String>,
    /// The repository's path inside the image (default: the image's `WORKDIR`, else
    /// `/repo`; `--workdir`).
    pub workdir: Option<std::path::PathBuf>,
    /// A patch applied to the image's repository first, the clean original the game
    /// starts from: a SWE-bench image's gold patch (`--base-patch`; in a settings file
    /// relative to that file).
    pub base_patch: Option<std::path::PathBuf>,
    /// How commands enter the image: `rootfs` (bubblewrap over its unpacked root) or
    /// `docker` (`docker run` per command; `--image-exec`).
    pub image_exec: ssr_sandbox::ImageExec,
    /// What a failed solver attempt trains on (`none`: the spec's −1; `similarity`:
    /// SWE-RL's patch similarity to the bug's known fix). Solve counts never change.
    pub shaped_reward: ShapedReward,
    /// DeepSWE's compact filtering: an unsolved episode that ran out of turns, context
    /// or time is left out of its group's advantages and of the step, instead of −1.
    pub compact_filtering: bool,
    /// Rejection-sampling fine-tuning: each round's solved attempts become supervised
    /// demonstrations (`rft.jsonl`, failed and malformed turns masked); with `train`,
    /// the round's step also takes a supervised step on them.
    pub rft: bool,
    /// A finding of the tampering scan (`ssr_game::scan`) on an injector's artifact or
    /// a solver's patch is a rejection (an invalid bug; a tampered attempt, −1) rather
    /// than a note: the game's `VerifyConfig::reject_tampering_findings`, off by
    /// default as `ssr verify --reject-tampering` is (`--reject-tampering`).
    pub reject_tampering: bool,
}

/// The training reward of a failed solver attempt (`shaped_reward` in TOML).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapedReward {
    /// The spec's flat −1.
    #[default]
    None,
    /// The patch's similarity to the true fix in [−1, 1) where the fix is known
    /// (first-order procedural bugs); −1 elsewhere.
    Similarity,
}

/// When and on what self-play runs the held-out evaluation (`[heldout]` in TOML).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeldoutSchedule {
    /// After every `every`-th round (and after round 0, the curve's first point).
    pub every: u32,
    /// The held-out bugs (`ssr inject`'s layout); with a split, only the bugs it
    /// holds out are played.
    pub bugs: std::path::PathBuf,
    /// Solver attempts per bug (the K of pass@K).
    pub attempts: u32,
    /// Injector episodes per evaluation, for the rate of valid artifacts.
    pub injector_episodes: u32,
}

impl Default for HeldoutSchedule {
    fn default() -> Self {
        HeldoutSchedule {
            every: 1,
            bugs: "heldout-bugs".into(),
            attempts: 1,
            injector_episodes: 0,
        }
    }
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
            injector_reward: InjectorRewardKind::default(),
            min_passing_tests: 5,
            train: false,
            learning_rate: 1e-5,
            keep_checkpoints: std::num::NonZeroUsize::new(2).expect("2 is not zero"),
            device: ssr_trainer::Device::Auto,
            tools_policy: None,
            tools_dirs: Vec::new(),
            test_env: Default::default(),
            split: None,
            heldout: None,
            image: None,
            workdir: None,
            base_patch: None,
            image_exec: ssr_sandbox::ImageExec::default(),
            shaped_reward: ShapedReward::None,
            compact_filtering: false,
            rft: false,
            reject_tampering: false,
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
            // Measured on the 2-core dev machine (load average 10-12 from other
            // builds): with 6 turns of 160 tokens the run took 10 m 56 s, almost all of
            // it generation (the engine re-reads the whole ~2,000-token context every
            // turn). Four turns of 128 tokens keep it well inside 15 minutes.
            injector_budgets: Budgets {
                max_turns: 4,
                max_new_tokens: 128,
                ..Budgets::embedded()
            },
            solver_budgets: Budgets {
                max_turns: 4,
                max_new_tokens: 128,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_settings_read_from_toml() {
        let c = SelfPlayConfig::from_toml(
            "image = \"ssr-test-swebench:latest\"\nworkdir = \"/testbed\"\nbase_patch = \"gold.patch\"\nimage_exec = \"docker\"\n",
        )
        .unwrap();
        assert_eq!(c.image.as_deref(), Some("ssr-test-swebench:latest"));
        assert_eq!(c.workdir, Some("/testbed".into()));
        assert_eq!(c.base_patch, Some("gold.patch".into()));
        assert_eq!(c.image_exec, ssr_sandbox::ImageExec::Docker);
        assert_eq!(
            SelfPlayConfig::default().image_exec,
            ssr_sandbox::ImageExec::RootFs
        );
        assert!(SelfPlayConfig::from_toml("image_exec = \"podman\"\n").is_err());
    }

    #[test]
    fn recorded_reward_setting_keeps_its_toml_form() {
        let c = SelfPlayConfig::from_toml("[injector_reward]\nkind = \"validity_only\"\n").unwrap();
        assert_eq!(c.injector_reward, InjectorRewardKind::ValidityOnly);
        let d = SelfPlayConfig::default();
        assert_eq!(
            d.injector_reward,
            InjectorRewardKind::SolveRate { alpha: 0.8 }
        );
    }

    #[test]
    fn signal_settings_default_to_the_spec() {
        let d = SelfPlayConfig::default();
        assert_eq!(
            (d.shaped_reward, d.compact_filtering, d.rft),
            (ShapedReward::None, false, false)
        );
        let c = SelfPlayConfig::from_toml(
            "shaped_reward = \"similarity\"\ncompact_filtering = true\nrft = true\n",
        )
        .unwrap();
        assert_eq!(
            (c.shaped_reward, c.compact_filtering, c.rft),
            (ShapedReward::Similarity, true, true)
        );
        assert!(SelfPlayConfig::from_toml("shaped_reward = \"bleu\"\n").is_err());
    }

    #[test]
    fn checkpoint_retention_is_bounded_by_default_and_never_zero() {
        assert_eq!(SelfPlayConfig::default().keep_checkpoints.get(), 2);
        let c = SelfPlayConfig::from_toml("keep_checkpoints = 5\n").unwrap();
        assert_eq!(c.keep_checkpoints.get(), 5);
        assert!(SelfPlayConfig::from_toml("keep_checkpoints = 0\n").is_err());
    }

    #[test]
    fn the_training_device_is_auto_unless_named() {
        assert_eq!(SelfPlayConfig::default().device, ssr_trainer::Device::Auto);
        let c = SelfPlayConfig::from_toml("device = \"cuda:1\"\n").unwrap();
        assert_eq!(c.device, ssr_trainer::Device::Cuda(1));
        assert!(SelfPlayConfig::from_toml("device = \"tpu\"\n").is_err());
    }
}
