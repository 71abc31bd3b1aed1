//! `ssr sandbox ...`: run one command in the sandbox over a directory (`exec`), and
//! report what this host offers (`probe`).
//!
//! Owns: argument parsing into an [`ExecSpec`], human and JSON output, and the exit
//! code. Does not own: any sandboxing (that is `ssr-sandbox`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use ssr_sandbox::cgroup::{Controller, Hierarchy};
use ssr_sandbox::{
    BwrapSandbox, Command, Environment, ExecOutcome, ExecSpec, ImageExec, ImageSandbox, LimitHit,
    RootFs, Sandbox, host_cgroups, probe_bwrap, probe_engines,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Prints which sandbox backends and limit mechanisms this host offers: bubblewrap and
    /// its version, the cgroup version and usable controllers, docker/podman.
    Probe(ProbeArgs),
    /// Runs one command in the sandbox over a directory (mounted read-write at /repo).
    ///
    /// The command's stdout and stderr are printed, then a one-line status on stderr.
    /// `ssr` exits with the command's exit code; 128+N when it was killed by signal N;
    /// 124 when a timeout ended it (as coreutils `timeout` does); 2 when the sandbox could
    /// not run it at all.
    ///
    /// Example: ssr sandbox exec --repo . --timeout 10 --memory 512 --ro tests -- pytest -q
    Exec(Box<ExecArgs>),
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The directory to run in, mounted read-write at /repo.
    #[arg(long)]
    repo: PathBuf,
    /// Wall-clock limit in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Kill the command after this many seconds without output.
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Memory limit in MiB (default 4096).
    #[arg(long)]
    memory: Option<u64>,
    /// Maximum number of processes and threads (default 512).
    #[arg(long)]
    pids: Option<u64>,
    /// A path relative to the repository mounted read-only (repeatable).
    #[arg(long = "ro", value_name = "PATH")]
    read_only: Vec<PathBuf>,
    /// Working directory relative to the repository.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Bytes kept of stdout and of stderr each (default 1 MiB); the rest is dropped.
    #[arg(long)]
    output_bytes: Option<usize>,
    /// Set a variable inside the sandbox (KEY=VALUE, repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Use this unpacked image directory as the root filesystem (bubblewrap).
    #[arg(long, conflicts_with = "image")]
    rootfs: Option<PathBuf>,
    /// Run in this container image's environment (its root, `PATH` and repository path).
    #[arg(long)]
    image: Option<String>,
    /// How the command enters the image: `rootfs` (bubblewrap over the image's root,
    /// unpacked once and cached by image id) or `docker` (`docker run`, or podman).
    #[arg(long, default_value = "rootfs", value_name = "docker|rootfs")]
    image_exec: ImageExec,
    /// With `--image`: where the directory is mounted inside the image (default: the
    /// image's WORKDIR, else /repo).
    #[arg(long, requires = "image")]
    workdir: Option<PathBuf>,
    /// Print one JSON object: exit_code, signal, timed_out, truncated, limit_hit,
    /// stdout, stderr, wall_ms, start (cold: the CLI starts every exec afresh), backend.
    #[arg(long)]
    json: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(cmd: SandboxCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCmd::Probe(a) => probe(a),
        SandboxCmd::Exec(a) => exec(*a),
    }
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("--{what} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Raw arguments to a validated environment and spec.
fn to_spec(a: &ExecArgs) -> anyhow::Result<(Environment, ExecSpec)> {
    let mut env = Environment::default();
    if let Some(dir) = &a.rootfs {
        env.rootfs = RootFs::Dir(dir.clone());
    }
    if let Some(image) = &a.image {
        env.rootfs = RootFs::Image(image.clone());
    }
    let mut spec = ExecSpec::new(Command::Argv(a.command.clone()), &a.repo);
    spec.cwd.clone_from(&a.cwd);
    spec.read_only_paths.clone_from(&a.read_only);
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?} is not KEY=VALUE"))?;
        spec.env.insert(k.to_string(), v.to_string());
    }
    spec.limits.timeout = seconds(a.timeout, "timeout")?;
    if let Some(s) = a.idle_timeout {
        spec.limits.idle_timeout = Some(seconds(s, "idle-timeout")?);
    }
    if let Some(m) = a.memory {
        spec.limits.memory_bytes = Some(m.checked_mul(1 << 20).context("--memory is too large")?);
    }
    if let Some(p) = a.pids {
        spec.limits.pids = Some(p);
    }
    if let Some(b) = a.output_bytes {
        spec.limits.output_bytes = b;
    }
    Ok((env, spec))
}

/// The `--json` object of `ssr sandbox exec`.
#[derive(Serialize)]
struct ExecReport<'a> {
    backend: &'a str,
    #[serde(flatten)]
    outcome: &'a ExecOutcome,
}

fn exec(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let (env, spec) = to_spec(&a)?;
    // One exec per process: a parked launcher would only be started to be killed.
    let sandbox: Box<dyn Sandbox> = match &env.rootfs {
        RootFs::Image(image) => {
            Box::new(ImageSandbox::new(image, a.image_exec, a.workdir.clone())?)
        }
        _ => Box::new(BwrapSandbox::new(env)?.with_warm_pool(false)),
    };
    let outcome = sandbox.exec(&spec)?;
    if a.json {
        let report = ExecReport {
            backend: sandbox.name(),
            outcome: &outcome,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        use std::io::Write;
        std::io::stdout().write_all(outcome.stdout.as_bytes())?;
        std::io::stderr().write_all(outcome.stderr.as_bytes())?;
        eprintln!("{}", status_line(sandbox.name(), &outcome));
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}

/// The process exit code mirroring the command's (see `ssr sandbox exec --help`).
fn exit_code(o: &ExecOutcome) -> u8 {
    if o.timed_out {
        return 124;
    }
    match (o.exit_code, o.signal) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn status_line(backend: &str, o: &ExecOutcome) -> String {
    let mut s = format!("[sandbox {backend}] ");
    match (o.exit_code, o.signal) {
        (Some(c), _) => s += &format!("exit {c}"),
        (None, Some(sig)) => s += &format!("killed by signal {sig}"),
        (None, None) => s += "no status",
    }
    s += &format!(" in {} ms", o.wall_ms);
    if let Some(hit) = o.limit_hit {
        let what = match hit {
            LimitHit::Timeout => "timeout",
            LimitHit::IdleTimeout => "idle timeout",
            LimitHit::Memory => "memory limit",
            LimitHit::Pids => "pids limit",
            LimitHit::Output => "output limit",
            LimitHit::FileSize => "file size limit",
            LimitHit::Cancelled => "cancelled",
        };
        s += &format!("; {what} hit");
    }
    if o.truncated {
        s += "; output truncated";
    }
    s
}

/// The `--json` object of `ssr sandbox probe`.
#[derive(Serialize)]
struct ProbeReport {
    bwrap: BwrapReport,
    cgroup: CgroupReport,
    engines: Vec<ssr_sandbox::EngineProbe>,
}

#[derive(Serialize)]
struct BwrapReport {
    usable: bool,
    path: Option<PathBuf>,
    version: Option<String>,
    problem: Option<String>,
}

#[derive(Serialize)]
struct CgroupReport {
    /// `v1`, `v2`, `v1+v2` or `none`.
    version: &'static str,
    /// `memory`/`pids` with where per-exec cgroups are created.
    controllers: Vec<ControllerReport>,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct ControllerReport {
    controller: &'static str,
    version: &'static str,
    parent: PathBuf,
}

fn probe(a: ProbeArgs) -> anyhow::Result<ExitCode> {
    let bwrap = match probe_bwrap() {
        Ok(i) => BwrapReport {
            usable: true,
            path: Some(i.path),
            version: Some(i.version),
            problem: None,
        },
        Err(e) => BwrapReport {
            usable: false,
            path: None,
            version: None,
            problem: Some(e),
        },
    };
    let cg = host_cgroups();
    let name = |c: &Controller| match c {
        Controller::Memory => "memory",
        Controller::Pids => "pids",
    };
    let mut controllers = Vec::new();
    for h in &cg.hierarchies {
        match h {
            Hierarchy::V1 { controller, parent } => controllers.push(ControllerReport {
                controller: name(controller),
                version: "v1",
                parent: parent.clone(),
            }),
            Hierarchy::V2 {
                parent,
                controllers: cs,
            } => controllers.extend(cs.iter().map(|c| ControllerReport {
                controller: name(c),
                version: "v2",
                parent: parent.clone(),
            })),
        }
    }
    let report = ProbeReport {
        bwrap,
        cgroup: CgroupReport {
            version: cg.version(),
            controllers,
            problems: cg.problems.clone(),
        },
        engines: probe_engines(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        match &report.bwrap {
            BwrapReport {
                usable: true,
                version: Some(v),
                path: Some(p),
                ..
            } => println!("bwrap:   {v} at {} (usable)", p.display()),
            b => println!(
                "bwrap:   not usable: {}",
                b.problem.as_deref().unwrap_or("unknown")
            ),
        }
        println!("cgroup:  {}", report.cgroup.version);
        for c in &report.cgroup.controllers {
            println!(
                "  {:<7} {} under {}",
                c.controller,
                c.version,
                c.parent.display()
            );
        }
        for p in &report.cgroup.problems {
            println!("  problem: {p}");
        }
        for e in &report.engines {
            match (&e.version, &e.problem) {
                (Some(v), _) => println!("{:<8} {v} (answers)", format!("{}:", e.engine.program())),
                (None, Some(p)) => {
                    println!("{:<8} not usable: {p}", format!("{}:", e.engine.program()))
                }
                (None, None) => println!("{:<8} unknown", format!("{}:", e.engine.program())),
            }
        }
    }
    Ok(if report.bwrap.usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> ExecOutcome {
        ExecOutcome {
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            truncated: false,
            limit_hit: None,
            stdout: String::new(),
            stderr: String::new(),
            wall_ms: 5,
            start: ssr_sandbox::StartPath::Cold,
        }
    }

    #[test]
    fn exit_code_mirrors_the_command() {
        let mut o = outcome();
        o.exit_code = Some(3);
        assert_eq!(exit_code(&o), 3);
        o.exit_code = None;
        o.signal = Some(11);
        assert_eq!(exit_code(&o), 139);
        o.timed_out = true;
        o.signal = Some(9);
        assert_eq!(exit_code(&o), 124);
    }

    #[test]
    fn status_line_names_the_limit() {
        let mut o = outcome();
        o.exit_code = None;
        o.signal = Some(9);
        o.limit_hit = Some(LimitHit::Memory);
        o.truncated = true;
        assert_eq!(
            status_line("bwrap", &o),
            "[sandbox bwrap] killed by signal 9 in 5 ms; memory limit hit; output truncated"
        );
    }
}
