//! `ssr report RUN_DIR`: writes the run's HTML report and prints its summary.

use anyhow::Context;
use clap::Args;
use ssr_agent::report::{render_html, summarize, summary_table};
use ssr_agent::rundir::RunDir;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes `RUN_DIR/report.html` (inline SVG plots: validity rate, solve rate, rewards,
/// episode lengths and time per phase per round; opens offline) and prints the
/// per-round summary table.
#[derive(Args)]
pub struct ReportArgs {
    /// The run directory (`runs/<id>`).
    pub run_dir: PathBuf,
    /// Where to write the HTML (default: RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object `{report, summary, rounds}` instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.run_dir.join("run.json").is_file(),
        "{} is not a run directory (no run.json)",
        args.run_dir.display()
    );
    let run = RunDir::open(&args.run_dir)?;
    let meta = run.meta()?;
    let metrics = run.metrics()?;
    let out = args.out.unwrap_or_else(|| run.report_path());
    std::fs::write(&out, render_html(meta.as_ref(), &metrics))
        .with_context(|| format!("writing {}", out.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"report": out, "summary": summarize(&metrics), "rounds": metrics})
        );
    } else {
        print!("{}", summary_table(&metrics));
        println!("report: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
