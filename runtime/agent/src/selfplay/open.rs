//! Opening a self-play run: the composition root of `ssr selfplay`. From a validated
//! request ([`OpenConfig`]) and a run directory it resumes or starts the run's setup,
//! builds the policy, the trainer, the real game (`GameArena::open`) and its tool
//! host, records `run.json`, and gives back a [`SelfPlay`] ready to run.
//!
//! Owns: which setup a run directory plays with (a new run's from the request, a
//! resumed run's as recorded, checked by [`resume`]), building the players from it, the
//! bundled example repository a request without a repository plays on (or, on an image,
//! the image's: `image`), the run's scratch directory and the end of a run (scratch removed, `report.html` written).
//! Does not own: parsing flags or printing (the binary), the rounds (the phases, which
//! need none of this and take a [`super::Table`]), the resume rules (`resume`).

use super::game_arena::{GameArena, OpenArenaError, Stage, tool_host};
use super::image;
use super::resume::{ResumeConflict, Setting, Setup, resume, resume_weights};
use super::train::{EngineTrainer, TrainStepError};
use super::{HeldoutSet, Progress, SelfPlay, SelfPlayConfig, SelfPlayError, TrainStep};
use crate::chat::TextCodec;
use crate::policy::embedded::{EmbeddedPolicy, TrainerCodec};
use crate::policy::openai::{OpenAiConfig, OpenAiPolicy};
use crate::policy::scripted::ScriptedPolicy;
use crate::policy::{Policy, PolicyError};
use crate::report::render_html;
use crate::rundir::{RoundMetrics, RunDir, RunDirError, RunMeta};
use crate::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use ssr_game::split::{Split, SplitJudge};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the bundled example's commits are, relative to the project root.
pub const EXAMPLE_SOURCE: &str = "examples/python-textkit";
/// Where the bundled example's git repository is created once.
pub const EXAMPLE_REPO: &str = ".examples/python-textkit";

/// Which policy a run samples from (`run.json` records its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// The embedded engine, in this process.
    Embedded,
    /// An OpenAI-compatible server.
    Openai,
    /// Recorded turns from a file.
    Scripted,
}

impl PolicyKind {
    /// The name `run.json` records (and `--policy` takes).
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Embedded => "embedded",
            PolicyKind::Openai => "openai",
            PolicyKind::Scripted => "scripted",
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = OpenError;
    fn from_str(s: &str) -> Result<Self, OpenError> {
        [
            PolicyKind::Embedded,
            PolicyKind::Openai,
            PolicyKind::Scripted,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| OpenError::UnknownPolicy(s.to_string()))
    }
}

/// Where each policy's inputs are. Only the recorded kind's are needed: a resumed
/// run's policy kind is the recorded one.
#[derive(Clone, Debug)]
pub struct PolicySources {
    /// The GGUF model: the embedded policy's weights, and the tokenizer that gives the
    /// other policies exact token ids when it exists.
    pub model: PathBuf,
    /// A training checkpoint (or a directory of them) whose weights the embedded
    /// policy starts from instead of the GGUF's (`--weights`); `model` still gives the
    /// tokenizer and chat template.
    pub weights: Option<PathBuf>,
    /// The scripted policy's recorded turns.
    pub script: Option<PathBuf>,
    /// The OpenAI-compatible server's base URL.
    pub base_url: Option<String>,
    /// The model name sent to the server.
    pub model_name: String,
    /// The server's API key.
    pub api_key: Option<String>,
}

/// The repository a request plays on.
#[derive(Clone, Debug, PartialEq)]
pub enum RepoChoice {
    /// A git repository with tests (canonical path).
    Path(PathBuf),
    /// The bundled example ([`EXAMPLE_REPO`], created from [`EXAMPLE_SOURCE`] once).
    Example,
    /// The repository taken out of the run's image (`image` in the settings), with
    /// its base patch applied.
    Image,
}

/// A validated request to open a run: the settings it asks for, which of them were
/// given explicitly (a resumed run refuses a conflicting one), and its players' inputs.
pub struct OpenConfig {
    pub asked: SelfPlayConfig,
    pub given: Vec<Setting>,
    pub repo: RepoChoice,
    pub policy: PolicyKind,
    pub sources: PolicySources,
    pub shutdown: Shutdown,
    pub progress: Arc<dyn Progress>,
}

/// An opened run: ready to [`SelfPlay::run`], with the metadata it recorded.
pub struct Opened {
    pub selfplay: SelfPlay,
    pub meta: RunMeta,
    /// True when the run directory held a run already.
    pub resumed: bool,
}

/// Why a run could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("reading the recorded configuration of {path}: {source}")]
    Recorded {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("resuming {path}: {source}")]
    Resume {
        path: PathBuf,
        #[source]
        source: ResumeConflict,
    },
    #[error("unknown policy `{0}` (embedded, openai or scripted)")]
    UnknownPolicy(String),
    #[error("--policy {policy} needs {flag}")]
    Missing {
        policy: &'static str,
        flag: &'static str,
    },
    #[error("loading the embedded model (run `just setup`): {0}")]
    Model(#[source] PolicyError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("reading the tokenizer of {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("--train needs the embedded policy (the weights must live in this process)")]
    TrainNeedsEmbedded,
    #[error("setting up training: {0}")]
    Train(#[from] TrainStepError),
    #[error(transparent)]
    Arena(#[from] OpenArenaError),
    #[error("{0} not found: run from the project root or pass --repo")]
    NoExample(PathBuf),
    #[error("creating the example repository {path}: {source}")]
    Example {
        path: PathBuf,
        #[source]
        source: ssr_game::examples::ExamplesError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing run.json: {0}")]
    Meta(#[source] serde_json::Error),
    #[error("the held-out split: {0}")]
    Split(#[from] ssr_game::split::SplitError),
    #[error("the held-out bugs: {0}")]
    Heldout(#[from] super::heldout::HeldoutError),
    #[error("entering image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: ssr_sandbox::SandboxError,
    },
    #[error("--workdir and --base-patch (workdir, base_patch) need an image (--image, image)")]
    ImageSettingWithoutImage,
    #[error(
        "--base-patch (base_patch) applies to the repository taken out of the image: drop --repo"
    )]
    BasePatchWithRepo,
    #[error(
        "the repository is taken out of the run's image, and no image is set (--image IMG, or `image` in the settings file)"
    )]
    NoImage,
    #[error("taking the repository out of the image: {0}")]
    ImageRepo(#[from] ssr_game::image::ImageRepoError),
    #[error("cannot resume: {0}; start a new run with another --out")]
    ImageChanged(String),
    #[error("the image's repository cannot be played: {cause}\nfix: {fix}")]
    OriginalFails { cause: String, fix: String },
    #[error("the image's test suite did not run to the end: {0}")]
    OriginalDidNotRun(String),
}

impl SelfPlay {
    /// Opens the run in `run_dir` (created when new, resumed when it holds one): its
    /// setup, players and game, with `run.json` recorded.
    pub fn open(run_dir: &Path, config: OpenConfig) -> Result<Opened, OpenError> {
        let run = RunDir::open(run_dir)?;
        let previous = run.meta()?;
        let mut setup = match &previous {
            Some(prev) => resumed_setup(run_dir, prev, &config)?,
            None => Setup {
                selfplay: config.asked.clone(),
                repo: match &config.repo {
                    RepoChoice::Path(p) => p.clone(),
                    RepoChoice::Example => bundled_example()?,
                    // Taken out of the image below.
                    RepoChoice::Image => PathBuf::new(),
                },
                policy_kind: config.policy.name().into(),
                image: None,
                weights: config.sources.weights.as_deref().map(absolute),
            },
        };
        let image = image::open_image(&setup.selfplay)?;
        let from_image = match &previous {
            Some(_) => setup.image.is_some(),
            None => config.repo == RepoChoice::Image,
        };
        if !from_image && setup.selfplay.base_patch.is_some() {
            return Err(OpenError::BasePatchWithRepo);
        }
        if from_image {
            let game = image.as_ref().ok_or(OpenError::NoImage)?;
            let taken = image::take_repo(game, &setup.selfplay, setup.image.as_ref())?;
            setup.repo = taken.repo;
            setup.image = Some(taken.meta);
        }
        let kind: PolicyKind = setup.policy_kind.parse()?;
        let sources = PolicySources {
            weights: setup.weights.clone(),
            ..config.sources.clone()
        };
        let (policy, embedded) = build_policy(kind, &sources)?;
        let cfg = setup.selfplay.clone();
        let trainer: Option<Arc<dyn TrainStep>> = match (cfg.train, embedded) {
            (false, _) => None,
            (true, Some(p)) => Some(Arc::new(EngineTrainer::new(
                p.engine(),
                &cfg,
                run.checkpoints(),
            )?)),
            (true, None) => return Err(OpenError::TrainNeedsEmbedded),
        };
        let on_image = image.is_some();
        let stage = image.map(image::stage);
        let arena = build_arena(&cfg, &setup.repo, &scratch_dir(&run), stage)?;
        if on_image {
            image::check_clean_original(&arena, &cfg)?;
        }
        let (split, heldout) = held_out(&cfg, &setup.repo)?;
        let meta = RunMeta {
            id: run_dir
                .file_name()
                .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()),
            seed: cfg.seed,
            policy: policy.name(),
            created_unix: previous.as_ref().map_or_else(unix_now, |p| p.created_unix),
            config: serde_json::to_value(&setup).map_err(OpenError::Meta)?,
            starts: previous.as_ref().map_or(1, |p| p.starts + 1),
        };
        run.write_meta(&meta)?;
        let selfplay = SelfPlay {
            config: cfg,
            policy,
            arena,
            run,
            shutdown: config.shutdown,
            progress: config.progress,
            trainer,
            split,
            heldout,
            image: setup.image.clone(),
        };
        Ok(Opened {
            selfplay,
            meta,
            resumed: previous.is_some(),
        })
    }

    /// Ends a run: the game (and its workspaces) dropped, the scratch directory
    /// removed, `report.html` written. Gives the metrics of every finished round.
    pub fn close(self, meta: &RunMeta) -> Result<Vec<RoundMetrics>, SelfPlayError> {
        let run = self.run.clone();
        drop(self);
        // Best effort: a workspace a sandboxed process still holds is removed with the
        // next run's scratch, and a leftover costs disk, not correctness.
        let _ = std::fs::remove_dir_all(scratch_dir(&run));
        let metrics = run.metrics()?;
        let path = run.report_path();
        std::fs::write(&path, render_html(Some(meta), &metrics))
            .map_err(|source| RunDirError::Io { path, source })?;
        Ok(metrics)
    }
}

/// A run's held-out split and evaluation set, each when its settings name one.
type HeldOut = (Option<Arc<SplitJudge>>, Option<Arc<HeldoutSet>>);

/// The run's held-out split and evaluation set, when its settings name them (the
/// split is checked against the repository's HEAD, the bugs read once).
fn held_out(cfg: &SelfPlayConfig, repo: &Path) -> Result<HeldOut, OpenError> {
    let split = match &cfg.split {
        Some(path) => Some(Arc::new(SplitJudge::open(Split::read(path)?, repo)?)),
        None => None,
    };
    let heldout = match &cfg.heldout {
        Some(schedule) => {
            let mut bugs = super::heldout::load_bugs(&schedule.bugs)?;
            if let Some(judge) = &split {
                bugs = super::heldout::held_out_only(bugs, judge, &schedule.bugs)?;
            }
            Some(Arc::new(HeldoutSet {
                bugs,
                schedule: schedule.clone(),
            }))
        }
        None => None,
    };
    Ok((split, heldout))
}

/// Episode workspaces of a run live under it (same filesystem: snapshots can reflink).
fn scratch_dir(run: &RunDir) -> PathBuf {
    run.root().join("scratch")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A resumed run's setup: the recorded one, with the request's given settings checked.
fn resumed_setup(run_dir: &Path, prev: &RunMeta, config: &OpenConfig) -> Result<Setup, OpenError> {
    let recorded: Setup =
        serde_json::from_value(prev.config.clone()).map_err(|source| OpenError::Recorded {
            path: run_dir.to_path_buf(),
            source,
        })?;
    let asked = Setup {
        selfplay: config.asked.clone(),
        // Compared only when `--repo` was given, and then it is a path.
        repo: match &config.repo {
            RepoChoice::Path(p) => p.clone(),
            RepoChoice::Example | RepoChoice::Image => PathBuf::new(),
        },
        policy_kind: config.policy.name().into(),
        image: None,
        weights: None,
    };
    let conflict = |source| OpenError::Resume {
        path: run_dir.to_path_buf(),
        source,
    };
    let weights = resume_weights(recorded.weights.clone(), config.sources.weights.as_deref())
        .map_err(conflict)?;
    let setup = resume(recorded, &asked, &config.given).map_err(conflict)?;
    Ok(Setup { weights, ..setup })
}

/// A path as `run.json` records it: absolute, so a resume from another directory
/// finds the same file (canonical when it exists).
fn absolute(p: &Path) -> PathBuf {
    p.canonicalize()
        .unwrap_or_else(|_| std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p)))
}

/// The bundled example repository (canonical path), created once by the game's
/// example builder.
pub fn bundled_example() -> Result<PathBuf, OpenError> {
    let dest = PathBuf::from(EXAMPLE_REPO);
    if !dest.join(".git").is_dir() {
        let source = PathBuf::from(EXAMPLE_SOURCE);
        if !source.is_dir() {
            return Err(OpenError::NoExample(source));
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        ssr_game::examples::create_one(&source, &dest).map_err(|source| OpenError::Example {
            path: dest.clone(),
            source,
        })?;
    }
    dest.canonicalize()
        .map_err(|source| OpenError::Io { path: dest, source })
}

/// The policy the run samples from, and the embedded engine when it is one (training
/// needs it).
pub type BuiltPolicy = (Arc<dyn Policy>, Option<Arc<EmbeddedPolicy>>);

pub fn build_policy(kind: PolicyKind, src: &PolicySources) -> Result<BuiltPolicy, OpenError> {
    // The tokenizer gives exact ids to the policies that do not hold the model.
    let codec = || -> Result<Option<Arc<dyn TextCodec>>, OpenError> {
        src.model
            .exists()
            .then(|| load_codec(&src.model))
            .transpose()
    };
    let missing = |flag| OpenError::Missing {
        policy: kind.name(),
        flag,
    };
    Ok(match kind {
        PolicyKind::Embedded => {
            let p = Arc::new(
                EmbeddedPolicy::load_with_weights(&src.model, src.weights.as_deref(), 1)
                    .map_err(OpenError::Model)?,
            );
            (p.clone() as Arc<dyn Policy>, Some(p))
        }
        PolicyKind::Openai => {
            let config = OpenAiConfig {
                base_url: src.base_url.clone().ok_or_else(|| missing("--base-url"))?,
                model: src.model_name.clone(),
                api_key: src.api_key.clone(),
                ..OpenAiConfig::default()
            };
            (Arc::new(OpenAiPolicy::new(config, codec()?)?), None)
        }
        PolicyKind::Scripted => {
            let script = src
                .script
                .as_ref()
                .ok_or_else(|| missing("--script FILE"))?;
            (Arc::new(ScriptedPolicy::from_file(script, codec()?)?), None)
        }
    })
}

/// The tokenizer of a GGUF model, as the agent's [`TextCodec`] (exact token ids).
pub fn load_codec(path: &Path) -> Result<Arc<dyn TextCodec>, OpenError> {
    let err = |reason: String| OpenError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let f = ssr_trainer::gguf::GgufFile::open(path).map_err(|e| err(e.to_string()))?;
    let tok = ssr_trainer::tokenizer::Tokenizer::from_gguf(&f).map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(TrainerCodec::new(tok)))
}

/// The real game over `repo`, its workspaces under `scratch`, with the run's tool host;
/// commands on `stage` (an image's environment), else bubblewrap over the host.
pub fn build_arena(
    cfg: &SelfPlayConfig,
    repo: &Path,
    scratch: &Path,
    stage: Option<Stage>,
) -> Result<Arc<GameArena>, OpenError> {
    let tools = tool_host(cfg)?;
    let scratch = scratch.to_path_buf();
    Ok(Arc::new(match stage {
        Some(stage) => GameArena::open_on(cfg, repo, scratch, tools, stage)?,
        None => GameArena::open(cfg, repo, scratch, tools)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_kinds_parse_their_recorded_names() {
        for k in [
            PolicyKind::Embedded,
            PolicyKind::Openai,
            PolicyKind::Scripted,
        ] {
            assert_eq!(k.name().parse::<PolicyKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.name())
            );
        }
        assert!(matches!(
            "gpt".parse::<PolicyKind>(),
            Err(OpenError::UnknownPolicy(s)) if s == "gpt"
        ));
    }

    fn request(policy: PolicyKind, sources: PolicySources, train: bool) -> OpenConfig {
        OpenConfig {
            asked: SelfPlayConfig {
                train,
                seed: 3,
                ..SelfPlayConfig::default()
            },
            given: Vec::new(),
            repo: RepoChoice::Path("/nonexistent-repo".into()),
            policy,
            sources,
            shutdown: Shutdown::never(),
            progress: Arc::new(super::super::NoProgress),
        }
    }

    fn sources() -> PolicySources {
        PolicySources {
            model: "/nonexistent.gguf".into(),
            weights: None,
            script: None,
            base_url: None,
            model_name: "default".into(),
            api_key: None,
        }
    }

    #[test]
    fn a_policy_without_its_input_is_a_typed_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let e = SelfPlay::open(
            &dir.path().join("a"),
            request(PolicyKind::Scripted, sources(), false),
        )
        .err()
        .unwrap();
        assert!(
            matches!(
                e,
                OpenError::Missing {
                    flag: "--script FILE",
                    ..
                }
            ),
            "{e}"
        );
        let e = SelfPlay::open(
            &dir.path().join("b"),
            request(PolicyKind::Openai, sources(), false),
        )
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "--policy openai needs --base-url");
    }

    #[test]
    fn training_without_the_embedded_policy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.json");
        std::fs::write(&script, r#"{"injector": [], "solver": []}"#).unwrap();
        let src = PolicySources {
            script: Some(script),
            ..sources()
        };
        let e = SelfPlay::open(
            &dir.path().join("run"),
            request(PolicyKind::Scripted, src, true),
        )
        .err()
        .unwrap();
        assert!(matches!(e, OpenError::TrainNeedsEmbedded), "{e}");
    }

    #[test]
    fn a_resumed_run_refuses_a_conflicting_seed_before_building_anything() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let run = RunDir::open(&run_dir).unwrap();
        let recorded = Setup {
            selfplay: SelfPlayConfig {
                seed: 9,
                ..SelfPlayConfig::default()
            },
            repo: "/r".into(),
            policy_kind: "scripted".into(),
            image: None,
            weights: None,
        };
        run.write_meta(&RunMeta {
            id: "run".into(),
            seed: 9,
            policy: "scripted".into(),
            created_unix: 1,
            config: serde_json::to_value(&recorded).unwrap(),
            starts: 1,
        })
        .unwrap();
        let mut req = request(PolicyKind::Scripted, sources(), false);
        req.given = vec![Setting::Seed];
        let e = SelfPlay::open(&run_dir, req).err().unwrap();
        match e {
            OpenError::Resume { source, .. } => assert_eq!(source.flag, "--seed"),
            other => panic!("expected a resume conflict, got {other}"),
        }
        // A corrupt recorded configuration is an error, not a fresh run.
        run.write_meta(&RunMeta {
            config: serde_json::json!({"selfplay": 1}),
            ..run.meta().unwrap().unwrap()
        })
        .unwrap();
        let e = SelfPlay::open(&run_dir, request(PolicyKind::Scripted, sources(), false))
            .err()
            .unwrap();
        assert!(matches!(e, OpenError::Recorded { .. }), "{e}");
    }
}
