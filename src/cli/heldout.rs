//! `ssr heldout --policy P --bugs DIR --attempts K [--split FILE] [--json]`: the
//! held-out evaluation of a policy (not `ssr evaluate`, which scores one patch): K
//! solver attempts per held-out bug and optional injector episodes, nothing trained.
//!
//! `--json` prints `{"repo", "not_held_out", "report": {"bugs", "bugs_scored",
//! "attempts_per_bug", "bugs_solved", "solve_rate", "solve_rate_ci95": [lo, hi],
//! "solver_attempts", "infra_attempts", "malformed_calls", "turns", "malformed_rate",
//! "mean_turns", "mean_sampled_tokens", "injector_episodes", "injector_judged",
//! "injector_valid", "valid_artifact_rate", "per_bug": [{"bug_id", "attempts",
//! "scored", "solved"}]}}` (rates `null` when nothing was scored).

use super::selfplay::{PolicyArg, PolicySourceArgs, base_config, stop_on_ctrl_c};
use anyhow::Context;
use clap::Args;
use ssr_agent::selfplay::heldout::HeldoutPlan;
use ssr_agent::selfplay::heldout_open::{HeldoutRequest, run_heldout};
use ssr_agent::selfplay::progress::BarProgress;
use ssr_agent::selfplay::{NoProgress, PolicyKind, PolicySources, Progress};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Evaluates a policy on held-out bugs: the solve rate as pass@K per bug with a 95 %
/// Wilson interval over bugs (solved as the evaluator says), the malformed-call rate,
/// mean turns and tokens per attempt and, with `--injector-episodes`, the rate of
/// valid injector artifacts on the bugs' repository. With `--split`, only the bugs
/// the split holds out are played.
#[derive(Args)]
pub struct HeldoutArgs {
    /// The policy.
    #[arg(long, value_enum)]
    pub policy: PolicyArg,
    /// The bugs (`ssr inject --out`'s layout; rejected bugs are skipped).
    #[arg(long)]
    pub bugs: PathBuf,
    /// Solver attempts per bug (the K of pass@K).
    #[arg(long, default_value_t = 1)]
    pub attempts: u32,
    /// A split file (`ssr split`): only the bugs it holds out are played.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// The repository the bugs were made in (default: the one their bug.json names).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Injector episodes on the repository, for the rate of valid artifacts.
    #[arg(long, default_value_t = 0)]
    pub injector_episodes: u32,
    /// A self-play TOML file for budgets, sampling and tools (as `ssr selfplay`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub source: PolicySourceArgs,
    /// The seed of every episode's sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Episodes running at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A validated `ssr heldout` command line: what to play, the settings that override
/// the configuration file, and how to print.
struct HeldoutCli {
    policy: PolicyKind,
    sources: PolicySources,
    bugs: PathBuf,
    split: Option<PathBuf>,
    repo: Option<PathBuf>,
    plan: HeldoutPlan,
    config: Option<PathBuf>,
    seed: Option<u64>,
    concurrency: Option<usize>,
    json: bool,
}

/// Destructures the arguments (a flag added and not wired here does not compile) and
/// checks each value's range.
fn resolve(args: HeldoutArgs) -> anyhow::Result<HeldoutCli> {
    let HeldoutArgs {
        policy,
        bugs,
        attempts,
        split,
        repo,
        injector_episodes,
        config,
        source,
        seed,
        concurrency,
        json,
    } = args;
    anyhow::ensure!(attempts > 0, "--attempts must be at least 1");
    Ok(HeldoutCli {
        policy: PolicyKind::from(policy),
        sources: source.sources(),
        bugs,
        split,
        repo,
        plan: HeldoutPlan {
            label: "heldout".into(),
            attempts,
            injector_episodes,
        },
        config,
        seed,
        concurrency,
        json,
    })
}

pub fn run(args: HeldoutArgs) -> anyhow::Result<ExitCode> {
    let cli = resolve(args)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(cli))
}

async fn run_async(cli: HeldoutCli) -> anyhow::Result<ExitCode> {
    let HeldoutCli {
        policy,
        sources,
        bugs,
        split,
        repo,
        plan,
        config: config_file,
        seed,
        concurrency,
        json,
    } = cli;
    let mut config = base_config(config_file.as_deref(), policy)?;
    config.seed = seed.unwrap_or(config.seed);
    config.max_concurrent_episodes = concurrency.unwrap_or(config.max_concurrent_episodes);
    let progress: Arc<dyn Progress> = if json {
        Arc::new(NoProgress)
    } else {
        Arc::new(BarProgress::stderr())
    };
    let req = HeldoutRequest {
        config,
        policy,
        sources,
        bugs,
        split,
        repo,
        plan,
        shutdown: stop_on_ctrl_c(),
        progress,
    };
    let Some(run) = run_heldout(req).await? else {
        return Ok(ExitCode::from(130));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &run.report;
    let pct =
        |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |v| format!("{:.1}%", v * 100.0));
    let ci = r.solve_rate_ci95.map_or_else(
        || "n/a".to_string(),
        |(lo, hi)| format!("[{:.1}%, {:.1}%]", lo * 100.0, hi * 100.0),
    );
    println!(
        "held-out bugs: {} ({} scored; {} valid bugs not held out, not played)",
        r.bugs, r.bugs_scored, run.not_held_out
    );
    println!(
        "solve rate pass@{}: {} ({} bugs), 95% Wilson {ci}",
        r.attempts_per_bug,
        pct(r.solve_rate),
        r.bugs_solved
    );
    println!(
        "malformed calls: {} of {} turns ({}); infra attempts: {} of {}",
        r.malformed_calls,
        r.turns,
        pct(r.malformed_rate),
        r.infra_attempts,
        r.solver_attempts
    );
    let num = |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"));
    println!(
        "per attempt: {} turns, {} sampled tokens",
        num(r.mean_turns),
        num(r.mean_sampled_tokens)
    );
    println!(
        "valid injector artifacts: {} of {} judged ({} episodes): {}",
        r.injector_valid,
        r.injector_judged,
        r.injector_episodes,
        pct(r.valid_artifact_rate)
    );
    Ok(ExitCode::SUCCESS)
}
