//! `ssr doctor --repo DIR [--sample-candidates N] [--json]`: will the game work on this
//! repository, and if not, what to change (see `ssr_game::doctor`). It runs in the
//! game's usual environment (bubblewrap over the host's toolchains, `--test-env`
//! settings); the environment is one argument of `ssr_game::doctor::doctor`, so an
//! image-based one plugs in there.
//!
//! `--json` prints the `DoctorReport`. Exit status 0 when the repository is playable,
//! 1 otherwise.

use super::verify::{GameOpts, game_sandbox};
use clap::Args;
use ssr_game::doctor::doctor;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DoctorArgs {
    /// The repository to examine.
    #[arg(long)]
    pub repo: PathBuf,
    /// Candidates each strategy's sample bug may try (0: only count them).
    #[arg(long, default_value_t = 5)]
    pub sample_candidates: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.repo.is_dir(),
        "repository {} is not a directory",
        args.repo.display()
    );
    let repo = args.repo.canonicalize()?;
    let sandbox = game_sandbox()?;
    let r = doctor(
        &sandbox,
        &repo,
        &args.opts.verify_config(),
        args.sample_candidates,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let fw = r
            .framework
            .map(|f| serde_json::to_string(&f).unwrap_or_default())
            .unwrap_or_else(|| "none".into());
        println!("framework      {}", fw.trim_matches('"'));
        if let Some(cmd) = &r.test_command {
            let last = cmd.lines().last().unwrap_or_default();
            println!("test command   {last}");
        }
        println!(
            "environment    bubblewrap, no network; {} variables",
            r.environment.len()
        );
        if let Some(s) = r.suite_secs {
            println!(
                "suite          {s:.1} s, {} pass, {} do not",
                r.tests_passing, r.tests_not_passing
            );
        }
        println!(
            "parsers        trusted read {}, runner counted {}",
            r.trusted_read,
            r.runner_count.map_or("?".into(), |n| n.to_string())
        );
        if !r.lost_by_trusted.is_empty() {
            println!(
                "  lost by the trusted parser: {}",
                r.lost_by_trusted.join(", ")
            );
        }
        for s in &r.strategies {
            println!("{:<14} {} candidates", s.strategy.name(), s.candidates);
            if let Some(b) = &s.sample {
                println!(
                    "  sample: {} -> {} in {:.1} s{}",
                    b.candidate,
                    if b.valid { "valid" } else { "rejected" },
                    b.secs,
                    if b.valid {
                        String::new()
                    } else {
                        format!(" ({})", b.reason)
                    }
                );
            }
        }
        if r.playable() {
            println!("playable       yes");
        } else {
            println!("playable       no");
            for p in &r.problems {
                println!("  - {}\n    fix: {}", p.cause, p.fix);
            }
        }
    }
    Ok(if r.playable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
