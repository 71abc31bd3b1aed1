//! The container backend: a docker-compatible engine (docker or podman) driven through
//! its command line, for image-based environments ([`RootFs::Image`], e.g. SWE-bench
//! images).
//!
//! Owns: finding an engine that answers, the `run` command line ([`docker_run_args`]),
//! killing and removing the exec's container, reading whether it was OOM-killed, and
//! sweeping containers left by callers that died. Does not own: validation (`plan`) or
//! supervision of the CLI process (`supervise`).
//!
//! Limits map to engine flags: `--memory` (and `--memory-swap` equal to it: no swap),
//! `--pids-limit`, `--ulimit fsize`, `--network none`, `--cap-drop ALL`,
//! `--security-opt no-new-privileges`, a read-only root with a size-limited `/tmp`.
//! The container runs as the caller's uid:gid so the workspace is writable and files it
//! creates belong to the caller; as root that is uid 0 without capabilities.

use crate::outcome::decode_status;
use crate::plan::{Plan, plan};
use crate::probe::find_program;
use crate::spec::{
    Environment, ExecOutcome, ExecSpec, LimitHit, Limits, RootFs, Sandbox, SandboxError, StartPath,
};
use crate::supervise::{self, Launch, TreeKiller, Watch};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Prefix of every container name this crate creates: `ssr-sandbox-<pid>-<seq>`.
pub(crate) const NAME_PREFIX: &str = "ssr-sandbox-";

/// Size of `/tmp` inside the container.
const TMP_BYTES: u64 = 512 << 20;

/// How long an engine gets to answer `version`/`info`, `kill` or `rm`.
const ENGINE_PATIENCE: Duration = Duration::from_secs(15);

/// Host variables the engine's CLI itself needs (never passed into the container).
const ENGINE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "CONTAINER_HOST",
    "XDG_RUNTIME_DIR",
];

/// A docker-compatible engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// Whether an engine is installed and answers, for `ssr sandbox probe`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineProbe {
    pub engine: Engine,
    pub path: Option<PathBuf>,
    /// The server version when the engine answered.
    pub version: Option<String>,
    /// Why it is not usable, when it is not.
    pub problem: Option<String>,
}

/// Asks docker, then podman, whether it answers.
pub fn probe_engines() -> Vec<EngineProbe> {
    [Engine::Docker, Engine::Podman]
        .into_iter()
        .map(probe_engine)
        .collect()
}

fn probe_engine(engine: Engine) -> EngineProbe {
    let Some(path) = find_program(engine.program()) else {
        return EngineProbe {
            engine,
            path: None,
            version: None,
            problem: Some(format!("`{}` not found on PATH", engine.program())),
        };
    };
    let args: &[&str] = match engine {
        Engine::Docker => &["version", "--format", "{{.Server.Version}}"],
        Engine::Podman => &["info", "--format", "{{.Version.Version}}"],
    };
    match engine_output(&path, args) {
        Ok(v) => EngineProbe {
            engine,
            path: Some(path),
            version: Some(v.trim().to_string()),
            problem: None,
        },
        Err(e) => EngineProbe {
            engine,
            path: Some(path),
            version: None,
            problem: Some(e),
        },
    }
}

/// Runs the engine CLI with a bounded wait; returns stdout or a reason.
pub(crate) fn engine_output(program: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(engine_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let until = std::time::Instant::now() + ENGINE_PATIENCE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} did not answer in time",
                    program.display(),
                    args.join(" ")
                ));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(crate) fn engine_env() -> Vec<(String, String)> {
    ENGINE_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// Runs commands in containers of [`RootFs::Image`].
#[derive(Clone, Debug)]
pub struct DockerSandbox {
    env: Environment,
    image: String,
    engine: Engine,
    program: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The next number for a container name of this process.
pub(crate) fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The first engine (docker, then podman) that answers, or why none does.
pub fn first_engine() -> Result<(Engine, PathBuf), SandboxError> {
    let mut reasons = Vec::new();
    for p in probe_engines() {
        match (p.path, p.problem) {
            (Some(path), None) => return Ok((p.engine, path)),
            (_, Some(why)) => reasons.push(why),
            (None, None) => {}
        }
    }
    Err(SandboxError::Unavailable {
        backend: "docker",
        reason: reasons.join("; "),
    })
}

impl DockerSandbox {
    /// Uses the first engine (docker, then podman) that answers. The environment's root
    /// filesystem must be [`RootFs::Image`].
    pub fn new(env: Environment) -> Result<Self, SandboxError> {
        let (engine, path) = first_engine()?;
        Self::with_engine(env, engine, path)
    }

    /// Uses `engine` at `program` without asking whether it answers.
    pub fn with_engine(
        env: Environment,
        engine: Engine,
        program: PathBuf,
    ) -> Result<Self, SandboxError> {
        let RootFs::Image(image) = &env.rootfs else {
            return Err(SandboxError::InvalidSpec(
                "the docker backend needs a container image (RootFs::Image)".into(),
            ));
        };
        let image = image.clone();
        let sb = DockerSandbox {
            env,
            image,
            engine,
            program,
        };
        // Once per process and engine: later sandboxes find nothing new to sweep.
        static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if !swept.contains(&sb.program) {
            sweep_stale_containers(&sb.program);
            swept.push(sb.program.clone());
        }
        Ok(sb)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }
}

/// Label every container of this crate carries; its value is the boot id of the machine
/// that made it (`/proc/sys/kernel/random/boot_id`), so a process id is only compared
/// with processes of the same boot.
pub const OWNER_LABEL: &str = "ssr.sandbox.boot";

/// This machine's boot id (empty when unreadable: then every pid check is by pid alone).
pub(crate) fn boot_id() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// Removes the containers of callers that died: a caller killed with SIGKILL takes its
/// engine CLI with it, but the engine keeps the container running. A container is stale
/// when it carries [`OWNER_LABEL`] and either was made in another boot or its maker's
/// pid (in its name) no longer exists. Returns the names removed.
///
/// Why not `--rm` and nothing else: `--rm` acts when the container's process ends, and a
/// `sleep 600` whose caller was killed does not end.
pub fn sweep_stale_containers(program: &Path) -> Vec<String> {
    let Ok(listing) = engine_output(
        program,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={OWNER_LABEL}"),
            "--format",
            &format!("{{{{.Names}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}"),
        ],
    )
    .or_else(|_| {
        // An engine whose `ps` knows no `.Label` (older podman): names only.
        engine_output(
            program,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label={OWNER_LABEL}"),
                "--format",
                "{{.Names}}",
            ],
        )
    }) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in listing.lines() {
        let (name, boot) = line.split_once('\t').unwrap_or((line, ""));
        let pid = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let other_boot = !boot.is_empty() && !boot_id().is_empty() && boot != boot_id();
        let dead = pid.is_none_or(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        });
        if (other_boot || dead) && engine_output(program, &["rm", "-f", name]).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed
}

/// The engine's arguments for one exec (after the program name). `env_file` holds the
/// command's environment (values never appear on a command line other users can read).
pub fn docker_run_args(
    engine: Engine,
    image: &str,
    name: &str,
    plan_in: &DockerPlan<'_>,
    limits: &Limits,
    user: (u32, u32),
    env_file: &Path,
) -> Vec<OsString> {
    let plan = plan_in.plan;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        a.extend(items.iter().map(|i| i.as_ref().to_os_string()));
    };
    push(&[&"run", &"--name", &name, &"--network", &"none"]);
    push(&[&"--label", &format!("{OWNER_LABEL}={}", boot_id())]);
    push(&[
        &"--cap-drop",
        &"ALL",
        &"--security-opt",
        &"no-new-privileges",
    ]);
    push(&[&"--user", &format!("{}:{}", user.0, user.1)]);
    push(&[
        &"--read-only",
        &"--tmpfs",
        &format!("/tmp:rw,size={TMP_BYTES},mode=1777"),
    ]);
    // An init process reaps zombies and forwards signals, so a kill ends the tree.
    push(&[&"--init"]);
    if let Some(m) = limits.memory_bytes {
        push(&[
            &"--memory",
            &format!("{m}b"),
            &"--memory-swap",
            &format!("{m}b"),
        ]);
    }
    if let Some(p) = limits.pids {
        // The init process counts too.
        push(&[&"--pids-limit", &(p + 1).to_string()]);
    }
    if let Some(f) = limits.file_size_bytes {
        push(&[&"--ulimit", &format!("fsize={f}:{f}")]);
    }
    push(&[&"--ulimit", &"core=0:0"]);
    if engine == Engine::Podman {
        // Podman keeps the caller's uid mapping; without this the workspace would be
        // owned by a sub-uid inside.
        push(&[&"--userns", &"keep-id"]);
    }
    push(&[&"--env-file", &env_file]);
    push(&[&"-v", &volume(&plan.workspace, &plan.guest, false)]);
    for m in &plan.mounts {
        push(&[&"-v", &volume(&m.host, &m.guest, m.read_only)]);
    }
    for rel in &plan.read_only {
        push(&[
            &"-v",
            &volume(&plan.workspace.join(rel), &plan.guest.join(rel), true),
        ]);
    }
    push(&[&"-w", &plan.cwd, &"--", &image]);
    for arg in &plan.argv {
        push(&[arg]);
    }
    a
}

fn volume(host: &Path, guest: &Path, read_only: bool) -> OsString {
    let mut v = host.as_os_str().to_os_string();
    v.push(":");
    v.push(guest);
    v.push(if read_only { ":ro" } else { ":rw" });
    v
}

/// A plan checked for what the engine's CLI cannot express.
pub struct DockerPlan<'a> {
    plan: &'a Plan,
}

impl<'a> DockerPlan<'a> {
    fn check(plan: &'a Plan) -> Result<Self, SandboxError> {
        let paths = [&plan.workspace, &plan.guest]
            .into_iter()
            .chain(plan.mounts.iter().flat_map(|m| [&m.host, &m.guest]));
        for p in paths {
            if p.as_os_str().as_encoded_bytes().contains(&b':') {
                return Err(SandboxError::InvalidSpec(format!(
                    "path {} contains `:`, which `-v` cannot express",
                    p.display()
                )));
            }
        }
        for (k, v) in &plan.env {
            if v.contains('\n') {
                return Err(SandboxError::InvalidSpec(format!(
                    "environment variable {k} contains a newline, which an env file cannot express"
                )));
            }
        }
        Ok(DockerPlan { plan })
    }
}

struct ContainerKiller<'a> {
    program: &'a Path,
    name: &'a str,
}

impl TreeKiller for ContainerKiller<'_> {
    fn kill_tree(&self, pid: i32, reaped: bool) {
        if !reaped {
            // The container is the engine's child, not ours: kill it by name, then the CLI.
            let _ = engine_output(self.program, &["kill", self.name]);
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

impl Sandbox for DockerSandbox {
    fn name(&self) -> &'static str {
        self.engine.program()
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        let plan = plan(&self.env, spec)?;
        let checked = DockerPlan::check(&plan)?;
        let mut env_file = tempfile::NamedTempFile::new()?;
        for (k, v) in &plan.env {
            writeln!(env_file, "{k}={v}")?;
        }
        env_file.flush()?;
        let name = format!("{NAME_PREFIX}{}-{}", std::process::id(), next_seq());
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let user = unsafe { (libc::getuid(), libc::getgid()) };
        let args = docker_run_args(
            self.engine,
            &self.image,
            &name,
            &checked,
            &spec.limits,
            user,
            env_file.path(),
        );
        let launch = Launch {
            program: self.program.clone(),
            args,
            env: engine_env()
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            rlimits: Vec::new(),
            cgroup_procs: Vec::new(),
            args_pipe: None,
            stdin: None,
        };
        let watch = Watch {
            timeout: spec.limits.timeout,
            idle_timeout: spec.limits.idle_timeout,
            output_bytes: spec.limits.output_bytes,
            cancel: spec.limits.cancel.clone(),
        };
        let killer = ContainerKiller {
            program: &self.program,
            name: &name,
        };
        let seen = supervise::run(launch, &watch, &killer);
        let oom = engine_output(
            &self.program,
            &["inspect", "--format", "{{.State.OOMKilled}}", &name],
        )
        .map(|s| s.trim() == "true")
        .unwrap_or(false);
        let _ = engine_output(&self.program, &["rm", "-f", &name]);
        let seen = seen.map_err(SandboxError::Spawn)?;
        // 125: the engine itself failed (bad image, daemon error): not the command's result.
        if seen.killed_for.is_none() && seen.status.code() == Some(125) {
            return Err(SandboxError::Unavailable {
                backend: self.engine.program(),
                reason: seen.stderr.text().trim().to_string(),
            });
        }
        let (exit_code, signal) = decode_status(seen.status);
        let truncated = seen.stdout.truncated() || seen.stderr.truncated();
        let limit_hit = if oom {
            Some(LimitHit::Memory)
        } else if signal == Some(libc::SIGXFSZ) {
            Some(LimitHit::FileSize)
        } else if let Some(why) = seen.killed_for {
            Some(why)
        } else if truncated {
            Some(LimitHit::Output)
        } else {
            None
        };
        let killed = seen.killed_for.is_some();
        Ok(ExecOutcome {
            exit_code: if killed { None } else { exit_code },
            signal: if killed { Some(libc::SIGKILL) } else { signal },
            timed_out: matches!(
                seen.killed_for,
                Some(LimitHit::Timeout | LimitHit::IdleTimeout)
            ),
            truncated,
            limit_hit,
            stdout: seen.stdout.text(),
            stderr: seen.stderr.text(),
            wall_ms: seen.wall.as_millis() as u64,
            start: StartPath::Cold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_with_host_env;
    use crate::spec::{Command, Mount};

    fn args(engine: Engine, spec: &ExecSpec) -> Vec<String> {
        let env = Environment {
            rootfs: RootFs::Image("python:3.11-slim".into()),
            ..Environment::default()
        };
        let p = plan_with_host_env(&env, spec, |_| None).unwrap();
        let checked = DockerPlan::check(&p).unwrap();
        docker_run_args(
            engine,
            "python:3.11-slim",
            "ssr-sandbox-1-0",
            &checked,
            &spec.limits,
            (1000, 1000),
            Path::new("/tmp/env"),
        )
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
    }

    fn has_seq(args: &[String], seq: &[&str]) -> bool {
        args.windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn run_line_carries_isolation_and_limits() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("test_a.py"), "").unwrap();
        std::fs::create_dir(ws.path().join("src")).unwrap();
        let mut spec = ExecSpec::new(Command::Argv(vec!["pytest".into(), "-q".into()]), ws.path());
        spec.read_only_paths = vec!["test_a.py".into()];
        spec.cwd = Some("src".into());
        spec.limits.memory_bytes = Some(1 << 30);
        spec.limits.pids = Some(100);
        spec.limits.file_size_bytes = Some(4096);
        let a = args(Engine::Docker, &spec);
        let canon = ws.path().canonicalize().unwrap();
        assert_eq!(a[0], "run");
        for seq in [
            &["--network", "none"][..],
            &["--cap-drop", "ALL"],
            &["--security-opt", "no-new-privileges"],
            &["--memory", "1073741824b", "--memory-swap", "1073741824b"],
            &["--pids-limit", "101"],
            &["--ulimit", "fsize=4096:4096"],
            &["--user", "1000:1000"],
            &["--env-file", "/tmp/env"],
            &["-w", "/repo/src", "--", "python:3.11-slim", "pytest", "-q"],
        ] {
            assert!(has_seq(&a, seq), "missing {seq:?} in {a:?}");
        }
        assert!(a.iter().any(|x| x == "--read-only"));
        assert!(has_seq(
            &a,
            &["-v", &format!("{}:/repo:rw", canon.display())]
        ));
        let rw = a.iter().position(|x| x.ends_with(":/repo:rw")).unwrap();
        let ro = a
            .iter()
            .position(|x| x.ends_with(":/repo/test_a.py:ro"))
            .unwrap();
        assert!(
            ro > rw,
            "protected paths must be mounted after the workspace"
        );
        assert!(!a.iter().any(|x| x == "--userns"));
        assert!(
            !a.iter().any(|x| x == "--rm"),
            "the container is removed after inspect"
        );
    }

    #[test]
    fn podman_keeps_the_callers_id_and_scripts_use_bash() {
        let ws = tempfile::tempdir().unwrap();
        let spec = ExecSpec::new(Command::Script("echo hi".into()), ws.path());
        let a = args(Engine::Podman, &spec);
        assert!(has_seq(&a, &["--userns", "keep-id"]));
        assert!(a.ends_with(&["bash".into(), "-c".into(), "echo hi".into()]));
    }

    #[test]
    fn paths_with_colons_are_rejected() {
        let ws = tempfile::tempdir().unwrap();
        let odd = ws.path().join("a:b");
        std::fs::create_dir(&odd).unwrap();
        let mut spec = ExecSpec::new(Command::Argv(vec!["true".into()]), ws.path());
        spec.mounts.push(Mount {
            host: odd,
            guest: "/data".into(),
            read_only: true,
        });
        let p = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap();
        assert!(matches!(
            DockerPlan::check(&p),
            Err(SandboxError::InvalidSpec(_))
        ));
    }

    #[test]
    fn host_rootfs_is_refused() {
        let e = DockerSandbox::with_engine(
            Environment::default(),
            Engine::Docker,
            "/usr/bin/docker".into(),
        );
        assert!(matches!(e, Err(SandboxError::InvalidSpec(_))));
    }
}
