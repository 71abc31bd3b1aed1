//! Resuming a run with the settings a command line gave: a resumed run keeps its
//! recorded settings, takes a given one that agrees with them (and `--rounds`, which may
//! grow the run, and the training device, which belongs to the machine, not the run:
//! checkpoints are the same on every device), and refuses a given one that conflicts,
//! naming it. It never ignores a setting silently.
//!
//! Owns: the recorded setup's typed form ([`Setup`], `run.json`'s `config`), the list of
//! settings a command line can give ([`Setting`]) and the merge. Does not own: parsing
//! flags (the binary) or the run directory (`rundir`).

use super::SelfPlayConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a run was started with (`run.json`'s `config` object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub selfplay: SelfPlayConfig,
    /// The repository played on (canonical path).
    pub repo: PathBuf,
    /// `embedded`, `openai` or `scripted`.
    pub policy_kind: String,
    /// Where the repository came from when it was taken out of the run's image (its
    /// image id and base patch: a resumed run checks the image still has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ssr_game::image::ImageMeta>,
    /// The checkpoint the embedded policy started from (`--weights`), so that a resume
    /// before the first round's checkpoint starts from it again, not from the GGUF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
}

/// A setting a command line gives explicitly (a flag, or the settings file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setting {
    ConfigFile,
    Repo,
    Policy,
    Rounds,
    Seed,
    Attempts,
    Injectors,
    Procedural,
    Concurrency,
    Train,
    Device,
    ToolsPolicy,
    ToolsDirs,
    TestEnv,
    Split,
    Heldout,
    Image,
    Workdir,
    BasePatch,
    ImageExec,
    ShapedReward,
    CompactFiltering,
    Rft,
    RejectTampering,
}

impl Setting {
    /// The flag that gives it.
    pub fn flag(self) -> &'static str {
        match self {
            Setting::ConfigFile => "--config",
            Setting::Repo => "--repo",
            Setting::Policy => "--policy",
            Setting::Rounds => "--rounds",
            Setting::Seed => "--seed",
            Setting::Attempts => "--attempts",
            Setting::Injectors => "--injectors",
            Setting::Procedural => "--procedural",
            Setting::Concurrency => "--concurrency",
            Setting::Train => "--train",
            Setting::Device => "--device",
            Setting::ToolsPolicy => "--tools-policy",
            Setting::ToolsDirs => "--tools-dir",
            Setting::TestEnv => "--test-env",
            Setting::Split => "--split",
            Setting::Heldout => "--heldout-bugs",
            Setting::Image => "--image",
            Setting::Workdir => "--workdir",
            Setting::BasePatch => "--base-patch",
            Setting::ImageExec => "--image-exec",
            Setting::ShapedReward => "--shaped-reward",
            Setting::CompactFiltering => "--compact-filtering",
            Setting::Rft => "--rft",
            Setting::RejectTampering => "--reject-tampering",
        }
    }
}

/// A given setting that disagrees with the run being resumed.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "this run was started with {flag} {recorded}, and {flag} {asked} was given: a resumed \
     run keeps its settings. Resume without {flag} (or with the recorded value), or start \
     a new run with another --out"
)]
pub struct ResumeConflict {
    pub flag: &'static str,
    pub recorded: String,
    pub asked: String,
}

/// The setup a resumed run uses: `recorded`, with `--rounds` and the device from
/// `asked` when given (the device also by a settings file). Every other setting in
/// `given` must agree with the recorded one.
pub fn resume(recorded: Setup, asked: &Setup, given: &[Setting]) -> Result<Setup, ResumeConflict> {
    let (r, a) = (&recorded.selfplay, &asked.selfplay);
    for &setting in given {
        let differs = |x: String, y: String| {
            (x != y).then(|| ResumeConflict {
                flag: setting.flag(),
                recorded: x,
                asked: y,
            })
        };
        let d = |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| {
            differs(format!("{x:?}"), format!("{y:?}"))
        };
        let conflict = match setting {
            Setting::Rounds | Setting::Device => None,
            Setting::ConfigFile => {
                let without_rounds = |c: &SelfPlayConfig| SelfPlayConfig {
                    rounds: 0,
                    device: ssr_trainer::Device::Auto,
                    ..c.clone()
                };
                (without_rounds(r) != without_rounds(a)).then(|| ResumeConflict {
                    flag: setting.flag(),
                    recorded: "other settings".into(),
                    asked: "a settings file that differs from them".into(),
                })
            }
            Setting::Repo => d(&recorded.repo, &asked.repo),
            Setting::Policy => differs(recorded.policy_kind.clone(), asked.policy_kind.clone()),
            Setting::Seed => d(&r.seed, &a.seed),
            Setting::Attempts => d(&r.attempts_per_bug, &a.attempts_per_bug),
            Setting::Injectors => d(&r.injector_rollouts, &a.injector_rollouts),
            Setting::Procedural => d(&r.procedural_per_round, &a.procedural_per_round),
            Setting::Concurrency => d(&r.max_concurrent_episodes, &a.max_concurrent_episodes),
            Setting::Train => d(&r.train, &a.train),
            Setting::ToolsPolicy => d(&r.tools_policy, &a.tools_policy),
            Setting::ToolsDirs => d(&r.tools_dirs, &a.tools_dirs),
            Setting::TestEnv => d(&r.test_env, &a.test_env),
            Setting::Split => d(&r.split, &a.split),
            Setting::Heldout => d(&r.heldout, &a.heldout),
            Setting::Image => d(&r.image, &a.image),
            Setting::Workdir => d(&r.workdir, &a.workdir),
            Setting::BasePatch => d(&r.base_patch, &a.base_patch),
            Setting::ImageExec => d(&r.image_exec, &a.image_exec),
            Setting::ShapedReward => d(&r.shaped_reward, &a.shaped_reward),
            Setting::CompactFiltering => d(&r.compact_filtering, &a.compact_filtering),
            Setting::Rft => d(&r.rft, &a.rft),
            Setting::RejectTampering => d(&r.reject_tampering, &a.reject_tampering),
        };
        if let Some(c) = conflict {
            return Err(c);
        }
    }
    let mut setup = recorded;
    if given.contains(&Setting::Rounds) {
        setup.selfplay.rounds = asked.selfplay.rounds;
    }
    if given.contains(&Setting::Device) || given.contains(&Setting::ConfigFile) {
        setup.selfplay.device = asked.selfplay.device;
    }
    Ok(setup)
}

/// The checkpoint a resumed run's embedded policy starts from: the recorded one, unless
/// `asked` names one, which must then be the recorded one (`--weights` is a setting of
/// the run like any other: it is never ignored, and never silently replaced).
pub fn resume_weights(
    recorded: Option<PathBuf>,
    asked: Option<&std::path::Path>,
) -> Result<Option<PathBuf>, ResumeConflict> {
    let Some(asked) = asked else {
        return Ok(recorded);
    };
    let same = recorded.as_deref().is_some_and(|r| same_path(r, asked));
    if same {
        return Ok(recorded);
    }
    Err(ResumeConflict {
        flag: "--weights",
        recorded: recorded.map_or_else(
            || "none (the GGUF's weights)".into(),
            |r| r.display().to_string(),
        ),
        asked: asked.display().to_string(),
    })
}

/// Two spellings of one path (relative or through a link) are the same setting.
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(seed: u64, rounds: u32) -> Setup {
        Setup {
            selfplay: SelfPlayConfig {
                seed,
                rounds,
                ..SelfPlayConfig::default()
            },
            repo: "/repo".into(),
            policy_kind: "scripted".into(),
            image: None,
            weights: None,
        }
    }

    #[test]
    fn nothing_given_keeps_the_recorded_setup() {
        let got = resume(setup(7, 3), &setup(0, 1), &[]).unwrap();
        assert_eq!(got, setup(7, 3));
    }

    #[test]
    fn rounds_given_are_used() {
        let got = resume(setup(7, 1), &setup(7, 4), &[Setting::Rounds]).unwrap();
        assert_eq!(got.selfplay.rounds, 4);
    }

    #[test]
    fn the_device_given_at_resume_is_used() {
        let mut asked = setup(7, 1);
        asked.selfplay.device = ssr_trainer::Device::Cpu;
        let got = resume(setup(7, 1), &asked, &[Setting::Device]).unwrap();
        assert_eq!(got.selfplay.device, ssr_trainer::Device::Cpu);
        let kept = resume(setup(7, 1), &asked, &[]).unwrap();
        assert_eq!(kept.selfplay.device, ssr_trainer::Device::Auto);
    }

    #[test]
    fn an_agreeing_setting_is_accepted() {
        let got = resume(setup(7, 1), &setup(7, 1), &[Setting::Seed, Setting::Policy]).unwrap();
        assert_eq!(got, setup(7, 1));
    }

    /// Regression: resume used to drop every flag but `--rounds` without a word.
    #[test]
    fn resume_refuses_a_conflicting_flag_instead_of_ignoring_it() {
        let e = resume(setup(7, 1), &setup(8, 1), &[Setting::Seed]).unwrap_err();
        assert_eq!(e.flag, "--seed");
        assert_eq!((e.recorded.as_str(), e.asked.as_str()), ("7", "8"));
        assert!(e.to_string().contains("--seed 7"), "{e}");

        let mut asked = setup(7, 1);
        asked.selfplay.attempts_per_bug = 99;
        let e = resume(setup(7, 1), &asked, &[Setting::Attempts]).unwrap_err();
        assert_eq!(e.flag, "--attempts");
        let e = resume(setup(7, 1), &asked, &[Setting::ConfigFile]).unwrap_err();
        assert_eq!(e.flag, "--config");

        let mut other_image = setup(7, 1);
        other_image.selfplay.base_patch = Some("/other.patch".into());
        let e = resume(setup(7, 1), &other_image, &[Setting::BasePatch]).unwrap_err();
        assert_eq!(e.flag, "--base-patch");
        other_image.selfplay.image_exec = ssr_sandbox::ImageExec::Docker;
        let e = resume(setup(7, 1), &other_image, &[Setting::ImageExec]).unwrap_err();
        assert_eq!(e.flag, "--image-exec");

        let mut other_repo = setup(7, 1);
        other_repo.repo = "/elsewhere".into();
        assert_eq!(
            resume(setup(7, 1), &other_repo, &[Setting::Repo])
                .unwrap_err()
                .flag,
            "--repo"
        );
    }

    #[test]
    fn a_resume_keeps_the_recorded_weights_and_refuses_other_ones() {
        let ck = PathBuf::from("/ckpt/round-0003");
        // Not given: the recorded checkpoint (or none) is used again.
        assert_eq!(resume_weights(Some(ck.clone()), None), Ok(Some(ck.clone())));
        assert_eq!(resume_weights(None, None), Ok(None));
        // Given and the same: accepted.
        assert_eq!(
            resume_weights(Some(ck.clone()), Some(&ck)),
            Ok(Some(ck.clone()))
        );
        // Given and different, or given where the run started from the GGUF: refused.
        let e = resume_weights(Some(ck.clone()), Some(std::path::Path::new("/other"))).unwrap_err();
        assert_eq!(e.flag, "--weights");
        assert_eq!(e.recorded, "/ckpt/round-0003");
        let e = resume_weights(None, Some(&ck)).unwrap_err();
        assert!(e.recorded.contains("GGUF"), "{e}");
    }
}
