//! `ssr verify ARTIFACT_DIR --repo DIR [--json]`: the seven checks of the game on one
//! bug artifact, every run in a fresh bubblewrap sandbox. Exit status 0 only for a
//! valid bug, 1 for a rejected artifact, 2 for an error (unreadable input).
//!
//! `--json` prints the `VerificationReport` (documented in `ssr_game::report`):
//! `{"valid", "rejected_by", "code", "reason", "checks": [{"check", "passed", "code",
//! "reason", "ms"}], "runs": [{"label", "phase", "prep_ms", "script_ms", "parser_ms",
//! "total_ms", "passed", "failed", "error"}], "fail_to_pass", "pass_to_pass",
//! "log_format", "parallel", "wall_ms"}`.
//!
//! Also owns the sandbox and settings every game subcommand uses.

use anyhow::Context;
use clap::Args;
use ssr_game::{Artifact, RunEnv, Verifier, VerifyConfig};
use ssr_sandbox::{BwrapSandbox, Environment};
use std::path::PathBuf;
use std::process::ExitCode;

/// Settings shared by the game's subcommands.
#[derive(Args, Clone, Debug)]
pub struct GameOpts {
    /// Hard timeout of one test-script run, seconds.
    #[arg(long, default_value_t = 180.0)]
    pub hard_timeout: f64,
    /// The test script must finish within this on the original code, seconds.
    #[arg(long, default_value_t = 90.0)]
    pub soft_timeout: f64,
    /// Tests that must pass on the original code.
    #[arg(long, default_value_t = 5)]
    pub min_passing_tests: usize,
    /// Run the checks' test runs one after another instead of concurrently.
    #[arg(long)]
    pub sequential: bool,
}

impl GameOpts {
    pub fn verify_config(&self) -> VerifyConfig {
        VerifyConfig {
            hard_timeout_secs: self.hard_timeout,
            soft_timeout_secs: self.soft_timeout,
            min_passing_tests: self.min_passing_tests,
            parallel: !self.sequential,
            run_env: RunEnv::host_toolchains(),
            ..VerifyConfig::default()
        }
    }
}

/// The sandbox the game runs tests in: bubblewrap over a minimal view of the host.
pub fn game_sandbox() -> anyhow::Result<BwrapSandbox> {
    BwrapSandbox::new(Environment::default()).context("starting the bubblewrap sandbox")
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Directory holding the five artifact files.
    pub artifact: PathBuf,
    /// The original repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let artifact = Artifact::read_dir(&args.artifact)?;
    anyhow::ensure!(
        args.repo.is_dir(),
        "repository {} is not a directory",
        args.repo.display()
    );
    let sandbox = game_sandbox()?;
    let report = Verifier::new(&sandbox, args.opts.verify_config()).verify(&args.repo, &artifact);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            println!(
                "{} check {} {:<17} {:>6} ms  {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.check.number(),
                serde_json::to_string(&c.check)?.trim_matches('"'),
                c.ms,
                c.reason
            );
        }
        println!("{}", report.summary());
        if report.valid {
            println!("FAIL_TO_PASS: {}", report.fail_to_pass.join(" "));
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
