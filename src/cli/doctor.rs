//! `ssr doctor [--repo DIR] [--image IMG [--workdir P] [--base-patch FILE]
//! [--image-exec docker|rootfs]] [--sample-candidates N] [--json]`: will the game work
//! on this repository, and if not, what to change (see `ssr_game::doctor`). It runs in
//! the environment every game command uses ([`GameOpts::game_env`]): bubblewrap over the
//! host's toolchains, or with `--image` the image's own environment, the repository
//! taken out of the image when no `--repo` is given.
//!
//! `--json` prints the `DoctorReport` plus `"runs_in"` (where commands ran) and
//! `"playable"`. Exit status 0 when the repository is playable, 1 otherwise.

use super::verify::GameOpts;
use clap::Args;
use ssr_game::doctor::{DoctorReport, doctor};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DoctorArgs {
    /// The repository to examine (default with `--image`: taken out of the image).
    #[arg(long, required_unless_present = "image")]
    pub repo: Option<PathBuf>,
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
    let game = args.opts.game_env(args.repo.as_deref())?;
    let r = doctor(
        &game.sandbox,
        game.origin,
        &game.repo,
        &game.cfg,
        args.sample_candidates,
    );
    if args.json {
        let mut value = serde_json::to_value(&r)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("runs_in".into(), game.environment.clone().into());
            obj.insert("repo".into(), game.repo.display().to_string().into());
            obj.insert("playable".into(), r.playable().into());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_text(&r, &game.environment);
    }
    Ok(if r.playable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The human report: one line per question, then every "no" with its fix.
fn print_text(r: &DoctorReport, environment: &str) {
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
        "environment    {environment}; {} variables",
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
