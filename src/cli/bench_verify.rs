//! `ssr bench verify [--repeats N] [--example python-textkit|rust-ledger|all] [--json]`:
//! the wall time of verifying one artifact against (a) the sum of the test runs it
//! performs, (b) their critical path, and (c) the same checks run one after another,
//! measured side by side in the same run (parallel and sequential alternate).
//! The artifact is the first valid bug of the history injector on a freshly built
//! example repository. Nothing is asserted; the figures are printed.
//!
//! Orchestration overhead = wall − critical path of the test runs (script + parser
//! time of the longest run of each phase), as a share of wall; target < 10 %.
//!
//! Canary cost: a third mode verifies in parallel with the trusted reporter and its
//! canaries off (`VerifyConfig::trusted_reporter`; for a cargo project over a build
//! cache built without the canary module), interleaved with the others;
//! the cost is the extra sum of test-run time (and wall) of the parallel mode over
//! it, in percent; target < 5 % (for pytest the plugin and its canaries; for cargo
//! the canary module compiled into each oracle test binary).
//!
//! `--json` prints `[{"example", "repeats", "runs_per_verification",
//! "parallel": {"wall_ms", "test_sum_ms", "critical_path_ms", "overhead_ms",
//! "overhead_pct"}, "sequential": {... same ...}, "no_reporter": {... same ...},
//! "speedup", "canary_cost_pct", "canary_cost_wall_pct", "runs": [{"label",
//! "script_ms", "no_reporter_script_ms"}]}]` (medians; `runs` says where the canary
//! cost goes, run by run).

use super::verify::{GameOpts, game_sandbox};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use ssr_game::inject::{InjectConfig, Strategy, inject};
use ssr_game::{VerificationReport, Verifier, examples};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchVerifyArgs {
    /// Verifications of each mode (parallel and sequential alternate).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Which example repository to use.
    #[arg(long, default_value = "all")]
    pub example: String,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Medians of one mode.
#[derive(Serialize, Debug, Default)]
pub struct ModeFigures {
    pub wall_ms: u64,
    pub test_sum_ms: u64,
    pub critical_path_ms: u64,
    pub overhead_ms: u64,
    pub overhead_pct: f64,
}

#[derive(Serialize, Debug)]
pub struct ExampleFigures {
    pub example: String,
    pub repeats: usize,
    pub runs_per_verification: usize,
    pub parallel: ModeFigures,
    pub sequential: ModeFigures,
    /// Parallel, without the trusted reporter and its canaries.
    pub no_reporter: ModeFigures,
    /// Sequential wall / parallel wall.
    pub speedup: f64,
    /// 100 × (sum of test runs with canaries / without − 1).
    pub canary_cost_pct: f64,
    /// 100 × (parallel wall with canaries / without − 1).
    pub canary_cost_wall_pct: f64,
    /// Where the canary cost goes: each run's median script time, parallel with the
    /// reporter and without it.
    pub runs: Vec<RunFigures>,
}

/// One run of a verification (by its label), with and without the reporter.
#[derive(Serialize, Debug)]
pub struct RunFigures {
    pub label: String,
    pub script_ms: u64,
    pub no_reporter_script_ms: u64,
}

/// Median script time per run label, in the order of the first report.
fn run_figures(with: &[VerificationReport], without: &[VerificationReport]) -> Vec<RunFigures> {
    let script = |reports: &[VerificationReport], label: &str| {
        median(
            reports
                .iter()
                .flat_map(|r| r.runs.iter().filter(|x| x.label == label))
                .map(|x| x.script_ms)
                .collect(),
        )
    };
    with.first()
        .map(|r| {
            r.runs
                .iter()
                .map(|x| RunFigures {
                    label: x.label.clone(),
                    script_ms: script(with, &x.label),
                    no_reporter_script_ms: script(without, &x.label),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pct_over(with: u64, without: u64) -> f64 {
    if without == 0 {
        0.0
    } else {
        100.0 * (with as f64 / without as f64 - 1.0)
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The reports of one example per mode: parallel, sequential, without the reporter.
type Reports = (
    Vec<VerificationReport>,
    Vec<VerificationReport>,
    Vec<VerificationReport>,
);

fn figures(reports: &[VerificationReport]) -> ModeFigures {
    let wall = median(reports.iter().map(|r| r.wall_ms).collect());
    let crit = median(reports.iter().map(|r| r.critical_path_ms()).collect());
    let overhead = median(
        reports
            .iter()
            .map(|r| r.wall_ms.saturating_sub(r.critical_path_ms()))
            .collect(),
    );
    ModeFigures {
        wall_ms: wall,
        test_sum_ms: median(reports.iter().map(|r| r.test_time_sum_ms()).collect()),
        critical_path_ms: crit,
        overhead_ms: overhead,
        overhead_pct: if wall == 0 {
            0.0
        } else {
            100.0 * overhead as f64 / wall as f64
        },
    }
}

pub fn run(args: BenchVerifyArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = match args.example.as_str() {
        "all" => vec!["python-textkit", "rust-ledger"],
        one => vec![one],
    };
    let source = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    let tmp = tempfile::tempdir()?;
    let sandbox = game_sandbox()?;
    let opts = GameOpts {
        hard_timeout: 180.0,
        soft_timeout: 90.0,
        min_passing_tests: 5,
        sequential: false,
        test_env: Vec::new(),
        image: None,
        workdir: None,
        base_patch: None,
        image_exec: ssr_sandbox::ImageExec::RootFs,
        reject_tampering: false,
    };
    let bar = ProgressBar::new((names.len() * (1 + 3 * args.repeats)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut all = Vec::new();
    for name in names {
        bar.set_message(format!("{name}: building and injecting"));
        let repo = examples::create_one(&source.join(name), &tmp.path().join(name))
            .with_context(|| format!("building example {name}"))?;
        // The settings `ssr verify` uses for this repository: for a cargo project its
        // vendored dependencies and prebuilt build cache (without the cache every run
        // builds the crate from nothing, which is not what a verification costs).
        let vcfg = opts.verify_config_for(&repo.path)?;
        let cfg = InjectConfig {
            strategy: Strategy::History,
            count: 1,
            seed: 0,
            max_candidates: 20,
            verify: vcfg.clone(),
        };
        let run = inject(&sandbox, &repo.path, &cfg, &mut |_| {})?;
        let bug = run
            .bugs
            .first()
            .context("the history injector found no valid bug")?;
        bar.inc(1);
        // The baseline without the reporter: for a cargo project, over a build cache
        // built without the canary module (the reporter's cache holds it).
        let mut bare_cfg = vcfg.clone();
        bare_cfg.trusted_reporter = false;
        if bare_cfg.run_env.build_cache.is_some() {
            bare_cfg.run_env.build_cache = ssr_game::build_cache::prepare(
                &sandbox,
                &repo.path,
                &vcfg.run_env,
                &ssr_game::build_cache::build_cache_dir(),
                false,
            )?;
        }
        let configs = [&vcfg, &bare_cfg];
        let (par, seq, bare) =
            series(&sandbox, configs, name, &repo.path, bug, args.repeats, &bar)?;
        let p = figures(&par);
        let s = figures(&seq);
        let b = figures(&bare);
        all.push(ExampleFigures {
            example: name.to_string(),
            repeats: args.repeats,
            runs_per_verification: par.first().map(|r| r.runs.len()).unwrap_or(0),
            speedup: if p.wall_ms == 0 {
                0.0
            } else {
                s.wall_ms as f64 / p.wall_ms as f64
            },
            canary_cost_pct: pct_over(p.test_sum_ms, b.test_sum_ms),
            canary_cost_wall_pct: pct_over(p.wall_ms, b.wall_ms),
            runs: run_figures(&par, &bare),
            parallel: p,
            sequential: s,
            no_reporter: b,
        });
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_figures(&all);
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifications of `bug`, `repeats` times in each mode (parallel, sequential,
/// parallel without the trusted reporter: `[with, without]`), rotated so no mode
/// always runs first: the reports of each mode.
fn series(
    sandbox: &dyn ssr_sandbox::Sandbox,
    [base, without]: [&ssr_game::VerifyConfig; 2],
    name: &str,
    repo: &std::path::Path,
    bug: &ssr_game::inject::InjectedBug,
    repeats: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Reports> {
    let mut par = Vec::new();
    let mut seq = Vec::new();
    let mut bare = Vec::new();
    for i in 0..repeats {
        // (parallel, reporter on), rotated so no mode always runs first.
        let mut modes = [(true, true), (false, true), (true, false)];
        modes.rotate_left(i % 3);
        for (parallel, reporter) in modes {
            bar.set_message(format!(
                "{name}: {}{} #{}",
                if parallel { "parallel" } else { "sequential" },
                if reporter { "" } else { " without canaries" },
                i + 1
            ));
            let mut vcfg = if reporter {
                base.clone()
            } else {
                without.clone()
            };
            vcfg.parallel = parallel;
            let r = Verifier::new(sandbox, vcfg).verify(repo, &bug.artifact);
            anyhow::ensure!(r.valid, "verification changed its verdict: {}", r.summary());
            match (parallel, reporter) {
                (true, true) => par.push(r),
                (false, _) => seq.push(r),
                (true, false) => bare.push(r),
            }
            bar.inc(1);
        }
    }
    Ok((par, seq, bare))
}

/// Each example's lines.
fn print_figures(all: &[ExampleFigures]) {
    for f in all {
        println!(
            "{} ({} test runs per verification, medians of {}):",
            f.example, f.runs_per_verification, f.repeats
        );
        for (mode, m) in [
            ("parallel  ", &f.parallel),
            ("sequential", &f.sequential),
            ("no canary ", &f.no_reporter),
        ] {
            println!(
                "  {mode} wall {:>6} ms | sum of test runs {:>6} ms | critical path {:>6} ms | overhead {:>5} ms ({:.1} % of wall)",
                m.wall_ms, m.test_sum_ms, m.critical_path_ms, m.overhead_ms, m.overhead_pct
            );
        }
        println!(
            "  parallel vs sequential: {:.2}x faster; parallel wall / sum of test runs = {:.2}",
            f.speedup,
            f.parallel.wall_ms as f64 / f.parallel.test_sum_ms.max(1) as f64
        );
        println!(
            "  canaries and trusted reporter: {:+.1} % of the sum of test runs, {:+.1} % of wall (target < 5 %)",
            f.canary_cost_pct, f.canary_cost_wall_pct
        );
        let runs: Vec<String> = f
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{} {} ms ({} without)",
                    r.label, r.script_ms, r.no_reporter_script_ms
                )
            })
            .collect();
        println!("  script time per run, parallel: {}", runs.join(", "));
    }
}
