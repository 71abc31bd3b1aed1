//! The default backend: bubblewrap (`bwrap`) with all namespaces unshared, no
//! capabilities, a non-root uid, a minimal read-only root filesystem, and memory and pids
//! limits from a per-exec cgroup.
//!
//! Owns: the `bwrap` command line ([`bwrap_args`]), the host checks done once per process
//! (binary, version, features, a trial run, cgroups), the rlimit fallback and its
//! warning, and turning what the supervisor saw into an [`ExecOutcome`]. Does not own:
//! validation of the spec (`plan`), process supervision (`supervise`) or cgroup files
//! (`cgroup`).
//!
//! Process tree of one exec: caller → `bwrap` (own session, `PR_SET_PDEATHSIG`, in the
//! exec's cgroup) → bwrap's init (pid 1 of a new pid namespace, `--die-with-parent`) →
//! the command (`--new-session`). When the command ends, bwrap's init exits and the
//! kernel kills everything else in the pid namespace; the cgroup is killed and removed
//! on top of that, so `setsid`/`nohup` cannot outlive an exec.
//!
//! Two paths start bwrap: cold (spawned for this exec, joining a fresh cgroup before
//! `exec`) and warm (a launcher parked earlier in its own cgroup, `warm`), which gets
//! its options through a pipe and runs the command through a one-line `/bin/sh` shim
//! that `exec`s it. Both give the same outcome; the warm path only skips waiting.

use crate::cgroup::{CgroupHost, Controller, ExecCgroup};
use crate::outcome::outcome;
use crate::plan::{Plan, plan};
use crate::ready;
use crate::rootfs::{etc_snapshot, rootfs_args};
use crate::spec::{Environment, ExecOutcome, ExecSpec, RootFs, Sandbox, SandboxError};
use crate::supervise::{self, Launch, TreeKiller, Watch};
use crate::warm;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// The uid and gid the command runs as inside (`nobody`). Mapped to the caller's own
/// uid outside, so files it creates in the workspace belong to the caller. Why not uid
/// 0 with `--cap-drop ALL` alone: a non-root id is a second, independent layer should a
/// capability survive (NOTES.md: as root, bwrap keeps capabilities unless told).
pub const SANDBOX_UID: u32 = 65534;

/// Processes of the launcher itself inside the exec's cgroup (outer bwrap and bwrap's
/// init), added to the caller's pids limit so the command gets the number it asked for.
const LAUNCHER_PROCS: u64 = 2;

/// Default size of the sandbox's `/tmp` tmpfs (its pages also count against the memory
/// limit).
pub const DEFAULT_TMP_BYTES: u64 = 512 << 20;

/// What was found about the host's bubblewrap.
#[derive(Clone, Debug)]
pub struct BwrapInfo {
    pub path: PathBuf,
    pub version: String,
    /// `--size` for tmpfs (bubblewrap 0.5+).
    pub tmpfs_size: bool,
    /// `--disable-userns` (bubblewrap 0.8+).
    pub disable_userns: bool,
}

/// Runs commands under bubblewrap. Cheap to clone; host checks are done once per
/// process and shared.
#[derive(Clone, Debug)]
pub struct BwrapSandbox {
    env: Environment,
    info: BwrapInfo,
    cgroups: CgroupHost,
    tmp_bytes: u64,
    /// Use parked launchers (`warm`): on by default.
    warm_pool: bool,
}

static BWRAP: OnceLock<Result<BwrapInfo, String>> = OnceLock::new();
static CGROUPS: OnceLock<CgroupHost> = OnceLock::new();
static FALLBACK_WARNING: Once = Once::new();

impl BwrapSandbox {
    /// Checks that `bwrap` exists and can create its namespaces here (a trial run, once
    /// per process), detects cgroups, and returns a sandbox for `env`.
    pub fn new(env: Environment) -> Result<Self, SandboxError> {
        if let RootFs::Image(image) = &env.rootfs {
            return Err(SandboxError::Unavailable {
                backend: "bwrap",
                reason: format!("container image `{image}` needs the docker backend"),
            });
        }
        if let RootFs::Dir(d) = &env.rootfs
            && !d.is_dir()
        {
            return Err(SandboxError::InvalidSpec(format!(
                "rootfs directory {} does not exist",
                d.display()
            )));
        }
        let info =
            BWRAP
                .get_or_init(probe_bwrap)
                .clone()
                .map_err(|reason| SandboxError::Unavailable {
                    backend: "bwrap",
                    reason,
                })?;
        let cgroups = host_cgroups().clone();
        Ok(BwrapSandbox {
            env,
            info,
            cgroups,
            tmp_bytes: DEFAULT_TMP_BYTES,
            warm_pool: true,
        })
    }

    /// Sets the size of `/tmp` inside the sandbox.
    pub fn with_tmp_size(mut self, bytes: u64) -> Self {
        self.tmp_bytes = bytes;
        self
    }

    /// Turns the pool of parked launchers on or off. It saves the start of `bwrap` and
    /// its move into a cgroup on every exec after the first, at the price of one parked
    /// `bwrap` process per process; a one-shot caller (the CLI) turns it off.
    pub fn with_warm_pool(mut self, on: bool) -> Self {
        self.warm_pool = on;
        self
    }

    /// Uses `cgroups` instead of the host's detected support; `CgroupHost::default()`
    /// runs without cgroups (rlimit fallback), as on a host that has none.
    pub fn with_cgroups(mut self, cgroups: CgroupHost) -> Self {
        self.cgroups = cgroups;
        self
    }

    pub fn info(&self) -> &BwrapInfo {
        &self.info
    }

    pub fn cgroups(&self) -> &CgroupHost {
        &self.cgroups
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The full `bwrap` argument list for `spec` (for diagnostics and `--dry-run`s).
    pub fn command_line(&self, spec: &ExecSpec) -> Result<Vec<OsString>, SandboxError> {
        let plan = plan(&self.env, spec)?;
        Ok(bwrap_args(
            &self.env.rootfs,
            &plan,
            &self.info,
            self.tmp_bytes,
        ))
    }
}

/// The host's cgroup support, detected once per process (stale cgroups of dead callers
/// are swept at the same time).
pub fn host_cgroups() -> &'static CgroupHost {
    CGROUPS.get_or_init(|| {
        let host = CgroupHost::detect();
        host.sweep_stale();
        host
    })
}

/// Finds `bwrap`, reads its version and features, and runs `true` in a sandbox.
pub fn probe_bwrap() -> Result<BwrapInfo, String> {
    let path =
        find_program("bwrap").ok_or("`bwrap` not found on PATH (Debian package `bubblewrap`)")?;
    let out = std::process::Command::new(&path)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(|e| format!("running {} --version: {e}", path.display()))?;
    let version = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("bubblewrap")
        .trim()
        .to_string();
    let help = std::process::Command::new(&path)
        .arg("--help")
        .env_clear()
        .output()
        .map_err(|e| format!("running {} --help: {e}", path.display()))?;
    let help = String::from_utf8_lossy(&help.stdout);
    let info = BwrapInfo {
        path,
        version,
        tmpfs_size: help.contains("--size"),
        disable_userns: help.contains("--disable-userns"),
    };
    let mut trial: Vec<OsString> = base_args(&info);
    trial.extend(rootfs_args(
        &RootFs::Host,
        Path::new("/repo"),
        etc_snapshot(),
    ));
    trial.extend(["--", "true"].map(OsString::from));
    let out = std::process::Command::new(&info.path)
        .args(&trial)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("starting bwrap: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "a trial bwrap run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(info)
}

pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Namespaces, session, capabilities and identity: the part of the command line that
/// does not depend on the exec.
fn base_args(info: &BwrapInfo) -> Vec<OsString> {
    let mut a: Vec<String> = [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    .map(String::from)
    .to_vec();
    if info.disable_userns {
        a.push("--disable-userns".into());
    }
    a.extend([
        "--uid".into(),
        SANDBOX_UID.to_string(),
        "--gid".into(),
        SANDBOX_UID.to_string(),
    ]);
    a.into_iter().map(OsString::from).collect()
}

/// The whole `bwrap` command line for one plan: [`mount_args`], then the working
/// directory, the environment and the command.
pub(crate) fn bwrap_args(
    rootfs: &RootFs,
    plan: &Plan,
    info: &BwrapInfo,
    tmp_bytes: u64,
) -> Vec<OsString> {
    let mut a = mount_args(rootfs, plan, info, tmp_bytes);
    a.extend(command_args(plan));
    a
}

/// The working directory, the environment and the command.
fn command_args(plan: &Plan) -> Vec<OsString> {
    let mut a = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        a.extend(items.iter().map(|i| i.as_ref().to_os_string()));
    };
    push(&[&"--chdir", &plan.cwd, &"--clearenv"]);
    for (k, v) in &plan.env {
        push(&[&"--setenv", k, v]);
    }
    push(&[&"--"]);
    for arg in &plan.argv {
        push(&[arg]);
    }
    a
}

/// Namespaces, identity and every mount of one plan: the part of the command line a
/// ready sandbox (`ready`) is made with ahead of the exec.
pub(crate) fn mount_args(
    rootfs: &RootFs,
    plan: &Plan,
    info: &BwrapInfo,
    tmp_bytes: u64,
) -> Vec<OsString> {
    let mut a = base_args(info);
    a.extend(rootfs_args(rootfs, &plan.guest, etc_snapshot()));
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        a.extend(items.iter().map(|i| i.as_ref().to_os_string()));
    };
    if info.tmpfs_size {
        push(&[&"--size", &tmp_bytes.to_string()]);
    }
    push(&[&"--perms", &"1777", &"--tmpfs", &"/tmp"]);
    push(&[&"--bind", &plan.workspace, &plan.guest]);
    for m in &plan.mounts {
        let flag = if m.read_only { "--ro-bind" } else { "--bind" };
        push(&[&flag, &m.host, &m.guest]);
    }
    // Every directory between the workspace and a protected path is bound onto itself
    // (still read-write): a mount point cannot be renamed or removed, so `mv tests t2;
    // mkdir tests` cannot put a new file where a protected one was.
    let mut ancestors: Vec<&Path> = plan
        .read_only
        .iter()
        .flat_map(|rel| rel.ancestors().skip(1))
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    ancestors.sort_by_key(|a| (a.components().count(), a.to_path_buf()));
    ancestors.dedup();
    for rel in ancestors {
        push(&[&"--bind", &plan.workspace.join(rel), &plan.guest.join(rel)]);
    }
    // Protected paths last, so nothing mounted later can cover them read-write.
    for rel in &plan.read_only {
        push(&[
            &"--ro-bind",
            &plan.workspace.join(rel),
            &plan.guest.join(rel),
        ]);
    }
    // The root itself is bwrap's tmpfs, owned by the sandbox uid: make it read-only so
    // the command cannot create top-level files or shadow directories.
    push(&[&"--remount-ro", &"/"]);
    a
}

struct BwrapKiller<'a> {
    cgroup: Option<&'a ExecCgroup>,
}

impl TreeKiller for BwrapKiller<'_> {
    fn kill_tree(&self, pid: i32, reaped: bool) {
        // The process group is only safe to signal while its leader is unreaped: after
        // that its id may be reused. Reaped means bwrap has exited, and the kernel is
        // already tearing down its pid namespace.
        if !reaped {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        if let Some(cg) = self.cgroup {
            // After a timeout, wait until the cgroup is empty; after a normal exit one
            // pass suffices (the pid namespace is already going down with bwrap's init,
            // and `ExecCgroup::release` finishes the job off the critical path).
            let patience = if reaped {
                Duration::ZERO
            } else {
                Duration::from_secs(2)
            };
            cg.kill_all(patience);
        }
    }
}

impl Sandbox for BwrapSandbox {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        let plan = plan(&self.env, spec)?;
        let mounts = mount_args(&self.env.rootfs, &plan, &self.info, self.tmp_bytes);
        let mut args = mounts.clone();
        args.extend(command_args(&plan));
        let limits = &spec.limits;
        let pids = limits.pids.map(|p| p + LAUNCHER_PROCS);
        let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
        if let Some(f) = limits.file_size_bytes {
            rlimits.push((libc::RLIMIT_FSIZE, f));
        }
        rlimits.extend(self.fallback_rlimits(limits.memory_bytes, limits.pids));
        let watch = Watch {
            timeout: limits.timeout,
            idle_timeout: limits.idle_timeout,
            output_bytes: limits.output_bytes,
        };

        // Ready path: a sandbox already set up for this workspace (see `ready`). Any
        // failure on the way kills it and falls through to the other paths.
        if self.warm_pool
            && self.cgroups == *host_cgroups()
            && self.has_shell()
            && let Some(script) = ready::script(&plan)
            && let Some(key) = ready::Key::new(&self.info, &plan, mounts, &rlimits)
            && let Some(r) = ready::take(&key, &self.info, &self.cgroups, &plan.guest)
        {
            let limited = match &r.cgroup {
                Some(cg) => cg.set_limits(limits.memory_bytes, pids),
                None => Ok(()),
            };
            let released = match limited {
                Ok(()) => {
                    let started = Instant::now();
                    r.release(&script).map(|r| (r, started))
                }
                Err(e) => Err((r.child, r.cgroup, e)),
            };
            match released {
                Ok(((child, cgroup), started)) => {
                    ready::count_hit();
                    return self.finish(child, started, cgroup, &watch);
                }
                Err((mut child, cgroup, _)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    drop(cgroup);
                }
            }
        }

        // Warm path: a launcher parked in its own cgroup (see `warm`). Any failure on
        // the way kills it and falls through to the cold path.
        if self.warm_pool
            && self.env.rootfs == RootFs::Host
            && self.cgroups == *host_cgroups()
            && !plan.env.contains_key("PWD")
            && !plan.env.contains_key(warm::ARGV_VAR)
            && Path::new(warm::SHELL).exists()
            && let Some(parked) = warm::take(&self.info, &self.cgroups)
        {
            // The options go through the pipe; the command rides in a variable to the
            // parked shim (`warm::SHIM`).
            let mut options = args[..args.len() - plan.argv.len() - 1].to_vec();
            options.extend(
                ["--setenv", warm::ARGV_VAR, &warm::shell_quote(&plan.argv)].map(OsString::from),
            );
            let limited = match &parked.cgroup {
                Some(cg) => cg.set_limits(limits.memory_bytes, pids),
                None => Ok(()),
            };
            let released = match limited {
                Ok(()) => {
                    let started = Instant::now();
                    parked.release(&options, &rlimits).map(|r| (r, started))
                }
                Err(e) => Err((parked.child, parked.cgroup, e)),
            };
            match released {
                Ok(((child, cgroup), started)) => {
                    warm::count_hit();
                    return self.finish(child, started, cgroup, &watch);
                }
                Err((mut child, cgroup, _)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    drop(cgroup);
                }
            }
        }

        let cgroup = if self.cgroups.hierarchies.is_empty() {
            None
        } else {
            Some(ExecCgroup::create(
                &self.cgroups,
                limits.memory_bytes,
                pids,
            )?)
        };
        let launch = Launch {
            program: self.info.path.clone(),
            args,
            // Nothing: bwrap's own environment is what `/proc/1/environ` shows inside.
            env: Vec::new(),
            rlimits,
            cgroup_procs: match &cgroup {
                Some(cg) => cg.procs_files()?,
                None => Vec::new(),
            },
            args_pipe: None,
            stdin: None,
        };
        let started = Instant::now();
        let child = supervise::spawn(launch).map_err(SandboxError::Spawn)?;
        self.finish(child, started, cgroup, &watch)
    }
}

impl BwrapSandbox {
    /// Whether the root filesystem has the shell a ready sandbox's shim runs.
    fn has_shell(&self) -> bool {
        match &self.env.rootfs {
            RootFs::Host => Path::new(ready::SHELL).exists(),
            RootFs::Dir(d) => d.join(ready::SHELL.trim_start_matches('/')).exists(),
            RootFs::Image(_) => false,
        }
    }

    /// Watches a started launcher to the end, reads the cgroup's events, releases it.
    fn finish(
        &self,
        child: std::process::Child,
        started: Instant,
        cgroup: Option<ExecCgroup>,
        watch: &Watch,
    ) -> Result<ExecOutcome, SandboxError> {
        let killer = BwrapKiller {
            cgroup: cgroup.as_ref(),
        };
        let seen = supervise::watch_child(child, started, watch, &killer);
        let events = cgroup.as_ref().map(ExecCgroup::events).unwrap_or_default();
        if let Some(cg) = cgroup {
            cg.release();
        }
        Ok(outcome(seen.map_err(SandboxError::Spawn)?, events))
    }

    /// rlimits standing in for cgroup controllers the host lacks, with a warning once per
    /// process. They are weaker: `RLIMIT_AS` counts address space, not memory, and
    /// `RLIMIT_NPROC` counts per user across the host and does not bind root at all.
    fn fallback_rlimits(
        &self,
        memory: Option<u64>,
        pids: Option<u64>,
    ) -> Vec<(libc::__rlimit_resource_t, u64)> {
        let mut r = Vec::new();
        let mut missing = Vec::new();
        if let Some(m) = memory
            && !self.cgroups.has(Controller::Memory)
        {
            r.push((libc::RLIMIT_AS, m));
            missing.push("memory (using RLIMIT_AS)");
        }
        if let Some(p) = pids
            && !self.cgroups.has(Controller::Pids)
        {
            r.push((libc::RLIMIT_NPROC, p));
            missing.push("pids (using RLIMIT_NPROC, which does not bind root)");
        }
        if !missing.is_empty() {
            FALLBACK_WARNING.call_once(|| {
                eprintln!(
                    "warning: ssr-sandbox: no usable cgroup for {}; limits are weaker. {}",
                    missing.join(", "),
                    self.cgroups.problems.join("; ")
                );
            });
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_with_host_env;
    use crate::spec::Command;

    fn info() -> BwrapInfo {
        BwrapInfo {
            path: "/usr/bin/bwrap".into(),
            version: "0.8.0".into(),
            tmpfs_size: true,
            disable_userns: true,
        }
    }

    fn args_for(spec: &ExecSpec) -> Vec<String> {
        let p = plan_with_host_env(&Environment::default(), spec, |_| None).unwrap();
        bwrap_args(&RootFs::Host, &p, &info(), 1 << 20)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has_seq(args: &[String], seq: &[&str]) -> bool {
        args.windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn command_line_isolates_and_never_binds_the_whole_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = args_for(&ExecSpec::new(
            Command::Argv(vec!["true".into()]),
            dir.path(),
        ));
        for flag in [
            "--unshare-net",
            "--unshare-pid",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ] {
            assert!(a.iter().any(|x| x == flag), "missing {flag}");
        }
        assert!(has_seq(&a, &["--cap-drop", "ALL"]));
        assert!(has_seq(
            &a,
            &["--size", "1048576", "--perms", "1777", "--tmpfs", "/tmp"]
        ));
        assert!(!has_seq(&a, &["--ro-bind", "/", "/"]) && !has_seq(&a, &["--bind", "/", "/"]));
        assert!(!a.iter().any(|x| x == "/etc/shadow" || x == "/root"));
        assert_eq!(a.last().map(String::as_str), Some("true"));
    }

    #[test]
    fn protected_paths_are_bound_read_only_after_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_x.py"), "").unwrap();
        let mut spec = ExecSpec::new(Command::Argv(vec!["true".into()]), dir.path());
        spec.read_only_paths = vec!["test_x.py".into()];
        let a = args_for(&spec);
        let ws = dir.path().canonicalize().unwrap();
        let rw = a.iter().position(|x| x == "--bind").unwrap();
        let ro = a
            .windows(3)
            .position(|w| w[0] == "--ro-bind" && w[2] == "/repo/test_x.py")
            .unwrap();
        assert!(ro > rw);
        assert_eq!(a[ro + 1], ws.join("test_x.py").to_string_lossy());
    }
}
