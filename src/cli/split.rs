//! `ssr split --repo DIR --out FILE [--seed N] [--fraction F] [--bugs DIR --ids FILE]
//! [--json]`: draws the held-out split of a repository (by function and by commit;
//! `ssr_game::split`) and writes it as JSON; with `--bugs`, judges the stored bugs
//! under DIR and writes the held-out ones' ids one per line to `--ids` (the file
//! `ssr demos --exclude` reads).
//!
//! `--json` prints `{"split": FILE, "functions": n, "functions_total": n, "commits":
//! n, "commits_total": n, "bugs": {"total": n, "held_out": [{"id", "functions",
//! "commit", "lines"}], "ids_file": FILE} | null}`.

use anyhow::Context;
use clap::Args;
use ssr_game::split::{Split, SplitJudge};
use std::path::PathBuf;
use std::process::ExitCode;

/// Draws the held-out split of a repository's bugs: a seeded share of its functions
/// (at HEAD) and of its commits, plus every function and line a held-out commit
/// changed. A bug that changes a held-out function or line, or reverts a held-out
/// commit, is held out: `ssr selfplay --split FILE` never trains on it and `ssr
/// heldout --split FILE` evaluates on it.
#[derive(Args)]
pub struct SplitArgs {
    /// The repository (a git repository with tests), at the state bugs are made in.
    #[arg(long)]
    pub repo: PathBuf,
    /// Where the split is written (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// The seed of the draw (same repository, seed and fraction: same split).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The share of functions and of commits held out, in [0, 1].
    #[arg(long, default_value_t = 0.2)]
    pub fraction: f64,
    /// Stored bugs (`ssr inject --out`'s layout) to judge against the split.
    #[arg(long, requires = "ids")]
    pub bugs: Option<PathBuf>,
    /// Where the held-out bugs' ids go, one per line (`ssr demos --exclude FILE`).
    #[arg(long, requires = "bugs")]
    pub ids: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SplitArgs) -> anyhow::Result<ExitCode> {
    let repo = args
        .repo
        .canonicalize()
        .with_context(|| format!("{} does not exist", args.repo.display()))?;
    let split = Split::make(&repo, args.seed, args.fraction)?;
    split.write(&args.out)?;
    let bugs = match (&args.bugs, &args.ids) {
        (Some(dir), Some(ids)) => {
            let judged = SplitJudge::open(split.clone(), &repo)?.judge_dir(dir)?;
            let held: Vec<_> = judged.iter().filter(|(_, m)| m.held_out).collect();
            let text: String = held.iter().map(|(id, _)| format!("{id}\n")).collect();
            std::fs::write(ids, text).with_context(|| format!("writing {}", ids.display()))?;
            Some(serde_json::json!({
                "total": judged.len(),
                "held_out": held.iter().map(|(id, m)| serde_json::json!({
                    "id": id, "functions": m.functions, "commit": m.commit, "lines": m.lines,
                })).collect::<Vec<_>>(),
                "ids_file": ids,
            }))
        }
        _ => None,
    };
    if args.json {
        let out = serde_json::json!({
            "split": args.out,
            "functions": split.functions.len(),
            "functions_total": split.functions_total,
            "commits": split.commits.len(),
            "commits_total": split.commits_total,
            "bugs": bugs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "held out: {} of {} functions, {} of {} commits (seed {}, fraction {}); written to {}",
        split.functions.len(),
        split.functions_total,
        split.commits.len(),
        split.commits_total,
        split.seed,
        split.fraction,
        args.out.display()
    );
    if let Some(b) = bugs {
        println!(
            "bugs: {} of {} held out; ids in {}",
            b["held_out"].as_array().map_or(0, Vec::len),
            b["total"],
            args.ids.as_deref().unwrap_or_else(|| "".as_ref()).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
