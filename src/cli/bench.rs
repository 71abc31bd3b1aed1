//! `ssr bench ...`: benchmarks that print a ratio against a baseline measured side by
//! side in the same run. One variant per subsystem (`sandbox` here; others add theirs).
//!
//! Owns: the measurement loops, statistics and reports. Does not own: the code under
//! test. Nothing here asserts performance; it reports.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use ssr_sandbox::{BwrapSandbox, Command, Environment, ExecSpec, Sandbox, StartPath, host_cgroups};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Runs `true` through the bubblewrap sandbox and as a plain process spawn,
    /// interleaved in the same run, and prints median, p99 and the overhead. A third
    /// series runs the same bwrap command line directly (no cgroup, no supervisor), to
    /// split the overhead between bubblewrap itself and this crate's layer.
    Sandbox(SandboxBenchArgs),
    /// Per-call latency of the WASM tools (editor view, str_replace, search) against a
    /// fresh python3 process per call doing the same work, in the same run.
    Tools(crate::cli::bench_tools::BenchToolsArgs),
    /// Prefill and decode tokens per second of the embedded model, and training tokens
    /// per second, against a naive baseline measured in the same run.
    Model(crate::cli::bench_model::BenchModelArgs),
    /// Wall time of verifying one artifact against the sum and the critical path of the
    /// test runs it performs, and against the same checks run one after another.
    Verify(crate::cli::bench_verify::BenchVerifyArgs),
    /// The environment server's per-episode overhead: the same scripted episodes over
    /// `POST /v1/episodes` and in-process, interleaved.
    Env(crate::cli::bench_env::BenchEnvArgs),
    /// The GPU kernels (log-probs, fused LM head) against PyTorch eager. Needs a GPU.
    Kernels(crate::cli::bench_gpu::KernelsBenchArgs),
    /// GPU training and generation throughput against PyTorch + transformers. Needs a GPU.
    Train(crate::cli::bench_gpu::TrainBenchArgs),
}

#[derive(Args)]
pub struct SandboxBenchArgs {
    /// Measured iterations of each (after 5 unmeasured warm-up rounds).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Files in the repository of the snapshot benchmark (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    snapshot_files: usize,
    /// Rounds of snapshot against full copy (the copy takes seconds per round).
    #[arg(long, default_value_t = 3)]
    snapshot_rounds: usize,
    /// Instead: compare how a command enters this container image's environment:
    /// `docker run` per command, `docker exec` into one kept container, and bubblewrap
    /// over the image's unpacked root (`--image-exec rootfs`), against bubblewrap on the
    /// host root, interleaved in the same run.
    #[arg(long, value_name = "IMG")]
    image: Option<String>,
    /// Measured iterations of each mechanism with `--image` (a `docker run` takes
    /// hundreds of milliseconds).
    #[arg(long, default_value_t = 30)]
    image_iterations: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Sandbox(a) => match a.image.clone() {
            Some(image) => sandbox_image(&image, &a),
            None => sandbox(a),
        },
        BenchCmd::Tools(a) => {
            let config = ssr_toolhost::HostConfig {
                standard_tools: true,
                ..ssr_toolhost::HostConfig::default()
            };
            crate::cli::bench_tools::run(&a, config)
        }
        BenchCmd::Model(a) => crate::cli::bench_model::run(a),
        BenchCmd::Verify(a) => crate::cli::bench_verify::run(a),
        BenchCmd::Env(a) => crate::cli::bench_env::run(a),
        BenchCmd::Kernels(a) => crate::cli::bench_gpu::kernels(a),
        BenchCmd::Train(a) => crate::cli::bench_gpu::train(a),
    }
}

/// Summary of one series of timings, in milliseconds.
#[derive(Serialize, Debug, PartialEq)]
pub struct Stats {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len().max(1);
        let at = |q: f64| {
            ms.get(((n as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Stats {
            median_ms: at(0.5),
            p99_ms: at(0.99),
            mean_ms: ms.iter().sum::<f64>() / n as f64,
            min_ms: ms.first().copied().unwrap_or(0.0),
        }
    }
}

/// The `--json` object of `ssr bench sandbox`.
#[derive(Serialize)]
struct SandboxBenchReport {
    iterations: usize,
    backend: &'static str,
    bwrap_version: String,
    cgroup: &'static str,
    plain: Stats,
    /// The sandbox's bwrap command line run directly: no cgroup, no supervisor.
    bwrap_alone: Stats,
    sandbox: Stats,
    /// Sandbox median minus bwrap-alone median: the cost of cgroups and supervision.
    layer_overhead_median_ms: f64,
    /// Sandbox median minus plain median.
    overhead_median_ms: f64,
    /// Sandbox median divided by plain median.
    ratio_median: f64,
    /// Sandboxed runs in a ready sandbox (set up ahead for this workspace).
    ready_hits: u64,
    /// Measured sandboxed runs by path: in a ready sandbox, and the others (a parked
    /// launcher or the cold path), each `None` when no run took it.
    sandbox_ready: Option<Stats>,
    sandbox_not_ready: Option<Stats>,
    /// Sandboxed runs that used a parked launcher (the rest took the cold path).
    warm_hits: u64,
    /// The design target: at most 5 ms median overhead.
    target_ms: f64,
    target_met: bool,
    /// Episode snapshot of a repository against a plain recursive copy (`ssr-repo`).
    snapshot: Option<ssr_repo::bench::SnapshotBench>,
}

const TARGET_MS: f64 = 5.0;
const WARMUP: usize = 5;

fn sandbox(a: SandboxBenchArgs) -> anyhow::Result<ExitCode> {
    let sb = BwrapSandbox::new(Environment::default())?;
    let ws = std::env::temp_dir().join(format!("ssr-bench-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&ws).with_context(|| format!("creating {}", ws.display()))?;
    let spec = ExecSpec::new(Command::Argv(vec!["true".into()]), &ws);
    let measured = measure_sandbox(&sb, &spec, a.iterations);
    let _ = std::fs::remove_dir_all(&ws);
    let series = measured?;

    let snapshot = if a.snapshot_files > 0 {
        if !a.json {
            eprintln!(
                "snapshot benchmark: {} files, {} rounds (the plain copy takes a while)",
                a.snapshot_files, a.snapshot_rounds
            );
        }
        Some(ssr_repo::bench::snapshot_vs_copy(
            a.snapshot_files,
            a.snapshot_rounds.max(1),
        )?)
    } else {
        None
    };
    let report = SandboxBenchReport::new(&sb, a.iterations, series, snapshot);
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_sandbox_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The timings of one `ssr bench sandbox` run, by side, and how the sandboxed runs
/// were started.
#[derive(Default)]
struct SandboxSeries {
    plain: Vec<Duration>,
    bwrap_alone: Vec<Duration>,
    sandbox: Vec<Duration>,
    /// The measured sandboxed runs split by path.
    sandbox_ready: Vec<Duration>,
    sandbox_not_ready: Vec<Duration>,
    /// Over every sandboxed run, warm-up included.
    ready_hits: u64,
    warm_hits: u64,
}

/// Runs the three sides interleaved, `WARMUP` unmeasured rounds then `iterations`.
fn measure_sandbox(
    sb: &BwrapSandbox,
    spec: &ExecSpec,
    iterations: usize,
) -> anyhow::Result<SandboxSeries> {
    let true_path = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("no `true` program on this host")?;
    let bar = ProgressBar::new((iterations + WARMUP) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}").expect("valid template"),
    );
    bar.set_message("bench sandbox");
    let bwrap_args = sb.command_line(spec)?;
    let mut s = SandboxSeries::default();
    for i in 0..iterations + WARMUP {
        let measured = i >= WARMUP;
        // Rotate the order so no side always runs right after another's teardown.
        for k in 0..3 {
            let t = Instant::now();
            match (i + k) % 3 {
                0 => {
                    // The baseline gets the same treatment: closed stdin, captured output.
                    let out = std::process::Command::new(true_path)
                        .env_clear()
                        .stdin(Stdio::null())
                        .output()?;
                    anyhow::ensure!(out.status.success(), "plain `true` failed");
                    if measured {
                        s.plain.push(t.elapsed());
                    }
                }
                1 => {
                    let out = std::process::Command::new(&sb.info().path)
                        .args(&bwrap_args)
                        .env_clear()
                        .stdin(Stdio::null())
                        .output()?;
                    anyhow::ensure!(out.status.success(), "bwrap `true` failed");
                    if measured {
                        s.bwrap_alone.push(t.elapsed());
                    }
                }
                _ => {
                    let o = sb.exec(spec)?;
                    let took = t.elapsed();
                    anyhow::ensure!(o.success(), "sandboxed `true` failed: {o:?}");
                    // The path is the outcome's own: right under concurrency too.
                    match o.start {
                        StartPath::Ready => s.ready_hits += 1,
                        StartPath::Warm => s.warm_hits += 1,
                        StartPath::Cold => {}
                    }
                    if measured {
                        s.sandbox.push(took);
                        match o.start {
                            StartPath::Ready => s.sandbox_ready.push(took),
                            _ => s.sandbox_not_ready.push(took),
                        }
                    }
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(s)
}

impl SandboxBenchReport {
    fn new(
        sb: &BwrapSandbox,
        iterations: usize,
        s: SandboxSeries,
        snapshot: Option<ssr_repo::bench::SnapshotBench>,
    ) -> SandboxBenchReport {
        let plain = Stats::of(&s.plain);
        let bwrap_alone = Stats::of(&s.bwrap_alone);
        let sandbox = Stats::of(&s.sandbox);
        let overhead = sandbox.median_ms - plain.median_ms;
        let some_stats = |v: &[Duration]| (!v.is_empty()).then(|| Stats::of(v));
        SandboxBenchReport {
            iterations,
            backend: sb.name(),
            bwrap_version: sb.info().version.clone(),
            cgroup: host_cgroups().version(),
            ratio_median: sandbox.median_ms / plain.median_ms.max(1e-9),
            overhead_median_ms: overhead,
            layer_overhead_median_ms: sandbox.median_ms - bwrap_alone.median_ms,
            target_ms: TARGET_MS,
            target_met: overhead <= TARGET_MS,
            warm_hits: s.warm_hits,
            ready_hits: s.ready_hits,
            sandbox_ready: some_stats(&s.sandbox_ready),
            sandbox_not_ready: some_stats(&s.sandbox_not_ready),
            plain,
            bwrap_alone,
            sandbox,
            snapshot,
        }
    }
}

fn print_sandbox_report(report: &SandboxBenchReport) {
    println!(
        "sandbox overhead: `true`, {} interleaved iterations in one workspace (bwrap {}, cgroup {}; of {} sandboxed runs {} in a ready sandbox, {} on a parked launcher)",
        report.iterations,
        report.bwrap_version,
        report.cgroup,
        report.iterations + WARMUP,
        report.ready_hits,
        report.warm_hits,
    );
    println!("{:<16} {:>10} {:>10} {:>10}", "", "median", "p99", "mean");
    for (name, s) in [
        ("plain spawn", &report.plain),
        ("bwrap alone", &report.bwrap_alone),
        ("ssr sandbox", &report.sandbox),
    ]
    .into_iter()
    .chain(report.sandbox_ready.as_ref().map(|s| ("  ready", s)))
    .chain(
        report
            .sandbox_not_ready
            .as_ref()
            .map(|s| ("  not ready", s)),
    ) {
        println!(
            "{name:<16} {:>7.2} ms {:>7.2} ms {:>7.2} ms",
            s.median_ms, s.p99_ms, s.mean_ms
        );
    }
    println!(
        "overhead         {:+.2} ms median ({:.1}x); target <= {TARGET_MS} ms: {}",
        report.overhead_median_ms,
        report.ratio_median,
        if report.target_met { "met" } else { "NOT met" }
    );
    println!(
        "bubblewrap alone costs {:+.2} ms over a plain spawn; the sandbox {:+.2} ms over bubblewrap alone (a ready sandbox has done bubblewrap's set-up before the exec)",
        report.bwrap_alone.median_ms - report.plain.median_ms,
        report.layer_overhead_median_ms
    );
    if let Some(b) = &report.snapshot {
        println!(
            "snapshot of a {}-file repository ({:?}): {:.2} ms median (drop {:.1} ms) vs full copy {:.0} ms: {:.0}x faster; target >= 10x: {}",
            b.n_files,
            b.method,
            b.snapshot_ms,
            b.snapshot_drop_ms,
            b.copy_ms,
            b.speedup,
            if b.speedup >= 10.0 { "met" } else { "NOT met" }
        );
    }
}

/// The `--json` object of `ssr bench sandbox --image`.
#[derive(Serialize)]
struct ImageBenchReport {
    image: String,
    image_id: String,
    iterations: usize,
    /// The baseline: bubblewrap over the host's minimal root.
    bwrap_host: Stats,
    /// Bubblewrap over the image's unpacked root (`--image-exec rootfs`).
    rootfs: Stats,
    /// `docker run` per command, with the sandbox's flags (`--image-exec docker`).
    docker_run: Stats,
    /// `docker exec` into one container kept for the series.
    docker_exec: Stats,
    /// Unpacking the image into the cache, when this run did it (ms).
    unpack_ms: Option<f64>,
    rootfs_ratio: f64,
    docker_run_ratio: f64,
    docker_exec_ratio: f64,
    /// Target for the default mechanism: at most this ratio to `bwrap_host`, median.
    target_ratio: f64,
    target_met: bool,
}

const IMAGE_TARGET_RATIO: f64 = 2.0;

fn sandbox_image(image: &str, a: &SandboxBenchArgs) -> anyhow::Result<ExitCode> {
    use ssr_sandbox::{ImageExec, ImageSandbox, KeptContainer, first_engine};
    let (_, program) = first_engine()?;
    let ws = tempfile::tempdir()?;
    let host = BwrapSandbox::new(Environment::default())?;
    let unpack_start = Instant::now();
    let rootfs = ImageSandbox::new(image, ImageExec::RootFs, None)?;
    let unpack = unpack_start.elapsed();
    let docker = ImageSandbox::new(image, ImageExec::Docker, None)?;
    let kept = KeptContainer::start(&program, image, ws.path(), rootfs.workdir())?;
    let n = a.image_iterations.max(1);
    let series = image_series(n, ws.path(), [&host, &rootfs, &docker], &kept)?;
    drop(kept);
    let [bwrap_host, rootfs_s, docker_run, docker_exec] = series.map(|s| Stats::of(&s));
    let base = bwrap_host.median_ms.max(1e-9);
    let report = ImageBenchReport {
        image: image.to_string(),
        image_id: rootfs.info().id.clone(),
        iterations: n,
        rootfs_ratio: rootfs_s.median_ms / base,
        docker_run_ratio: docker_run.median_ms / base,
        docker_exec_ratio: docker_exec.median_ms / base,
        target_ratio: IMAGE_TARGET_RATIO,
        target_met: rootfs_s.median_ms / base <= IMAGE_TARGET_RATIO,
        // Under a millisecond: the root came from the cache.
        unpack_ms: (unpack > Duration::from_millis(1000)).then_some(unpack.as_secs_f64() * 1e3),
        bwrap_host,
        rootfs: rootfs_s,
        docker_run,
        docker_exec,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_image_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// `true` through each way into the image (host bubblewrap, the unpacked root, `docker
/// run`, `docker exec` in the kept container), interleaved, `n` measured rounds after
/// the warm-up: one series of times per way, in that order.
fn image_series(
    n: usize,
    ws: &Path,
    sandboxes: [&dyn ssr_sandbox::Sandbox; 3],
    kept: &ssr_sandbox::KeptContainer,
) -> anyhow::Result<[Vec<Duration>; 4]> {
    let spec = ExecSpec::new(Command::Argv(vec!["true".into()]), ws);
    let bar = ProgressBar::new((n + WARMUP) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}").expect("valid template"),
    );
    bar.set_message("bench sandbox --image");
    let names = ["host bwrap", "rootfs", "docker run"];
    let mut series: [Vec<Duration>; 4] = Default::default();
    for i in 0..n + WARMUP {
        // Rotate the order so no mechanism always runs right after another's teardown.
        for k in 0..4 {
            let side = (i + k) % 4;
            let t = Instant::now();
            if side < 3 {
                let ok = sandboxes[side].exec(&spec)?.success();
                anyhow::ensure!(ok, "{} `true` failed", names[side]);
            } else {
                anyhow::ensure!(
                    kept.exec(&["true"])? == Some(0),
                    "docker exec `true` failed"
                );
            }
            if i >= WARMUP {
                series[side].push(t.elapsed());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(series)
}

/// The image benchmark's table.
fn print_image_report(report: &ImageBenchReport) {
    println!(
        "entering image {} ({}): `true`, {} interleaved iterations each",
        report.image, report.image_id, report.iterations
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>8}",
        "", "median", "p99", "mean", "ratio"
    );
    for (name, s, r) in [
        ("bwrap, host root (baseline)", &report.bwrap_host, 1.0),
        (
            "bwrap, unpacked image root",
            &report.rootfs,
            report.rootfs_ratio,
        ),
        (
            "docker run per command",
            &report.docker_run,
            report.docker_run_ratio,
        ),
        (
            "docker exec, kept container",
            &report.docker_exec,
            report.docker_exec_ratio,
        ),
    ] {
        println!(
            "{name:<28} {:>7.2} ms {:>7.2} ms {:>7.2} ms {:>7.1}x",
            s.median_ms, s.p99_ms, s.mean_ms, r
        );
    }
    if let Some(ms) = report.unpack_ms {
        println!("unpacking the image into the cache took {ms:.0} ms (once per image id)");
    }
    println!(
        "default (--image-exec rootfs): {:.1}x bubblewrap on the host root; target <= {IMAGE_TARGET_RATIO}x: {}",
        report.rootfs_ratio,
        if report.target_met { "met" } else { "NOT met" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_median_and_p99_of_sorted_samples() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = Stats::of(&samples);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.median_ms, 51.0);
        assert_eq!(s.p99_ms, 99.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }
}
