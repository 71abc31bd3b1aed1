//! `ssr bench verify [--repeats N] [--example python-textkit|rust-ledger|all | --repo DIR] [--json]`:
//! the wall time of verifying one artifact against (a) the sum of the test runs it
//! performs, (b) their critical path, and (c) the same checks run one after another,
//! measured side by side in the same run (parallel and sequential alternate).
//! The artifact is the first valid bug of the history injector on a freshly built
//! example repository, or on the git repository `--repo` (a project of the corpus,
//! `ssr corpus --only NAME --out DIR`, builds one: `DIR/NAME`). Nothing is asserted;
//! the figures are printed.
//!
//! Orchestration overhead = wall − critical path of the test runs (script + parser
//! time of the longest run of each phase), as a share of wall; target < 10 %.
//!
//! Canary cost: two more modes verify with the trusted reporter and its canaries off
//! (`VerifyConfig::trusted_reporter`; for a cargo project over a build cache built
//! without the canary module), in parallel and sequentially, interleaved with the
//! others. The cost of the runs is the extra sum of test-run time of the sequential
//! mode over its baseline, in percent (target < 5 %; for pytest the plugin and its
//! canaries, for cargo the canary module compiled into each oracle test binary):
//! one run at a time, a run's time is its own. In parallel the runs share the cores,
//! and one run's extra CPU also lengthens the others': the parallel mode's extra sum
//! and extra wall are printed too.
//!
//! `--json` prints `[{"example", "repeats", "runs_per_verification",
//! "parallel": {"wall_ms", "test_sum_ms", "critical_path_ms", "overhead_ms",
//! "overhead_pct"}, "sequential": {... same ...}, "no_reporter": {... same ...},
//! "sequential_no_reporter": {... same ...}, "speedup", "canary_cost_pct",
//! "canary_cost_parallel_pct", "canary_cost_wall_pct", "runs": [{"label",
//! "script_ms", "no_reporter_script_ms"}]}]` (medians; `runs` says where the canary
//! cost goes, run by run, sequentially).

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
    /// A git repository of your own to bench instead of the examples (its history
    /// must give the history injector a valid bug, as a corpus project's does).
    #[arg(long, conflicts_with = "example")]
    pub repo: Option<PathBuf>,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Where a benched repository comes from.
enum RepoSource {
    /// An example's sources (`examples/NAME`), built into a fresh repository.
    Example(PathBuf),
    /// A repository given with `--repo`, used as it is.
    Given(PathBuf),
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
    /// Sequential, without the trusted reporter and its canaries.
    pub sequential_no_reporter: ModeFigures,
    /// Sequential wall / parallel wall.
    pub speedup: f64,
    /// 100 × (sum of test runs with canaries / without − 1), sequentially.
    pub canary_cost_pct: f64,
    /// The same in parallel.
    pub canary_cost_parallel_pct: f64,
    /// 100 × (parallel wall with canaries / without − 1).
    pub canary_cost_wall_pct: f64,
    /// Where the canary cost goes: each run's median script time, sequentially, with
    /// the reporter and without it.
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

/// The reports of one example per mode.
#[derive(Default)]
struct Reports {
    parallel: Vec<VerificationReport>,
    sequential: Vec<VerificationReport>,
    /// Parallel and sequential without the reporter.
    bare_parallel: Vec<VerificationReport>,
    bare_sequential: Vec<VerificationReport>,
}

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

/// The repositories to bench, by name: `--repo`'s, or the examples `--example` names
/// (built from `source`).
fn bench_repos(
    args: &BenchVerifyArgs,
    source: &std::path::Path,
) -> anyhow::Result<Vec<(String, RepoSource)>> {
    Ok(match (&args.repo, args.example.as_str()) {
        (Some(dir), _) => {
            anyhow::ensure!(
                dir.join(".git").exists(),
                "--repo {}: not a git repository",
                dir.display()
            );
            let name = dir
                .canonicalize()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "repo".into());
            vec![(name, RepoSource::Given(dir.clone()))]
        }
        (None, "all") => ["python-textkit", "rust-ledger"]
            .map(|n| (n.to_string(), RepoSource::Example(source.join(n))))
            .into(),
        (None, one) => vec![(one.to_string(), RepoSource::Example(source.join(one)))],
    })
}

pub fn run(args: BenchVerifyArgs) -> anyhow::Result<ExitCode> {
    let source = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    let tmp = tempfile::tempdir()?;
    let repos = bench_repos(&args, &source)?;
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
    let bar = ProgressBar::new((repos.len() * (1 + 4 * args.repeats)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut all = Vec::new();
    for (name, from) in &repos {
        let name = name.as_str();
        bar.set_message(format!("{name}: building and injecting"));
        let repo = match from {
            RepoSource::Example(src) => {
                examples::create_one(src, &tmp.path().join(name))
                    .with_context(|| format!("building example {name}"))?
                    .path
            }
            RepoSource::Given(dir) => dir.clone(),
        };
        // The settings `ssr verify` uses for this repository: for a cargo project its
        // vendored dependencies and prebuilt build cache (without the cache every run
        // builds the crate from nothing, which is not what a verification costs).
        let vcfg = opts.verify_config_for(&repo)?;
        let cfg = InjectConfig {
            strategy: Strategy::History,
            count: 1,
            seed: 0,
            max_candidates: 20,
            verify: vcfg.clone(),
        };
        let run = inject(&sandbox, &repo, &cfg, &mut |_| {})?;
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
                &repo,
                &vcfg.run_env,
                &ssr_game::build_cache::build_cache_dir(),
                false,
            )?;
        }
        let configs = [&vcfg, &bare_cfg];
        let r = series(&sandbox, configs, name, &repo, bug, args.repeats, &bar)?;
        let p = figures(&r.parallel);
        let s = figures(&r.sequential);
        let b = figures(&r.bare_parallel);
        let bs = figures(&r.bare_sequential);
        all.push(ExampleFigures {
            example: name.to_string(),
            repeats: args.repeats,
            runs_per_verification: r.parallel.first().map(|r| r.runs.len()).unwrap_or(0),
            speedup: if p.wall_ms == 0 {
                0.0
            } else {
                s.wall_ms as f64 / p.wall_ms as f64
            },
            canary_cost_pct: pct_over(s.test_sum_ms, bs.test_sum_ms),
            canary_cost_parallel_pct: pct_over(p.test_sum_ms, b.test_sum_ms),
            canary_cost_wall_pct: pct_over(p.wall_ms, b.wall_ms),
            runs: run_figures(&r.sequential, &r.bare_sequential),
            parallel: p,
            sequential: s,
            no_reporter: b,
            sequential_no_reporter: bs,
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

/// Verifications of `bug`, `repeats` times in each mode (parallel and sequential,
/// each with the trusted reporter and without it: `[with, without]`), rotated so no
/// mode always runs first: the reports of each mode.
fn series(
    sandbox: &dyn ssr_sandbox::Sandbox,
    [base, without]: [&ssr_game::VerifyConfig; 2],
    name: &str,
    repo: &std::path::Path,
    bug: &ssr_game::inject::InjectedBug,
    repeats: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Reports> {
    let mut out = Reports::default();
    for i in 0..repeats {
        // (parallel, reporter on), rotated so no mode always runs first.
        let mut modes = [(true, true), (false, true), (true, false), (false, false)];
        modes.rotate_left(i % 4);
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
                (true, true) => out.parallel.push(r),
                (false, true) => out.sequential.push(r),
                (true, false) => out.bare_parallel.push(r),
                (false, false) => out.bare_sequential.push(r),
            }
            bar.inc(1);
        }
    }
    Ok(out)
}

/// Each example's lines.
fn print_figures(all: &[ExampleFigures]) {
    for f in all {
        println!(
            "{} ({} test runs per verification, medians of {}):",
            f.example, f.runs_per_verification, f.repeats
        );
        for (mode, m) in [
            ("parallel             ", &f.parallel),
            ("sequential           ", &f.sequential),
            ("parallel, no canary  ", &f.no_reporter),
            ("sequential, no canary", &f.sequential_no_reporter),
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
            "  canaries and trusted reporter: {:+.1} % of the sum of test runs one at a time (target < 5 %); in parallel {:+.1} % of the sum, {:+.1} % of wall",
            f.canary_cost_pct, f.canary_cost_parallel_pct, f.canary_cost_wall_pct
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
        println!("  script time per run, sequential: {}", runs.join(", "));
    }
}
