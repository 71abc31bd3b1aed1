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
//! Three paths start the command, all giving the same outcome: cold (bwrap spawned for
//! this exec, joining a fresh cgroup before `exec`), ready (a sandbox set up ahead for
//! this workspace, `ready`) and warm (a launcher parked ahead, `warm`). The exec tries
//! ready, then warm, then cold, and reports the one taken in [`ExecOutcome::start`].

use crate::cgroup::{CgroupHost, Controller, ExecCgroup};
use crate::outcome::outcome;
use crate::plan::{Plan, plan};
use crate::pool;
use crate::prestart::{Prestarted, Release, Started};
use crate::probe::{BwrapInfo, read_bwrap};
use crate::rootfs::{etc_snapshot, rootfs_args};
use crate::shell::SHELL;
use crate::spec::{
    Environment, ExecOutcome, ExecSpec, Limits, RootFs, Sandbox, SandboxError, StartPath,
};
use crate::supervise::{self, Launch, TreeKiller, Watch};
use crate::{ready, warm};
use std::ffi::OsString;
use std::path::Path;
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

/// Runs commands under bubblewrap. Cheap to clone; host checks are done once per
/// process and shared.
#[derive(Clone, Debug)]
pub struct BwrapSandbox {
    env: Environment,
    info: BwrapInfo,
    cgroups: CgroupHost,
    tmp_bytes: u64,
    /// Use pre-started sandboxes (`ready`, `warm`): on by default.
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

    /// Turns pre-started sandboxes (`ready` and `warm`, kept by `pool`) on or off. They
    /// save the start of `bwrap`, its move into a cgroup and, in a workspace exec'd
    /// before, bubblewrap's set-up, at the price of parked `bwrap` processes; a one-shot
    /// caller (the CLI) turns them off.
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
    let info = read_bwrap()?;
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
    let mut a = command_options(plan);
    a.push("--".into());
    a.extend(plan.argv.iter().map(OsString::from));
    a
}

/// The working directory and the environment: the options between the mounts and the
/// command.
fn command_options(plan: &Plan) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--chdir".into(),
        plan.cwd.clone().into(),
        "--clearenv".into(),
    ];
    for (k, v) in &plan.env {
        a.extend(["--setenv".into(), k.into(), v.into()]);
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
        let limits = &spec.limits;
        let pids = limits.pids.map(|p| p + LAUNCHER_PROCS);
        let rlimits = self.rlimits(limits);
        let watch = Watch {
            timeout: limits.timeout,
            idle_timeout: limits.idle_timeout,
            output_bytes: limits.output_bytes,
            cancel: limits.cancel.clone(),
        };
        if let Some(served) = self.prestarted(&plan, &mounts, &rlimits) {
            let release = Release {
                memory_bytes: limits.memory_bytes,
                pids,
                rlimits: &served.rlimits,
                input: &served.input,
            };
            // A sandbox that cannot be released is dropped, which kills it, and the
            // exec takes the cold path.
            if let Ok(started) = served.sandbox.release(&release) {
                return self.finish(started, &watch, served.path);
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
        let mut args = mounts;
        args.extend(command_args(&plan));
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
        let at = Instant::now();
        let child = supervise::spawn(launch).map_err(SandboxError::Spawn)?;
        let started = Started { child, cgroup, at };
        self.finish(started, &watch, StartPath::Cold)
    }
}

/// A pre-started sandbox taken for one exec, and what to release it with.
struct Served {
    sandbox: Prestarted,
    /// The bytes its pipe gets: a ready sandbox's script, a warm launcher's options.
    input: Vec<u8>,
    /// rlimits still to apply (a ready sandbox was started with them).
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    path: StartPath,
}

impl BwrapSandbox {
    /// rlimits of one exec: no core files, the file-size limit, and the fallbacks for
    /// missing cgroup controllers.
    fn rlimits(&self, limits: &Limits) -> Vec<(libc::__rlimit_resource_t, u64)> {
        let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
        if let Some(f) = limits.file_size_bytes {
            rlimits.push((libc::RLIMIT_FSIZE, f));
        }
        rlimits.extend(self.fallback_rlimits(limits.memory_bytes, limits.pids));
        rlimits
    }

    /// A pre-started sandbox that can serve `plan`: a ready one set up for this
    /// workspace, else a warm launcher, else `None` (the cold path). Pre-started
    /// sandboxes live in the host's cgroups, so a sandbox given other cgroups never
    /// takes one.
    fn prestarted(
        &self,
        plan: &Plan,
        mounts: &[OsString],
        rlimits: &[(libc::__rlimit_resource_t, u64)],
    ) -> Option<Served> {
        if !self.warm_pool || self.cgroups != *host_cgroups() {
            return None;
        }
        if self.has_shell()
            && let Some(script) = ready::script(plan)
            && let Some(key) = ready::Key::new(&self.info, plan, mounts.to_vec(), rlimits)
            && let Some(sandbox) = pool::take_ready(&key, &self.info, &self.cgroups, &plan.guest)
        {
            return Some(Served {
                sandbox,
                input: script.into_bytes(),
                rlimits: Vec::new(),
                path: StartPath::Ready,
            });
        }
        // The warm shim is the host's `/bin/sh`, and it owns `PWD` and its variable.
        if self.env.rootfs == RootFs::Host
            && !plan.env.contains_key("PWD")
            && !plan.env.contains_key(warm::ARGV_VAR)
            && Path::new(SHELL).exists()
            && let Some(sandbox) = pool::take_warm(&self.info, &self.cgroups)
        {
            let mut options = mounts.to_vec();
            options.extend(command_options(plan));
            return Some(Served {
                sandbox,
                input: warm::input(&options, &plan.argv),
                rlimits: rlimits.to_vec(),
                path: StartPath::Warm,
            });
        }
        None
    }

    /// Whether the root filesystem has the shell a ready sandbox's shim runs.
    fn has_shell(&self) -> bool {
        match &self.env.rootfs {
            RootFs::Host => Path::new(SHELL).exists(),
            RootFs::Dir(d) => d.join(SHELL.trim_start_matches('/')).exists(),
            RootFs::Image(_) => false,
        }
    }

    /// Watches a started launcher to the end, reads the cgroup's events, releases it.
    fn finish(
        &self,
        started: Started,
        watch: &Watch,
        path: StartPath,
    ) -> Result<ExecOutcome, SandboxError> {
        let Started { child, cgroup, at } = started;
        let killer = BwrapKiller {
            cgroup: cgroup.as_ref(),
        };
        let seen = supervise::watch_child(child, at, watch, &killer);
        let events = cgroup.as_ref().map(ExecCgroup::events).unwrap_or_default();
        if let Some(cg) = cgroup {
            cg.release();
        }
        Ok(outcome(seen.map_err(SandboxError::Spawn)?, events, path))
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
