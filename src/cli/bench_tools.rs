//! The tool-host benchmark (`ssr tools bench`, meant to be reachable as
//! `ssr bench tools`): median and p99 per call of `editor view` on a 1,000-line file,
//! `editor str_replace`, and `search` over a 2,000-file repository, each side by side
//! with the same operation done by a fresh `python3` process per call running a small
//! script this benchmark writes. Prints the ratio; asserts nothing.

use clap::Args;
use serde_json::json;
use ssr_toolhost::{Episode, HostConfig, Role, ToolHost};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchToolsArgs {
    /// Calls per operation through the tool host.
    #[arg(long, default_value_t = 300)]
    pub iterations: usize,
    /// Calls per operation of the python3 baseline (each spawns an interpreter).
    #[arg(long, default_value_t = 30)]
    pub baseline_iterations: usize,
    /// One JSON object: {"device", "ops": [{name, tool, python, speedup_median}]}.
    #[arg(long)]
    pub json: bool,
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

#[derive(Clone, Copy, Debug)]
struct Stats {
    median: Duration,
    p99: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
        n,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn write_repo(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root)?;
    let big: String = (0..1000)
        .map(|i| format!("def function_{i}(x):  # line {i}\n"))
        .collect();
    std::fs::write(root.join("big.py"), big)?;
    std::fs::write(root.join("edit.py"), "value = VALUE_A\nother = 1\n")?;
    for d in 0..100 {
        let dir = root.join(format!("pkg{d:03}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..20 {
            let body: String = (0..30)
                .map(|l| {
                    format!("def handler_{d}_{f}_{l}(request):\n    return request.value + {l}\n")
                })
                .collect();
            std::fs::write(dir.join(format!("mod{f:02}.py")), body)?;
        }
    }
    Ok(())
}

/// The interpreter's own path, so the baseline does not pay a version-manager shim.
fn python() -> anyhow::Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()?;
    anyhow::ensure!(out.status.success(), "python3 is not runnable");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn run_python(py: &Path, script: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let d = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "baseline script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(d)
}

pub fn run(args: &BenchToolsArgs, config: HostConfig) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("ssr-bench-tools-{}", std::process::id()));
    let result = bench(args, config, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn bench(args: &BenchToolsArgs, config: HostConfig, root: &Path) -> anyhow::Result<ExitCode> {
    let repo = root.join("repo");
    write_repo(&repo)?;
    let scripts = root.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    for (name, text) in [
        ("view.py", VIEW_PY),
        ("replace.py", REPLACE_PY),
        ("search.py", SEARCH_PY),
    ] {
        std::fs::write(scripts.join(name), text)?;
    }
    let py = python()?;
    eprintln!("bench: loading the tool host…");
    let host = ToolHost::new(config)?;
    let mut episode = Episode::new(Role::Solver, repo.canonicalize()?);
    episode.state_dir = Some(root.join("state"));

    let time_tool =
        |tool: &str, call_args: &dyn Fn(usize) -> String, n: usize| -> anyhow::Result<Stats> {
            for i in 0..n.min(10) {
                host.call(&episode, tool, &call_args(i))?.result?;
            }
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let a = call_args(i);
                let t = Instant::now();
                let reply = host.call(&episode, tool, &a)?;
                samples.push(t.elapsed());
                reply.result?;
            }
            Ok(stats(samples))
        };
    let time_python = |script: &str,
                       call_args: &dyn Fn(usize) -> Vec<String>,
                       n: usize|
     -> anyhow::Result<Stats> {
        let script = scripts.join(script);
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + 2 {
            let a = call_args(i);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let d = run_python(&py, &script, &refs)?;
            if i >= 2 {
                samples.push(d);
            }
        }
        Ok(stats(samples))
    };

    let n = args.iterations.max(1);
    let nb = args.baseline_iterations.max(1);
    let big = repo.join("big.py").display().to_string();
    let edit = repo.join("edit.py").display().to_string();
    let swap = |i: usize| {
        if i.is_multiple_of(2) {
            ("VALUE_A", "VALUE_B")
        } else {
            ("VALUE_B", "VALUE_A")
        }
    };
    let mut ops = Vec::new();

    eprintln!("bench: editor view ({n} calls) vs python3 ({nb} processes)…");
    let view_tool = time_tool(
        "editor",
        &|_| r#"{"command":"view","path":"big.py"}"#.to_string(),
        n,
    )?;
    let view_py = time_python("view.py", &|_| vec![big.clone()], nb)?;
    ops.push(("editor view, 1,000-line file", view_tool, view_py));

    eprintln!("bench: editor str_replace…");
    // The file alternates between the two values; both sides start from VALUE_A.
    std::fs::write(repo.join("edit.py"), "value = VALUE_A\nother = 1\n")?;
    let replace_tool = time_tool(
        "editor",
        &|i| {
            let (old, new) = swap(i);
            json!({"command": "str_replace", "path": "edit.py", "old_str": old, "new_str": new})
                .to_string()
        },
        // An even count (warm-up included) leaves the file at VALUE_A.
        n + n % 2,
    )?;
    std::fs::write(repo.join("edit.py"), "value = VALUE_A\nother = 1\n")?;
    let replace_py = time_python(
        "replace.py",
        &|i| {
            let (old, new) = swap(i);
            vec![edit.clone(), old.to_string(), new.to_string()]
        },
        nb,
    )?;
    ops.push(("editor str_replace", replace_tool, replace_py));

    let ns = (n / 10).max(5);
    let nbs = (nb / 3).max(5);
    eprintln!("bench: search over 2,000 files ({ns} calls) vs python3 ({nbs} processes)…");
    let search_tool = time_tool(
        "search",
        &|_| r#"{"pattern":"def handler_7_1\\d_"}"#.to_string(),
        ns,
    )?;
    let repo_s = repo.display().to_string();
    let search_py = time_python(
        "search.py",
        &|_| vec![repo_s.clone(), r"def handler_7_1\d_".to_string()],
        nbs,
    )?;
    ops.push(("search, 2,000 files", search_tool, search_py));

    if args.json {
        let items: Vec<_> = ops
            .iter()
            .map(|(name, t, p)| {
                json!({
                    "name": name,
                    "tool": {"median_us": us(t.median), "p99_us": us(t.p99), "n": t.n},
                    "python": {"median_us": us(p.median), "p99_us": us(p.p99), "n": p.n},
                    "speedup_median": p.median.as_secs_f64() / t.median.as_secs_f64(),
                })
            })
            .collect();
        println!("{}", json!({"python": py, "ops": items}));
    } else {
        println!(
            "{:<30} {:>12} {:>12} {:>14} {:>14} {:>9}",
            "operation", "tool median", "tool p99", "python median", "python p99", "speedup"
        );
        for (name, t, p) in &ops {
            println!(
                "{:<30} {:>9.0} µs {:>9.0} µs {:>11.0} µs {:>11.0} µs {:>8.0}x",
                name,
                us(t.median),
                us(t.p99),
                us(p.median),
                us(p.p99),
                p.median.as_secs_f64() / t.median.as_secs_f64()
            );
        }
        println!(
            "baseline: {} running a script per call; targets: view ≤ 100 µs median, ≥ 100x",
            py.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
