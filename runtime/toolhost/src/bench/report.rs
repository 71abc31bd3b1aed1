//! What `ssr bench tools` reports: per-call statistics, the phases of the tool calls,
//! and the table for a person ([`BenchReport::to_text`]).
//!
//! Does not own the measuring (the parent module).

use crate::CallProfile;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Median and 99th percentile of a series of timings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stats {
    #[serde(rename = "median_us", serialize_with = "as_us")]
    pub median: Duration,
    #[serde(rename = "p99_us", serialize_with = "as_us")]
    pub p99: Duration,
    pub n: usize,
}

fn as_us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let n = samples.len();
        if n == 0 {
            return Stats {
                median: Duration::ZERO,
                p99: Duration::ZERO,
                n,
            };
        }
        // Nearest rank: with few samples the p99 is the largest, never an interpolation.
        let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
        Stats {
            median: at(0.5),
            p99: at(0.99),
            n,
        }
    }
}

/// The median of each phase of the timed tool calls (see [`CallProfile`]), in µs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PhaseMedians {
    pub setup_us: f64,
    pub dispatch_us: f64,
    pub instantiate_us: f64,
    pub run_us: f64,
    pub host_us: f64,
    pub host_calls: u64,
    pub teardown_us: f64,
    /// CPU time of the caller's thread (all of it when the call ran inline).
    pub caller_cpu_us: f64,
    /// CPU time of the worker thread until it answered (zero inline).
    pub worker_cpu_us: f64,
    /// Whether the calls ran on the caller's thread.
    pub inline: bool,
}

impl PhaseMedians {
    pub(crate) fn of(profiles: &[CallProfile]) -> PhaseMedians {
        let median = |f: &dyn Fn(&CallProfile) -> Duration| {
            Stats::of(profiles.iter().map(f).collect())
                .median
                .as_secs_f64()
                * 1e6
        };
        let mut calls: Vec<u64> = profiles.iter().map(|p| p.host_calls).collect();
        calls.sort_unstable();
        PhaseMedians {
            setup_us: median(&|p| p.setup),
            dispatch_us: median(&|p| p.dispatch),
            instantiate_us: median(&|p| p.instantiate),
            run_us: median(&|p| p.run),
            host_us: median(&|p| p.host),
            host_calls: calls.get(calls.len() / 2).copied().unwrap_or(0),
            teardown_us: median(&|p| p.teardown),
            caller_cpu_us: median(&|p| p.caller_cpu),
            worker_cpu_us: median(&|p| p.worker_cpu),
            inline: profiles.iter().filter(|p| p.inline).count() * 2 > profiles.len(),
        }
    }
}

/// One operation: the tool host against the per-call python3 process.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub name: String,
    /// Wall time per call where the host runs it by default (`phases.inline` says
    /// whether that was the caller's thread).
    pub tool: Stats,
    /// CPU time per call of the threads that did it (caller, plus worker if any).
    pub tool_cpu: Stats,
    pub python: Stats,
    /// CPU time (user + system) of each python3 process.
    pub python_cpu: Stats,
    /// Python's median over the tool's median (wall).
    pub speedup_median: f64,
    pub phases: PhaseMedians,
    /// The same calls forced onto a worker thread.
    pub worker: Variant,
}

/// One way of running an operation's tool calls.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub tool: Stats,
    pub tool_cpu: Stats,
    pub speedup_median: f64,
    pub phases: PhaseMedians,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The interpreter of the baseline (its own path, not a version-manager shim).
    pub python: PathBuf,
    /// `/proc/loadavg`'s 1-minute load when the run ended (other work on the machine).
    pub load_average: Option<f64>,
    /// Whether this build has debug assertions (a debug build is not what users run).
    pub debug_build: bool,
    pub ops: Vec<OpReport>,
}

impl BenchReport {
    /// The report as a table for a person, with the per-phase breakdown of the tool
    /// calls and the targets of the issue.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = self.timings_table();
        s.push_str(&self.phases_table());
        let _ = writeln!(
            s,
            "\nbaseline: {} running a script per call; targets: view ≤ 100 µs median and ≥ 100x, search not slower than python",
            self.python.display()
        );
        let load = self
            .load_average
            .map_or("unknown".to_string(), |l| format!("{l:.2}"));
        let _ = write!(
            s,
            "load average (1 min): {load}{}",
            if self.debug_build {
                "; DEBUG BUILD: run `cargo run --release -- bench tools` for representative figures"
            } else {
                ""
            }
        );
        s
    }

    /// The table of wall and CPU times per operation and placement, with the baseline.
    fn timings_table(&self) -> String {
        use std::fmt::Write as _;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let place = place_of;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<30} {:<13} {:>11} {:>10} {:>10} {:>10} {:>13} {:>11} {:>8}",
            "operation",
            "runs on",
            "wall median",
            "wall p99",
            "cpu median",
            "cpu p99",
            "python median",
            "python cpu",
            "speedup"
        );
        for o in &self.ops {
            for (i, (tool, cpu, phases, speedup)) in [
                (&o.tool, &o.tool_cpu, &o.phases, o.speedup_median),
                (
                    &o.worker.tool,
                    &o.worker.tool_cpu,
                    &o.worker.phases,
                    o.worker.speedup_median,
                ),
            ]
            .into_iter()
            .enumerate()
            {
                let _ = writeln!(
                    s,
                    "{:<30} {:<13} {:>8.0} µs {:>7.0} µs {:>7.0} µs {:>7.0} µs {:>10.0} µs {:>8.0} µs {:>7.0}x",
                    if i == 0 { o.name.as_str() } else { "" },
                    place(phases),
                    us(tool.median),
                    us(tool.p99),
                    us(cpu.median),
                    us(cpu.p99),
                    us(o.python.median),
                    us(o.python_cpu.median),
                    speedup
                );
            }
        }
        s
    }

    /// Where a tool call's time goes, phase by phase (medians).
    fn phases_table(&self) -> String {
        use std::fmt::Write as _;
        let place = place_of;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nwhere a tool call's time goes (medians, µs; host = inside WASI/ssr:tool calls, part of run):"
        );
        let _ = writeln!(
            s,
            "{:<30} {:<13} {:>6} {:>8} {:>11} {:>7} {:>7} {:>10} {:>8} {:>10} {:>10}",
            "operation",
            "runs on",
            "setup",
            "dispatch",
            "instantiate",
            "run",
            "host",
            "host calls",
            "teardown",
            "caller cpu",
            "worker cpu"
        );
        for o in &self.ops {
            for (i, p) in [&o.phases, &o.worker.phases].into_iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{:<30} {:<13} {:>6.1} {:>8.1} {:>11.1} {:>7.1} {:>7.1} {:>10} {:>8.1} {:>10.1} {:>10.1}",
                    if i == 0 { o.name.as_str() } else { "" },
                    place(p),
                    p.setup_us,
                    p.dispatch_us,
                    p.instantiate_us,
                    p.run_us,
                    p.host_us,
                    p.host_calls,
                    p.teardown_us,
                    p.caller_cpu_us,
                    p.worker_cpu_us
                );
            }
        }
        s
    }
}

/// Where a call ran, for the tables.
fn place_of(p: &PhaseMedians) -> &'static str {
    if p.inline {
        "caller thread"
    } else {
        "worker thread"
    }
}
