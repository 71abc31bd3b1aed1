//! `ssr evaluate ARTIFACT_DIR --repo DIR --patch FILE [--json]`: scores one solver
//! patch against a bug (`SSR_SPEC.md` section 5). The set `P` comes from the
//! artifact's stored `report.json` (written by `ssr inject`), else the artifact is
//! verified first. Exit status 0 when the patch solves the bug, 1 when it does not, 2
//! when the attempt could not be scored (an infrastructure failure: no reward).
//!
//! `--json` prints the `Evaluation`: `{"reward": 1.0 | -1.0 | null, "solved": bool,
//! "outcome": {"kind": "solved" | "empty_patch" | "does_not_apply" | "timed_out" |
//! "run_failed" | "infra" | "tampered" | "tests_failing", ...}, "failing": [id], "missing": [id],
//! "dropped": [path], "notes": [string], "wall_ms", "reporter_secret": hex | null}`.
//! `notes` carries the patch scan's findings (`scan: path:line: ...`) and why a run
//! counts as tampered; `--reject-tampering` makes a scan finding a tampered attempt. `dropped` names the files whose
//! sections of the patch were left out (oracle files and test infrastructure).

use super::verify::GameOpts;
use anyhow::Context;
use clap::Args;
use ssr_game::{Artifact, BugState, Evaluator, VerificationReport, Verifier};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvaluateArgs {
    /// Directory holding the five artifact files (and `report.json` when available).
    pub artifact: PathBuf,
    /// The original repository (default with `--image`: taken out of the image).
    #[arg(long, required_unless_present = "image")]
    pub repo: Option<PathBuf>,
    /// The solver's patch (`git diff` format); may be empty.
    #[arg(long)]
    pub patch: PathBuf,
    /// The failed solver patch of a higher-order bug, applied before `--patch`.
    #[arg(long)]
    pub higher_order_patch: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

/// A `ssr evaluate` command line, destructured: the bug, the patches, where the game
/// runs (settings checked by `GameOpts::game_env`) and how to print.
struct EvaluateCli {
    artifact_dir: PathBuf,
    repo: Option<PathBuf>,
    patch: PathBuf,
    higher_order_patch: Option<PathBuf>,
    opts: GameOpts,
    json: bool,
}

/// Destructures the arguments (a flag added and not wired here does not compile).
fn resolve(args: EvaluateArgs) -> EvaluateCli {
    let EvaluateArgs {
        artifact,
        repo,
        patch,
        higher_order_patch,
        json,
        opts,
    } = args;
    EvaluateCli {
        artifact_dir: artifact,
        repo,
        patch,
        higher_order_patch,
        opts,
        json,
    }
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let cli = resolve(args);
    let artifact = Artifact::read_dir(&cli.artifact_dir)?;
    let patch = std::fs::read_to_string(&cli.patch)
        .with_context(|| format!("reading {}", cli.patch.display()))?;
    let ho = match &cli.higher_order_patch {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let game = cli.opts.game_env(cli.repo.as_deref())?;
    let (sandbox, cfg) = (game.sandbox, game.cfg);
    let report_path = cli.artifact_dir.join("report.json");
    let report: VerificationReport = if report_path.is_file() {
        serde_json::from_str(&std::fs::read_to_string(&report_path)?)
            .with_context(|| format!("reading {}", report_path.display()))?
    } else {
        eprintln!("no report.json next to the artifact: verifying it first");
        Verifier::new(&sandbox, cfg.clone()).verify(&game.repo, &artifact)
    };
    anyhow::ensure!(
        report.valid,
        "the artifact is not a valid bug: {}",
        report.summary()
    );
    let tests = report.all_tests();
    let e = Evaluator::new(&sandbox, cfg)
        .with_protected_globs(ssr_game::EpisodeConfig::default().protected_globs)
        .expecting_log_format(report.log_format)
        .evaluate(
            &game.repo,
            BugState {
                artifact: &artifact,
                higher_order_patch: ho.as_deref(),
                tests: &tests,
            },
            &patch,
        );
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        println!("{}", e.summary());
    }
    Ok(if e.solved {
        ExitCode::SUCCESS
    } else if e.reward.is_none() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}
