//! `ssr selfplay`: the self-play main job (inject, verify, solve, evaluate, reward,
//! higher-order bugs, trajectories, optional training), resumable from its run
//! directory.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ssr_agent::Policy;
use ssr_agent::chat::TextCodec;
use ssr_agent::policy::embedded::{EmbeddedPolicy, TrainerCodec};
use ssr_agent::policy::openai::{OpenAiConfig, OpenAiPolicy};
use ssr_agent::policy::scripted::ScriptedPolicy;
use ssr_agent::report::{render_html, summarize, summary_table};
use ssr_agent::rundir::{RunDir, RunMeta};
use ssr_agent::selfplay::game_arena::{GameArena, tool_host};
use ssr_agent::selfplay::progress::BarProgress;
use ssr_agent::selfplay::resume::{Setting, Setup, resume};
use ssr_agent::selfplay::train::EngineTrainer;
use ssr_agent::selfplay::{NoProgress, Progress, RunOutcome, SelfPlay, SelfPlayConfig, TrainStep};
use ssr_agent::shutdown;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const DEFAULT_MODEL: &str = ".models/SmolLM2-135M-Instruct.Q4_1.gguf";
const DEFAULT_EXAMPLE: &str = "examples/python-textkit";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    /// The embedded SmolLM2-135M engine in-process.
    Embedded,
    /// An OpenAI-compatible server (`--base-url`).
    Openai,
    /// Recorded turns from a JSON file (`--script`).
    Scripted,
}

/// Runs self-play rounds: each round runs injector episodes (plus procedural
/// injections), verifies the artifacts, runs G solver attempts per valid bug,
/// evaluates them, assigns rewards, makes higher-order bugs, and appends trajectories.
/// With no arguments it plays on the bundled example repository with the embedded
/// model and small budgets. Ctrl-C stops cleanly; running the same command with the
/// same `--out` resumes.
#[derive(Args)]
pub struct SelfPlayArgs {
    /// The repository to play on (a git repository with tests). Default: the bundled
    /// example, created once in `.examples/`.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// A TOML file of settings (see `SelfPlayConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The policy (default: embedded).
    #[arg(long, value_enum)]
    pub policy: Option<PolicyKind>,
    /// GGUF model (embedded policy; also the tokenizer for exact ids with openai).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Recorded turns for the scripted policy.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model name sent to the server.
    #[arg(long, default_value = "default")]
    pub model_name: String,
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
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A parsed command line: the settings it asks for, which of them it gave explicitly
/// (a resumed run keeps its own and refuses a conflicting one), and how to run.
struct SelfPlayJob {
    asked: SelfPlayConfig,
    given: Vec<Setting>,
    repo: Option<PathBuf>,
    policy: PolicyKind,
    model: PathBuf,
    script: Option<PathBuf>,
    base_url: Option<String>,
    model_name: String,
    out: Option<PathBuf>,
    json: bool,
}

fn resolve(args: SelfPlayArgs) -> anyhow::Result<SelfPlayJob> {
    // Destructured whole: a flag added to `SelfPlayArgs` and not wired here does not
    // compile.
    let SelfPlayArgs {
        repo,
        config,
        policy,
        model,
        script,
        base_url,
        model_name,
        rounds,
        out,
        seed,
        attempts,
        injectors,
        procedural,
        concurrency,
        train,
        tools_policy,
        tools_dirs,
        test_env,
        json,
    } = args;
    let kind = policy.unwrap_or(PolicyKind::Embedded);
    let mut cfg = match (&config, kind) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SelfPlayConfig::from_toml(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        (None, PolicyKind::Embedded) => SelfPlayConfig::embedded_quick(),
        (None, _) => SelfPlayConfig {
            attempts_per_bug: 4,
            ..SelfPlayConfig::default()
        },
    };
    let mut given = Vec::new();
    let mut give = |setting: Setting, is_given: bool| {
        if is_given {
            given.push(setting);
        }
    };
    give(Setting::ConfigFile, config.is_some());
    give(Setting::Repo, repo.is_some());
    give(Setting::Policy, policy.is_some());
    give(Setting::Rounds, rounds.is_some());
    give(Setting::Seed, seed.is_some());
    give(Setting::Attempts, attempts.is_some());
    give(Setting::Injectors, injectors.is_some());
    give(Setting::Procedural, procedural.is_some());
    give(Setting::Concurrency, concurrency.is_some());
    give(Setting::Train, train);
    give(Setting::ToolsPolicy, tools_policy.is_some());
    give(Setting::ToolsDirs, !tools_dirs.is_empty());
    give(Setting::TestEnv, !test_env.is_empty());
    cfg.rounds = rounds.unwrap_or(cfg.rounds);
    cfg.seed = seed.unwrap_or(cfg.seed);
    cfg.attempts_per_bug = attempts.unwrap_or(cfg.attempts_per_bug);
    cfg.injector_rollouts = injectors.unwrap_or(cfg.injector_rollouts);
    cfg.procedural_per_round = procedural.unwrap_or(cfg.procedural_per_round);
    cfg.max_concurrent_episodes = concurrency.unwrap_or(cfg.max_concurrent_episodes);
    cfg.train |= train;
    if tools_policy.is_some() {
        cfg.tools_policy = tools_policy;
    }
    cfg.tools_dirs.extend(tools_dirs);
    cfg.test_env.extend(test_env);
    let repo = repo
        .map(|r| {
            r.canonicalize()
                .with_context(|| format!("{} does not exist", r.display()))
        })
        .transpose()?;
    Ok(SelfPlayJob {
        asked: cfg,
        given,
        repo,
        policy: kind,
        model: model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL)),
        script,
        base_url,
        model_name,
        out,
        json,
    })
}

fn policy_name(kind: PolicyKind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// The run directory and the setup it runs with: a new run's from the command line, a
/// resumed run's as recorded, with the command line's settings checked against it.
fn open_run(job: &SelfPlayJob) -> anyhow::Result<(PathBuf, RunDir, Setup, Option<RunMeta>)> {
    let out = job.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("runs/{t}-{}", job.asked.seed))
    });
    let run = RunDir::open(&out)?;
    let previous = run.meta()?;
    let setup = match &previous {
        Some(prev) => {
            let recorded: Setup = serde_json::from_value(prev.config.clone())
                .context("reading the recorded configuration")?;
            let asked = Setup {
                selfplay: job.asked.clone(),
                repo: job.repo.clone().unwrap_or_default(),
                policy_kind: policy_name(job.policy),
            };
            let setup = resume(recorded, &asked, &job.given)
                .with_context(|| format!("resuming {}", out.display()))?;
            eprintln!("resuming {} (seed {})", out.display(), setup.selfplay.seed);
            setup
        }
        None => Setup {
            selfplay: job.asked.clone(),
            repo: match &job.repo {
                Some(r) => r.clone(),
                None => default_repo()?.canonicalize()?,
            },
            policy_kind: policy_name(job.policy),
        },
    };
    Ok((out, run, setup, previous))
}

/// The bundled example repository, created once by the game's example builder.
pub fn default_repo() -> anyhow::Result<PathBuf> {
    let dest = PathBuf::from(".examples/python-textkit");
    if dest.join(".git").is_dir() {
        return Ok(dest);
    }
    let source = PathBuf::from(DEFAULT_EXAMPLE);
    anyhow::ensure!(
        source.is_dir(),
        "{} not found: run from the project root or pass --repo",
        source.display()
    );
    std::fs::create_dir_all(".examples")?;
    ssr_game::examples::create_one(&source, &dest)
        .with_context(|| format!("creating the example repository {}", dest.display()))?;
    Ok(dest)
}

fn load_codec(path: &Path) -> anyhow::Result<Arc<dyn TextCodec>> {
    let f = ssr_trainer::gguf::GgufFile::open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let tok = ssr_trainer::tokenizer::Tokenizer::from_gguf(&f).context("reading the tokenizer")?;
    Ok(Arc::new(TrainerCodec::new(tok)))
}

pub fn run(args: SelfPlayArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

/// The policy the run samples from, and the embedded engine when it is one (training
/// needs it).
type BuiltPolicy = (Arc<dyn Policy>, Option<Arc<EmbeddedPolicy>>);

/// The policy the run samples from (and the embedded engine, which training needs).
fn build_policy(job: &SelfPlayJob, kind: PolicyKind) -> anyhow::Result<BuiltPolicy> {
    let codec = || -> anyhow::Result<Option<Arc<dyn TextCodec>>> {
        job.model
            .exists()
            .then(|| load_codec(&job.model))
            .transpose()
    };
    Ok(match kind {
        PolicyKind::Embedded => {
            let p = Arc::new(
                EmbeddedPolicy::load(&job.model, 1)
                    .context("loading the embedded model (run `just setup`)")?,
            );
            (p.clone() as Arc<dyn Policy>, Some(p))
        }
        PolicyKind::Openai => {
            let base_url = job
                .base_url
                .clone()
                .context("--policy openai needs --base-url")?;
            let config = OpenAiConfig {
                base_url,
                model: job.model_name.clone(),
                api_key: std::env::var("OPENAI_API_KEY").ok(),
                ..OpenAiConfig::default()
            };
            (
                Arc::new(OpenAiPolicy::new(config, codec()?)?) as Arc<dyn Policy>,
                None,
            )
        }
        PolicyKind::Scripted => {
            let script = job
                .script
                .clone()
                .context("--policy scripted needs --script FILE")?;
            (
                Arc::new(ScriptedPolicy::from_file(&script, codec()?)?) as Arc<dyn Policy>,
                None,
            )
        }
    })
}

/// The real game over `repo`, its workspaces under the run's scratch directory.
fn build_arena(cfg: &SelfPlayConfig, repo: &Path, run: &RunDir) -> anyhow::Result<Arc<GameArena>> {
    let tools = tool_host(cfg)?;
    Ok(Arc::new(GameArena::open(
        cfg,
        repo,
        run.root().join("scratch"),
        tools,
    )?))
}

/// Ctrl-C asks for a clean stop; a second one aborts.
fn stop_on_ctrl_c() -> ssr_agent::shutdown::Shutdown {
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
    let (out, run, setup, previous) = open_run(&job)?;
    let kind = PolicyKind::from_str(&setup.policy_kind, true)
        .map_err(|e| anyhow::anyhow!("the recorded policy `{}`: {e}", setup.policy_kind))?;
    let (policy, embedded) = build_policy(&job, kind)?;
    let cfg = setup.selfplay.clone();
    let trainer: Option<Arc<dyn TrainStep>> = match (cfg.train, &embedded) {
        (false, _) => None,
        (true, Some(p)) => Some(Arc::new(EngineTrainer::new(
            p.engine(),
            cfg.learning_rate,
            cfg.temperature,
            cfg.seed,
            run.checkpoints(),
        )?)),
        (true, None) => {
            bail!("--train needs the embedded policy (the weights must live in this process)")
        }
    };
    let arena = build_arena(&cfg, &setup.repo, &run)?;
    let meta = RunMeta {
        id: out
            .file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()),
        seed: cfg.seed,
        policy: policy.name(),
        created_unix: previous.as_ref().map_or_else(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            },
            |p| p.created_unix,
        ),
        config: serde_json::to_value(&setup)?,
        starts: previous.as_ref().map_or(1, |p| p.starts + 1),
    };
    run.write_meta(&meta)?;
    let progress: Arc<dyn Progress> = if job.json {
        Arc::new(NoProgress)
    } else {
        Arc::new(BarProgress::stderr())
    };
    let sp = SelfPlay {
        config: cfg,
        policy,
        arena,
        run: run.clone(),
        shutdown: stop_on_ctrl_c(),
        progress,
        trainer,
    };
    let outcome = sp.run().await?;
    drop(sp);
    let _ = std::fs::remove_dir_all(run.root().join("scratch"));
    let metrics = run.metrics()?;
    std::fs::write(run.report_path(), render_html(Some(&meta), &metrics))?;
    print_summary(&job, &out, &run, &metrics, outcome, started.elapsed());
    Ok(if outcome == RunOutcome::Interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(
    job: &SelfPlayJob,
    out: &Path,
    run: &RunDir,
    metrics: &[ssr_agent::rundir::RoundMetrics],
    outcome: RunOutcome,
    elapsed: std::time::Duration,
) {
    let summary = summarize(metrics);
    if job.json {
        println!(
            "{}",
            serde_json::json!({"run_dir": out, "outcome": format!("{outcome:?}").to_lowercase(), "summary": summary, "report": run.report_path(), "elapsed_s": elapsed.as_secs_f64()})
        );
        return;
    }
    print!("{}", summary_table(metrics));
    println!(
        "bugs from the model: {} valid of {} injector episodes; procedural: {}; run directory: {}; report: {}",
        summary.model_valid,
        summary.injector_episodes,
        summary.procedural_valid,
        out.display(),
        run.report_path().display()
    );
    if let Some(t) = metrics.last().and_then(|m| m.train.as_ref()) {
        println!(
            "last training step: loss {:.4}, grad norm {:.4}, {} trained tokens; new weights {} in {}",
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
