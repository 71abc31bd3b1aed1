//! The tool-host benchmark behind `ssr bench tools` (and the crate's `bench_tools`
//! example, which builds in a fraction of the time of the whole `ssr`): median and p99
//! per call of `editor view` on a 1,000-line file, `editor str_replace`, and `search`
//! over a 2,000-file repository, each side by side with the same operation done the way
//! Python-scaffold agents do it: a fresh `python3` process per call running a small
//! script this benchmark writes. Each tool operation is timed twice: where the host puts
//! it by default (on the caller's thread for the standard tools) and forced onto a worker
//! thread, both against the same baseline. Wall time and CPU time (of the threads doing
//! the call; of the child process for python3) are reported side by side, since on a
//! shared machine wall time includes waiting for a core. It reports ratios and where a
//! call's time goes; it asserts nothing.
//!
//! Does not own printing (the CLI and the example do) or the host's configuration (the
//! caller passes a [`HostConfig`]).

use crate::{
    CallOptions, CallProfile, Episode, HostConfig, Role, ToolError, ToolHost, ToolHostError,
};

mod report;
pub use report::{BenchReport, OpReport, PhaseMedians, Stats, Variant};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How many calls to time.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Calls per operation through the tool host (search: a tenth, at least 5).
    pub iterations: usize,
    /// Calls per operation of the python3 baseline (search: a third, at least 5).
    pub baseline_iterations: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            iterations: 300,
            baseline_iterations: 30,
        }
    }
}

/// Why the benchmark could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("benchmark files under {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the python3 baseline: {0}")]
    Python(String),
    #[error(transparent)]
    Host(#[from] ToolHostError),
    #[error("`{tool}` answered with a tool error: {kind}: {message}")]
    Tool {
        tool: String,
        kind: &'static str,
        message: String,
    },
}

/// Calls in a row on one placement before switching to the other.
const BLOCK: usize = 20;

#[derive(Default)]
struct Series {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    profiles: Vec<CallProfile>,
}

/// Wall time, CPU time and phases of a series of tool calls.
struct Timed {
    wall: Stats,
    cpu: Stats,
    phases: PhaseMedians,
}

const VIEW_PY: &str = r#"import sys
path = sys.argv[1]
with open(path) as f:
    out = "".join("%6d\t%s\n" % (i + 1, line.rstrip("\n")) for i, line in enumerate(f))
sys.stdout.write(out)
"#;

const REPLACE_PY: &str = r#"import sys
path, old, new = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path) as f:
    text = f.read()
n = text.count(old)
if n != 1:
    sys.exit("matched %d times" % n)
with open(path, "w") as f:
    f.write(text.replace(old, new, 1))
print("edited")
"#;

const SEARCH_PY: &str = r#"import os, re, sys
root, pattern = sys.argv[1], re.compile(sys.argv[2])
out, shown, total = [], 0, 0
for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if not x.startswith("."))
    for name in sorted(files):
        if name.startswith("."):
            continue
        p = os.path.join(d, name)
        with open(p, errors="replace") as f:
            for i, line in enumerate(f):
                if pattern.search(line):
                    total += 1
                    if shown < 100:
                        shown += 1
                        out.append("%s:%d: %s" % (os.path.relpath(p, root), i + 1, line.rstrip()))
print("\n".join(out))
"#;

/// The search pattern of both sides: 10 of the 2,000 files match it, 30 lines each.
const SEARCH_PATTERN: &str = r"def handler_7_1\d_";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The benchmark repository: `big.py` (1,000 lines), `edit.py`, and 100 packages of
/// 20 modules of 60 lines (2,000 files).
fn write_repo(root: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let big: String = (0..1000)
        .map(|i| format!("def function_{i}(x):  # line {i}\n"))
        .collect();
    std::fs::write(root.join("big.py"), big).map_err(io_err(root))?;
    std::fs::write(root.join("edit.py"), "value = VALUE_A\nother = 1\n").map_err(io_err(root))?;
    for d in 0..100 {
        let dir = root.join(format!("pkg{d:03}"));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for f in 0..20 {
            let body: String = (0..30)
                .map(|l| {
                    format!("def handler_{d}_{f}_{l}(request):\n    return request.value + {l}\n")
                })
                .collect();
            std::fs::write(dir.join(format!("mod{f:02}.py")), body).map_err(io_err(&dir))?;
        }
    }
    Ok(())
}

/// The interpreter's own path, so the baseline does not pay a version-manager shim.
fn python() -> Result<PathBuf, BenchError> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| BenchError::Python(format!("cannot run python3: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Python("python3 is not runnable".into()));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// CPU time (user + system) of all waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) != 0 {
            return Duration::ZERO;
        }
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs one baseline process; its wall time and its CPU time.
fn run_python(
    py: &Path,
    script: &Path,
    args: &[String],
) -> Result<(Duration, Duration), BenchError> {
    let cpu = children_cpu();
    let t = Instant::now();
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::Python(format!("{}: {e}", py.display())))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(BenchError::Python(format!(
            "script {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((d, children_cpu().saturating_sub(cpu)))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the benchmark in a fresh folder under the system's temporary directory (removed
/// afterwards). `progress` receives a line before each step.
pub fn run(
    options: BenchOptions,
    config: HostConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let root = std::env::temp_dir().join(format!("ssr-bench-tools-{}", std::process::id()));
    let result = bench(options, config, &root, progress);
    let _ = std::fs::remove_dir_all(&root);
    result
}

struct Bench<'a> {
    host: ToolHost,
    episode: Episode,
    py: PathBuf,
    scripts: &'a Path,
}

impl Bench<'_> {
    /// Times `n` calls where the host puts them by default and `n` forced onto a worker
    /// thread, in alternating blocks of [`BLOCK`] calls so both see the same machine (on
    /// a shared machine, load comes and goes within a run) while each block stays on one
    /// thread as an agent's calls do. Each call is made twice: once with
    /// [`ToolHost::call`] for the wall time, once with a profile (`CallOptions::profiled`) for
    /// the CPU time and the phases (whose clock reads add about 3 µs of system calls).
    fn time_both(
        &mut self,
        tool: &str,
        call_args: &dyn Fn(usize) -> String,
        n: usize,
    ) -> Result<(Timed, Timed), BenchError> {
        let check = |reply: Result<crate::ToolReply, ToolHostError>| -> Result<(), BenchError> {
            reply?
                .result
                .map(drop)
                .map_err(|e: ToolError| BenchError::Tool {
                    tool: tool.to_string(),
                    kind: e.kind(),
                    message: e.message().to_string(),
                })
        };
        let mut series: [Series; 2] = Default::default();
        let mut i = 0;
        for (round, warm_up) in [(n.min(BLOCK), true), (n, false)] {
            let mut done = 0;
            while done < round {
                let block = BLOCK.min(round - done);
                for (idx, s) in series.iter_mut().enumerate() {
                    self.host.set_inline_calls(idx == 0);
                    for _ in 0..block {
                        let a = call_args(i);
                        i += 1;
                        let t = Instant::now();
                        let reply = self.host.call(&self.episode, tool, &a, Default::default());
                        let wall = t.elapsed();
                        check(reply)?;
                        let a = call_args(i);
                        i += 1;
                        let mut profile = CallProfile::default();
                        let options = CallOptions::default().profiled(&mut profile);
                        check(self.host.call(&self.episode, tool, &a, options))?;
                        if !warm_up {
                            s.wall.push(wall);
                            s.cpu.push(if profile.inline {
                                profile.caller_cpu
                            } else {
                                profile.caller_cpu + profile.worker_cpu
                            });
                            s.profiles.push(profile);
                        }
                    }
                }
                done += block;
            }
        }
        self.host.set_inline_calls(true);
        let [default, worker] = series.map(|s| Timed {
            wall: Stats::of(s.wall),
            cpu: Stats::of(s.cpu),
            phases: PhaseMedians::of(&s.profiles),
        });
        Ok((default, worker))
    }

    fn time_python(
        &self,
        script: &str,
        call_args: &dyn Fn(usize) -> Vec<String>,
        n: usize,
    ) -> Result<(Stats, Stats), BenchError> {
        let script = self.scripts.join(script);
        let mut samples = Vec::with_capacity(n);
        let mut cpu = Vec::with_capacity(n);
        // Two warm-up runs fill the page cache with the interpreter and its modules.
        for i in 0..n + 2 {
            let (d, c) = run_python(&self.py, &script, &call_args(i))?;
            if i >= 2 {
                samples.push(d);
                cpu.push(c);
            }
        }
        Ok((Stats::of(samples), Stats::of(cpu)))
    }
}

fn op(
    name: &str,
    (tool, worker): (Timed, Timed),
    (python, python_cpu): (Stats, Stats),
) -> OpReport {
    let speedup = |t: &Stats| python.median.as_secs_f64() / t.median.as_secs_f64().max(1e-9);
    OpReport {
        name: name.to_string(),
        speedup_median: speedup(&tool.wall),
        tool: tool.wall,
        tool_cpu: tool.cpu,
        python,
        python_cpu,
        phases: tool.phases,
        worker: Variant {
            speedup_median: speedup(&worker.wall),
            tool: worker.wall,
            tool_cpu: worker.cpu,
            phases: worker.phases,
        },
    }
}

fn bench(
    options: BenchOptions,
    config: HostConfig,
    root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let repo = root.join("repo");
    write_repo(&repo)?;
    let scripts = root.join("scripts");
    std::fs::create_dir_all(&scripts).map_err(io_err(&scripts))?;
    for (name, text) in [
        ("view.py", VIEW_PY),
        ("replace.py", REPLACE_PY),
        ("search.py", SEARCH_PY),
    ] {
        std::fs::write(scripts.join(name), text).map_err(io_err(&scripts))?;
    }
    let py = python()?;
    progress("loading the tool host");
    let host = ToolHost::new(config)?;
    let mut episode = Episode::new(Role::Solver, repo.canonicalize().map_err(io_err(&repo))?);
    episode.state_dir = Some(root.join("state"));
    let mut b = Bench {
        host,
        episode,
        py,
        scripts: &scripts,
    };
    let n = options.iterations.max(1);
    let nb = options.baseline_iterations.max(1);
    let ops = vec![
        b.view_op(&repo, n, nb, progress)?,
        b.replace_op(&repo, n, nb, progress)?,
        b.search_op(&repo, n, nb, progress)?,
    ];
    Ok(BenchReport {
        python: b.py.clone(),
        load_average: load_average(),
        debug_build: cfg!(debug_assertions),
        ops,
    })
}

impl Bench<'_> {
    /// `editor view` of a 1,000-line file against a python3 process printing it.
    fn view_op(
        &mut self,
        repo: &Path,
        n: usize,
        nb: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<OpReport, BenchError> {
        progress(&format!(
            "editor view ({n} calls) against python3 ({nb} processes)"
        ));
        let big = repo.join("big.py").display().to_string();
        let view_tool = self.time_both(
            "editor",
            &|_| r#"{"command":"view","path":"big.py"}"#.to_string(),
            n,
        )?;
        let view_py = self.time_python("view.py", &|_| vec![big.clone()], nb)?;
        Ok(op("editor view, 1,000-line file", view_tool, view_py))
    }

    /// `editor str_replace` against a python3 process doing the same replacement.
    fn replace_op(
        &mut self,
        repo: &Path,
        n: usize,
        nb: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<OpReport, BenchError> {
        progress("editor str_replace");
        let edit = repo.join("edit.py").display().to_string();
        let swap = |i: usize| {
            if i.is_multiple_of(2) {
                ("VALUE_A", "VALUE_B")
            } else {
                ("VALUE_B", "VALUE_A")
            }
        };
        // The file alternates between the two values; both sides start from VALUE_A.
        let reset = || {
            std::fs::write(repo.join("edit.py"), "value = VALUE_A\nother = 1\n")
                .map_err(io_err(repo))
        };
        reset()?;
        let replace_tool = self.time_both(
            "editor",
            &|i| {
                let (old, new) = swap(i);
                serde_json::json!({"command": "str_replace", "path": "edit.py", "old_str": old, "new_str": new})
                    .to_string()
            },
            // Every call swaps the value and the calls come in pairs, so the file ends at
            // VALUE_A.
            n,
        )?;
        reset()?;
        let replace_py = self.time_python(
            "replace.py",
            &|i| {
                let (old, new) = swap(i);
                vec![edit.clone(), old.to_string(), new.to_string()]
            },
            nb,
        )?;
        Ok(op("editor str_replace", replace_tool, replace_py))
    }

    /// `search` over 2,000 files against a python3 process walking them.
    fn search_op(
        &mut self,
        repo: &Path,
        n: usize,
        nb: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<OpReport, BenchError> {
        let ns = (n / 10).max(5);
        let nbs = (nb / 3).max(5);
        progress(&format!(
            "search over 2,000 files ({ns} calls) against python3 ({nbs} processes)"
        ));
        let search_args = serde_json::json!({ "pattern": SEARCH_PATTERN }).to_string();
        let search_tool = self.time_both("search", &|_| search_args.clone(), ns)?;
        let repo_s = repo.display().to_string();
        let search_py = self.time_python(
            "search.py",
            &|_| vec![repo_s.clone(), SEARCH_PATTERN.to_string()],
            nbs,
        )?;
        Ok(op("search, 2,000 files", search_tool, search_py))
    }
}
