//! The tool-host benchmark without building the whole `ssr` program (which is what
//! `ssr bench tools` runs): `cargo run --release -p ssr-toolhost --example bench_tools
//! -- [ITERATIONS [BASELINE_ITERATIONS]] [--json]`.

use ssr_toolhost::HostConfig;
use ssr_toolhost::bench::{BenchOptions, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut options = BenchOptions::default();
    let mut json = false;
    let mut numbers = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--json" {
            json = true;
        } else if let Ok(n) = arg.parse::<usize>() {
            numbers.push(n);
        } else {
            eprintln!("usage: bench_tools [ITERATIONS [BASELINE_ITERATIONS]] [--json]");
            return ExitCode::from(2);
        }
    }
    if let Some(&n) = numbers.first() {
        options.iterations = n;
    }
    if let Some(&n) = numbers.get(1) {
        options.baseline_iterations = n;
    }
    match run(options, HostConfig::default(), &mut |step| {
        eprintln!("bench: {step}…")
    }) {
        Ok(report) => {
            if json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
