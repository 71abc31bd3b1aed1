//! `ssr selfplay`: the self-play main job (inject, verify, solve, evaluate, reward,
//! higher-order bugs, trajectories, optional training), resumable from its run
//! directory. With `--image IMG` (or `image` in the settings file) every test run and
//! agent shell command runs in the image's environment, and without `--repo` the run
//! plays on the repository taken out of the image (`--workdir`, `--base-patch`); a
//! resumed run keeps them.

use anyhow::Context;
use clap::{Args, ValueEnum};
use ssr_agent::report::{summarize, summary_table};
use ssr_agent::selfplay::progress::BarProgress;
use ssr_agent::selfplay::resume::Setting;
use ssr_agent::selfplay::{
    NoProgress, OpenConfig, PolicyKind, PolicySources, Progress, RepoChoice, RunOutcome, SelfPlay,
    SelfPlayConfig,
};
use ssr_agent::shutdown;
use ssr_sandbox::ImageExec;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub const DEFAULT_MODEL: &str = ".models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `--policy`'s values (the library's [`PolicyKind`], with their help text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// The embedded SmolLM2-135M engine in-process.
    Embedded,
    /// An OpenAI-compatible server (`--base-url`).
    Openai,
    /// Recorded turns from a JSON file (`--script`).
    Scripted,
}

impl From<PolicyArg> for PolicyKind {
    fn from(a: PolicyArg) -> Self {
        match a {
            PolicyArg::Embedded => PolicyKind::Embedded,
            PolicyArg::Openai => PolicyKind::Openai,
            PolicyArg::Scripted => PolicyKind::Scripted,
        }
    }
}

/// Runs self-play rounds: each round runs injector episodes (plus procedural
/// injections), verifies the artifacts, runs G solver attempts per valid bug,
/// evaluates them, assigns rewards, makes higher-order bugs, and appends trajectories.
/// With no arguments it plays on the bundled example repository with the embedded
/// model and small budgets. Ctrl-C stops cleanly; running the same command with the
/// same `--out` resumes.
#[derive(Args)]
pub struct SelfPlayArgs {
    /// The repository to play on (a git repository with tests). Default: the image's
    /// with `--image`, else the bundled example, created once in `.examples/`.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Play in this container image's environment (SWE-bench style); without `--repo`
    /// the repository is taken out of the image (`image` in the settings file).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// The repository's path inside the image (default: the image's WORKDIR, else /repo).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// A patch applied to the image's repository first: the clean original the game
    /// starts from (a SWE-bench instance's gold patch; `base_patch` in the settings
    /// file, relative to that file).
    #[arg(long, value_name = "FILE")]
    pub base_patch: Option<PathBuf>,
    /// How commands enter the image: `rootfs` (bubblewrap over its unpacked root, the
    /// default) or `docker` (`docker run` per command).
    #[arg(long, value_name = "docker|rootfs")]
    pub image_exec: Option<ImageExec>,
    /// A TOML file of settings (see `SelfPlayConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The policy (default: embedded).
    #[arg(long, value_enum)]
    pub policy: Option<PolicyArg>,
    #[command(flatten)]
    pub source: PolicySourceArgs,
    #[arg(long)]
    pub rounds: Option<u32>,
    /// The run directory (default `runs/<seed>-<time>`); an existing one is resumed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Solver attempts per valid bug (G).
    #[arg(long)]
    pub attempts: Option<u32>,
    /// Model injector episodes per round.
    #[arg(long)]
    pub injectors: Option<u32>,
    /// Procedural injections per round.
    #[arg(long)]
    pub procedural: Option<u32>,
    /// Episodes running at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Take a training step on the embedded model after each round.
    #[arg(long)]
    pub train: bool,
    /// Where the training step runs: auto (CUDA device 0 when usable, else the CPU;
    /// never the emulated device), cpu, cuda or cuda:N (an error where it cannot run).
    /// The embedded policy generates on the CPU. Default: the settings file's, else auto.
    #[arg(long, value_name = "auto|cpu|cuda[:N]")]
    pub device: Option<ssr_trainer::Device>,
    /// The tool policy (TOML; `ssr tools policy` prints the built-in one to start
    /// from): which WASM tools each role gets, with what grants and limits. It
    /// replaces the built-in policy, so keep the standard tools' sections in it.
    #[arg(long, value_name = "FILE")]
    pub tools_policy: Option<PathBuf>,
    /// A folder of custom WASM tools (`tool.toml` + component); repeatable. A custom
    /// tool is offered to a role when the policy grants it.
    #[arg(long = "tools-dir", value_name = "DIR")]
    pub tools_dirs: Vec<PathBuf>,
    /// An environment variable every test run and agent shell command gets, for
    /// repositories whose tests need a setting; repeatable (adds to `[test_env]`).
    #[arg(long = "test-env", value_name = "KEY=VALUE", value_parser = crate::cli::verify::parse_test_env)]
    pub test_env: Vec<(String, String)>,
    #[command(flatten)]
    pub held: HeldOutFlags,
    #[command(flatten)]
    pub signal: SignalFlags,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The held-out flags of `ssr selfplay`.
#[derive(Args)]
pub struct HeldOutFlags {
    /// A held-out split (`ssr split`): the bugs it holds out, whoever made them, get
    /// no solver attempt and no training; each round reports how many.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// Held-out bugs to evaluate on every `--heldout-every` rounds (with `--split`,
    /// only those it holds out); the report plots the results as learning curves.
    #[arg(long, value_name = "DIR")]
    pub heldout_bugs: Option<PathBuf>,
    /// Rounds between held-out evaluations (with `--heldout-bugs`).
    #[arg(long, default_value_t = 1, requires = "heldout_bugs")]
    pub heldout_every: u32,
    /// Solver attempts per held-out bug (the K of pass@K).
    #[arg(long, default_value_t = 1, requires = "heldout_bugs")]
    pub heldout_attempts: u32,
}

impl HeldOutFlags {
    /// The flags given onto the settings.
    fn apply(self, cfg: &mut SelfPlayConfig) {
        if self.split.is_some() {
            cfg.split = self.split;
        }
        if let Some(bugs) = self.heldout_bugs {
            cfg.heldout = Some(ssr_agent::selfplay::config::HeldoutSchedule {
                every: self.heldout_every.max(1),
                bugs,
                attempts: self.heldout_attempts.max(1),
                ..cfg.heldout.clone().unwrap_or_default()
            });
        }
    }
}

/// The learning-signal flags of `ssr selfplay` (issue 14, item 4); each one is off
/// by default, which is the spec's game.
#[derive(Args)]
pub struct SignalFlags {
    /// What a failed solver attempt trains on: `none` (the spec's −1) or `similarity`
    /// (SWE-RL: its patch's similarity to the known fix of a procedural bug, in
    /// [−1, 1)). Solve counts and rates never change.
    #[arg(long, value_enum, value_name = "none|similarity")]
    pub shaped_reward: Option<ShapedRewardArg>,
    /// Compact filtering (DeepSWE): unsolved episodes that ran out of turns, context or
    /// time are masked from the loss instead of scored −1; counted per round.
    #[arg(long)]
    pub compact_filtering: bool,
    /// Rejection-sampling fine-tuning: write each round's solved attempts as
    /// demonstrations (`rft.jsonl`, failed and malformed turns masked); with
    /// `--train`, each step also takes a supervised step on them.
    #[arg(long)]
    pub rft: bool,
    /// A finding of the tampering scan (runner internals, exits, channel paths in a
    /// patch or an artifact's files) rejects: the bug is invalid, the solver's
    /// attempt is tampered (−1). Off by default: a finding is a note.
    #[arg(long)]
    pub reject_tampering: bool,
}

/// `--shaped-reward`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShapedRewardArg {
    /// The spec's flat −1 for a failed attempt.
    None,
    /// The patch's similarity to the true fix, mapped into [−1, 1).
    Similarity,
}

impl SignalFlags {
    /// The flags given onto the settings (a flag only turns a setting on).
    fn apply(self, cfg: &mut SelfPlayConfig) {
        use ssr_agent::selfplay::config::ShapedReward;
        match self.shaped_reward {
            Some(ShapedRewardArg::None) => cfg.shaped_reward = ShapedReward::None,
            Some(ShapedRewardArg::Similarity) => cfg.shaped_reward = ShapedReward::Similarity,
            None => {}
        }
        cfg.compact_filtering |= self.compact_filtering;
        cfg.rft |= self.rft;
        cfg.reject_tampering |= self.reject_tampering;
    }

    fn given(&self) -> [(Setting, bool); 4] {
        [
            (Setting::ShapedReward, self.shaped_reward.is_some()),
            (Setting::CompactFiltering, self.compact_filtering),
            (Setting::Rft, self.rft),
            (Setting::RejectTampering, self.reject_tampering),
        ]
    }
}

/// A parsed command line: the request to open the run, where, and how to print.
struct SelfPlayJob {
    open: OpenConfig,
    out: PathBuf,
    json: bool,
}

/// Where a policy comes from: the flags `ssr selfplay` and `ssr heldout` share.
#[derive(Args, Debug)]
pub struct PolicySourceArgs {
    /// GGUF model (embedded policy; also the tokenizer for exact ids with openai).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A training checkpoint, or a directory of them (its newest), whose weights the
    /// embedded policy starts from instead of `--model`'s (a warm start from `ssr sft`);
    /// `--model` still gives the tokenizer and chat template.
    #[arg(long, value_name = "CKPT")]
    pub weights: Option<PathBuf>,
    /// Recorded turns for the scripted policy.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model name sent to the server.
    #[arg(long, default_value = "default")]
    pub model_name: String,
}

impl PolicySourceArgs {
    /// The sources (the embedded model by default; the API key from `OPENAI_API_KEY`).
    pub fn sources(self) -> PolicySources {
        PolicySources {
            model: self.model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL)),
            weights: self.weights,
            script: self.script,
            base_url: self.base_url,
            model_name: self.model_name,
            api_key: std::env::var("OPENAI_API_KEY").ok(),
        }
    }
}

/// The settings before flags: the file's (its `base_patch` taken relative to the
/// file), or the policy's defaults.
pub fn base_config(file: Option<&Path>, kind: PolicyKind) -> anyhow::Result<SelfPlayConfig> {
    Ok(match (file, kind) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut cfg = SelfPlayConfig::from_toml(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            if let Some(p) = &cfg.base_patch {
                let dir = path.parent().unwrap_or(Path::new("."));
                cfg.base_patch = Some(absolute(&dir.join(p))?);
            }
            cfg
        }
        (None, PolicyKind::Embedded) => SelfPlayConfig::embedded_quick(),
        (None, _) => SelfPlayConfig {
            attempts_per_bug: 4,
            ..SelfPlayConfig::default()
        },
    })
}

/// `path` made absolute and canonical (a run records it; a resumed run reads it again).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("{} does not exist", path.display()))
}

/// The image flags over the settings file's image fields; which of them were given.
struct ImageFlags {
    image: Option<String>,
    workdir: Option<PathBuf>,
    base_patch: Option<PathBuf>,
    image_exec: Option<ImageExec>,
}

impl ImageFlags {
    fn given(&self) -> [(Setting, bool); 4] {
        [
            (Setting::Image, self.image.is_some()),
            (Setting::Workdir, self.workdir.is_some()),
            (Setting::BasePatch, self.base_patch.is_some()),
            (Setting::ImageExec, self.image_exec.is_some()),
        ]
    }

    fn apply(self, cfg: &mut SelfPlayConfig) -> anyhow::Result<()> {
        if self.image.is_some() {
            cfg.image = self.image;
        }
        if self.workdir.is_some() {
            cfg.workdir = self.workdir;
        }
        if let Some(p) = self.base_patch {
            cfg.base_patch = Some(absolute(&p)?);
        }
        cfg.image_exec = self.image_exec.unwrap_or(cfg.image_exec);
        Ok(())
    }
}

/// `--repo`, else the image's repository when the settings name an image, else the
/// bundled example.
fn repo_choice(repo: Option<PathBuf>, cfg: &SelfPlayConfig) -> anyhow::Result<RepoChoice> {
    Ok(match repo {
        Some(r) => RepoChoice::Path(absolute(&r)?),
        None if cfg.image.is_some() => RepoChoice::Image,
        None => RepoChoice::Example,
    })
}

/// A new run's directory when `--out` is not given: `runs/<unix time>-<seed>`.
fn default_out(seed: u64) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from(format!("runs/{t}-{seed}"))
}

/// Made inside the async runtime: the Ctrl-C watcher (`stop_on_ctrl_c`) is a task on it.
fn resolve(args: SelfPlayArgs) -> anyhow::Result<SelfPlayJob> {
    // Destructured whole: a flag added to `SelfPlayArgs` and not wired here does not
    // compile.
    let SelfPlayArgs {
        repo,
        image,
        workdir,
        base_patch,
        image_exec,
        config,
        policy,
        source,
        rounds,
        out,
        seed,
        attempts,
        injectors,
        procedural,
        concurrency,
        train,
        device,
        tools_policy,
        tools_dirs,
        test_env,
        held,
        signal,
        json,
    } = args;
    let kind = policy.map_or(PolicyKind::Embedded, PolicyKind::from);
    let mut cfg = base_config(config.as_deref(), kind)?;
    let image = ImageFlags {
        image,
        workdir,
        base_patch,
        image_exec,
    };
    let given: Vec<Setting> = [
        (Setting::ConfigFile, config.is_some()),
        (Setting::Repo, repo.is_some()),
        (Setting::Policy, policy.is_some()),
        (Setting::Rounds, rounds.is_some()),
        (Setting::Seed, seed.is_some()),
        (Setting::Attempts, attempts.is_some()),
        (Setting::Injectors, injectors.is_some()),
        (Setting::Procedural, procedural.is_some()),
        (Setting::Concurrency, concurrency.is_some()),
        (Setting::Train, train),
        (Setting::Device, device.is_some()),
        (Setting::ToolsPolicy, tools_policy.is_some()),
        (Setting::ToolsDirs, !tools_dirs.is_empty()),
        (Setting::TestEnv, !test_env.is_empty()),
        (Setting::Split, held.split.is_some()),
        (Setting::Heldout, held.heldout_bugs.is_some()),
    ]
    .into_iter()
    .chain(image.given())
    .chain(signal.given())
    .filter_map(|(setting, is_given)| is_given.then_some(setting))
    .collect();
    cfg.rounds = rounds.unwrap_or(cfg.rounds);
    cfg.seed = seed.unwrap_or(cfg.seed);
    cfg.attempts_per_bug = attempts.unwrap_or(cfg.attempts_per_bug);
    cfg.injector_rollouts = injectors.unwrap_or(cfg.injector_rollouts);
    cfg.procedural_per_round = procedural.unwrap_or(cfg.procedural_per_round);
    cfg.max_concurrent_episodes = concurrency.unwrap_or(cfg.max_concurrent_episodes);
    cfg.train |= train;
    cfg.device = device.unwrap_or(cfg.device);
    if tools_policy.is_some() {
        cfg.tools_policy = tools_policy;
    }
    cfg.tools_dirs.extend(tools_dirs);
    cfg.test_env.extend(test_env);
    held.apply(&mut cfg);
    image.apply(&mut cfg)?;
    signal.apply(&mut cfg);
    let repo = repo_choice(repo, &cfg)?;
    let out = out.unwrap_or_else(|| default_out(cfg.seed));
    Ok(job(cfg, given, repo, kind, source.sources(), out, json))
}

/// The job of resolved settings: what the flags gave, and the run's progress display
/// and Ctrl-C watcher.
fn job(
    asked: SelfPlayConfig,
    given: Vec<Setting>,
    repo: RepoChoice,
    policy: PolicyKind,
    sources: PolicySources,
    out: PathBuf,
    json: bool,
) -> SelfPlayJob {
    // Made here, inside the async runtime: the Ctrl-C watcher is a task on it.
    let progress: Arc<dyn Progress> = if json {
        Arc::new(NoProgress)
    } else {
        Arc::new(BarProgress::stderr())
    };
    SelfPlayJob {
        open: OpenConfig {
            asked,
            given,
            repo,
            policy,
            sources,
            shutdown: stop_on_ctrl_c(),
            progress,
        },
        out,
        json,
    }
}

pub fn run(args: SelfPlayArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

/// Ctrl-C asks for a clean stop; a second one aborts.
pub fn stop_on_ctrl_c() -> ssr_agent::shutdown::Shutdown {
    let (handle, rx) = shutdown::channel();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstopping: finished episodes are kept; run the same command to resume (Ctrl-C again to abort)"
            );
            handle.request();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    rx
}

async fn run_async(args: SelfPlayArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let job = resolve(args)?;
    let opened = SelfPlay::open(&job.out, job.open)?;
    if opened.resumed {
        eprintln!(
            "resuming {} (seed {})",
            job.out.display(),
            opened.selfplay.config.seed
        );
    }
    let outcome = opened.selfplay.run().await?;
    let report = opened.selfplay.run.report_path();
    let metrics = opened.selfplay.close(&opened.meta)?;
    let printed = Printed {
        out: &job.out,
        report: &report,
        json: job.json,
    };
    printed.summary(&metrics, outcome, started.elapsed());
    Ok(if outcome == RunOutcome::Interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where the summary points to, and in which form it is printed.
struct Printed<'a> {
    out: &'a Path,
    report: &'a Path,
    json: bool,
}

impl Printed<'_> {
    fn summary(
        &self,
        metrics: &[ssr_agent::rundir::RoundMetrics],
        outcome: RunOutcome,
        elapsed: std::time::Duration,
    ) {
        let summary = summarize(metrics);
        let last_train = metrics.last().and_then(|m| m.train.as_ref());
        if self.json {
            // "last_train": the last round's training step (its device, loss, new
            // weights' fingerprint, no-signal message), null without --train.
            println!(
                "{}",
                serde_json::json!({"run_dir": self.out, "outcome": format!("{outcome:?}").to_lowercase(), "summary": summary, "report": self.report, "elapsed_s": elapsed.as_secs_f64(), "last_train": last_train})
            );
            return;
        }
        print!("{}", summary_table(metrics));
        println!(
            "bugs from the model: {} valid of {} injector episodes; procedural: {}; run directory: {}; report: {}",
            summary.model_valid,
            summary.injector_episodes,
            summary.procedural_valid,
            self.out.display(),
            self.report.display()
        );
        if let Some(t) = last_train {
            let on = t
                .device
                .as_ref()
                .map_or_else(String::new, |d| format!(" on {d}"));
            if let Some(none) = &t.no_signal {
                println!("last training step{on}: {none}");
            }
            println!(
                "last training step{on}: loss {:.4}, grad norm {:.4}, {} trained tokens; new weights {} in {}",
                t.loss,
                t.grad_norm,
                t.trained_tokens,
                t.weights_after,
                t.checkpoint.display()
            );
        }
        let secs = elapsed.as_secs();
        println!("elapsed: {}m {:02}s", secs / 60, secs % 60);
        if outcome == RunOutcome::Interrupted {
            println!("interrupted: run the same command again to resume");
        }
    }
}
