//! `ssr bench tools`: median and p99 per call of `editor view` on a 1,000-line file,
//! `editor str_replace`, and `search` over a 2,000-file repository, each side by side
//! with the same operation done by a fresh `python3` process per call running a small
//! script the benchmark writes; prints the ratios and where a tool call's time goes.
//! Asserts nothing.
//!
//! The measuring lives in `ssr_toolhost::bench` (also reachable without building all of
//! `ssr`: `cargo run --release -p ssr-toolhost --example bench_tools`); this file owns
//! the arguments and the output.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ssr_toolhost::HostConfig;
use ssr_toolhost::bench::{BenchOptions, run as run_bench};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BenchToolsArgs {
    /// Calls per operation through the tool host (search: a tenth of them, at least 5).
    #[arg(long, default_value_t = 300)]
    pub iterations: usize,
    /// Calls per operation of the python3 baseline, each a new interpreter (search: a
    /// third of them, at least 5).
    #[arg(long, default_value_t = 30)]
    pub baseline_iterations: usize,
    /// Print one JSON object: {"python", "load_average", "debug_build", "ops": [{"name",
    /// "tool": {"median_us", "p99_us", "n"} (wall, on the caller's thread), "tool_cpu",
    /// "python", "python_cpu" (same shape), "speedup_median", "phases": {"setup_us",
    /// "dispatch_us", "instantiate_us", "run_us", "host_us", "host_calls",
    /// "teardown_us", "caller_cpu_us", "worker_cpu_us", "inline"}, "worker": {"tool",
    /// "tool_cpu", "speedup_median", "phases"} (the same calls on a worker thread)}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchToolsArgs, config: HostConfig) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        iterations: args.iterations,
        baseline_iterations: args.baseline_iterations,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} bench tools: {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = run_bench(options, config, &mut |step| {
        bar.set_message(step.to_string())
    });
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
