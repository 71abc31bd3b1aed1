//! `ssr demos --bugs STORE|DIR --out FILE.jsonl [--repo DIR] [--role solver|injector|both]
//! [--exclude FILE] [--config FILE] [--model FILE] [--max-turns N] [--max-new-tokens N]
//! [--context-tokens N] [--json]`: demonstrations for `ssr sft` from verified bugs,
//! each played through the real agent loop, tools and game
//! (`ssr_agent::demos`).
//!
//! `--json` prints one object: `{"out", "bugs", "excluded", "solver_demos",
//! "injector_demos", "dropped_by_reason": {reason: n}, "dropped": [{"bug_id", "role",
//! "reason", ...}]}`. Exit status 0 when at least one demonstration was written.
//!
//! Parses and prints; building is the agent crate's.

use super::selfplay::DEFAULT_MODEL;
use anyhow::Context;
use clap::{Args, ValueEnum};
use ssr_agent::budget::Budgets;
use ssr_agent::demos::{self, DemoConfig, DemoRoles};
use ssr_agent::selfplay::SelfPlayConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--role`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Fix the bug: view, replace the broken region back, run the tests, submit.
    Solver,
    /// Make the bug: edit code and tests, write the five artifact files, submit.
    Injector,
    /// Both, for every bug.
    Both,
}

/// Builds warm-start demonstrations (JSON lines for `ssr sft --demos`) from verified
/// bugs: a solver's fix is the reverse of the bug patch, an injector's artifact the
/// procedural injector's. Each is played through the real tools and game in the
/// policy's own tool-call syntax, and rendered and tokenized as the agent loop does;
/// one that does not fit the budgets, or does not solve or verify, is dropped and
/// counted. Bugs named by `--exclude` (held out) are never used.
#[derive(Args)]
pub struct DemosArgs {
    /// A bug directory (with bug.json) or a store of them (`ssr inject --out`, a run's
    /// `bugs/`).
    #[arg(long, value_name = "STORE|DIR")]
    pub bugs: PathBuf,
    /// The demonstration file to write (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The repository the bugs were made in. Default: the bundled example.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "both")]
    pub role: RoleArg,
    /// Held-out bug ids, one per line (`#` comments allowed): never made into
    /// demonstrations.
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,
    /// Self-play settings (TOML, as `ssr selfplay --config`): tool-call syntax, budgets
    /// per role, tool policy, test environment. Default: the embedded model's budgets.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// GGUF model whose tokenizer, chat template and context window are used.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Turns per episode (both roles; overrides the config).
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// New tokens per model turn (both roles; overrides the config).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Context tokens per episode (both roles; overrides the config).
    #[arg(long)]
    pub context_tokens: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The settings before flags: the file's, else the embedded model's budgets.
fn settings(file: Option<&std::path::Path>) -> anyhow::Result<SelfPlayConfig> {
    Ok(match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SelfPlayConfig::from_toml(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => SelfPlayConfig {
            solver_budgets: Budgets::embedded(),
            injector_budgets: Budgets::embedded(),
            ..SelfPlayConfig::embedded_quick()
        },
    })
}

pub fn run(args: DemosArgs) -> anyhow::Result<ExitCode> {
    let DemosArgs {
        bugs,
        out,
        repo,
        role,
        exclude,
        config,
        model,
        max_turns,
        max_new_tokens,
        context_tokens,
        json,
    } = args;
    let mut cfg = settings(config.as_deref())?;
    for b in [&mut cfg.solver_budgets, &mut cfg.injector_budgets] {
        b.max_turns = max_turns.unwrap_or(b.max_turns);
        b.max_new_tokens = max_new_tokens.unwrap_or(b.max_new_tokens);
        b.context_tokens = context_tokens.unwrap_or(b.context_tokens);
    }
    let repo = match repo {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("{} does not exist", r.display()))?,
        None => ssr_agent::selfplay::open::bundled_example()?,
    };
    let exclude = match &exclude {
        Some(f) => demos::read_exclusions(f)?,
        None => Default::default(),
    };
    let bugs = demos::load_bugs(&bugs)?;
    let model = model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let (arena, codec, context) =
        demos::open_game(&cfg, &repo, scratch.path().to_path_buf(), &model)?;
    let demo_cfg = DemoConfig {
        roles: match role {
            RoleArg::Solver => DemoRoles::Solver,
            RoleArg::Injector => DemoRoles::Injector,
            RoleArg::Both => DemoRoles::Both,
        },
        syntax: cfg.syntax,
        solver_budgets: cfg.solver_budgets.clone(),
        injector_budgets: cfg.injector_budgets.clone(),
        model_context: Some(context),
        min_passing_tests: cfg.min_passing_tests,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let progress = |what: &str| {
        if !json {
            eprintln!("playing {what}");
        }
    };
    let set = rt.block_on(demos::build_demos(
        &arena, codec, bugs, &exclude, &demo_cfg, &progress,
    ))?;
    drop(arena);
    demos::write_demos(&out, &set.demos)?;
    let s = &set.summary;
    if json {
        let mut v = serde_json::to_value(s)?;
        v["out"] = serde_json::json!(out.display().to_string());
        println!("{v}");
    } else {
        println!(
            "{} solver and {} injector demonstrations from {} bugs ({} excluded) written to {}",
            s.solver_demos,
            s.injector_demos,
            s.bugs,
            s.excluded,
            out.display()
        );
        for d in &s.dropped {
            println!(
                "dropped {} ({}): {}",
                d.bug_id,
                d.role.as_str(),
                serde_json::to_string(&d.reason)?
            );
        }
    }
    Ok(if set.demos.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
