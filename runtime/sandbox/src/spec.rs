//! The data that crosses the [`Sandbox`] boundary: what to run, under which limits,
//! and what came back. Every backend takes the same [`ExecSpec`] and returns the same
//! [`ExecOutcome`], so callers never branch on the backend.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where a repository's commands run: the root filesystem they see, the repository,
/// and which host environment variables pass through.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Environment {
    /// The root filesystem shown (read-only) inside the sandbox.
    pub rootfs: RootFs,
    /// Host environment variables passed through by name when set on the host
    /// (for example `PATH`, `LANG`). Everything else is cleared.
    pub env_allowlist: Vec<String>,
    /// Variables set explicitly for every command (override the allowlist).
    pub env: BTreeMap<String, String>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            rootfs: RootFs::Host,
            env_allowlist: vec!["PATH".into(), "LANG".into(), "LC_ALL".into(), "TERM".into()],
            env: BTreeMap::new(),
        }
    }
}

/// The root filesystem of an environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RootFs {
    /// A minimal read-only view of the host's system directories (`/usr`, `/bin`,
    /// `/lib*`, selected `/etc` files): never the whole of `/`.
    Host,
    /// An unpacked image directory used as `/`.
    Dir(PathBuf),
    /// A container image run by a docker-compatible engine (docker backend only).
    Image(String),
}

/// What to run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Command {
    /// Program and arguments, no shell.
    Argv(Vec<String>),
    /// A bash script run as `bash -c SCRIPT`.
    Script(String),
}

/// How the workspace and extra paths are mounted inside the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub host: PathBuf,
    /// Path inside the sandbox.
    pub guest: PathBuf,
    /// Mounted read-only when true.
    pub read_only: bool,
}

/// Resource limits of one exec. `None` means "no limit of this kind" except where noted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit for the whole command; the process group is killed after it.
    pub timeout: Duration,
    /// Killed when neither stdout nor stderr produced a byte for this long.
    pub idle_timeout: Option<Duration>,
    /// Memory limit in bytes (cgroup `memory.max` / `memory.limit_in_bytes`).
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes and threads (cgroup `pids.max`).
    pub pids: Option<u64>,
    /// Bytes kept of stdout and of stderr each; the rest is drained and dropped
    /// and `truncated` is set.
    pub output_bytes: usize,
    /// Largest file the command may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: Option<u64>,
    /// Set from outside to stop the command now (an episode cancelled mid-call): the
    /// supervisor sees it within [`Cancel::POLL`] and kills the tree.
    #[serde(skip)]
    pub cancel: Cancel,
}

/// A stop signal for running execs, shared by whoever may cancel them (one per
/// episode). Cloning shares the flag. Two flags compare equal: a spec's identity does
/// not depend on who may stop it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// How often a supervisor with a cancel flag looks at it.
    pub const POLL: Duration = Duration::from_millis(20);

    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Cancel {}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(120),
            idle_timeout: None,
            memory_bytes: Some(4 << 30),
            pids: Some(512),
            output_bytes: 1 << 20,
            file_size_bytes: Some(1 << 30),
            cancel: Cancel::default(),
        }
    }
}

/// One command to run in a sandbox over a workspace directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: Command,
    /// Host directory mounted read-write as the working tree (guest path [`ExecSpec::workspace_guest`]).
    pub workspace: PathBuf,
    /// Where the workspace appears inside the sandbox (default `/repo`).
    pub workspace_guest: PathBuf,
    /// Working directory relative to the workspace (default: the workspace itself).
    pub cwd: Option<PathBuf>,
    /// Paths relative to the workspace that are re-mounted read-only over the
    /// read-write workspace (oracle tests, test infrastructure).
    pub read_only_paths: Vec<PathBuf>,
    /// Extra mounts (for example a stored artifact's script, read-only).
    pub mounts: Vec<Mount>,
    /// Variables set for this exec only (on top of the environment's).
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
}

impl ExecSpec {
    /// A spec with default limits running `command` over `workspace`.
    pub fn new(command: Command, workspace: impl Into<PathBuf>) -> Self {
        ExecSpec {
            command,
            workspace: workspace.into(),
            workspace_guest: PathBuf::from("/repo"),
            cwd: None,
            read_only_paths: Vec::new(),
            mounts: Vec::new(),
            env: BTreeMap::new(),
            limits: Limits::default(),
        }
    }

    /// A spec running `program args...` (no shell) over `workspace`.
    pub fn argv<I, S>(args: I, workspace: impl Into<PathBuf>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            Command::Argv(args.into_iter().map(Into::into).collect()),
            workspace,
        )
    }

    /// A spec running `bash -c script` over `workspace`.
    pub fn script(script: impl Into<String>, workspace: impl Into<PathBuf>) -> Self {
        Self::new(Command::Script(script.into()), workspace)
    }

    /// Working directory relative to the workspace.
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Adds paths (relative to the workspace) mounted read-only.
    pub fn with_read_only<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.read_only_paths
            .extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds an extra mount.
    pub fn with_mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets a variable for this exec.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Replaces all limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the wall-clock limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }
}

/// Which limit ended or constrained the command, when one did.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    Timeout,
    IdleTimeout,
    Memory,
    Pids,
    Output,
    FileSize,
    /// Stopped through [`Limits::cancel`].
    Cancelled,
}

/// What came back from one exec. Partial output is kept on timeout.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit status when the command exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when it was killed by a signal.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Output beyond [`Limits::output_bytes`] was dropped.
    pub truncated: bool,
    /// The first limit that was hit, if any.
    pub limit_hit: Option<LimitHit>,
    /// Lossy UTF-8 of the kept stdout bytes.
    pub stdout: String,
    /// Lossy UTF-8 of the kept stderr bytes.
    pub stderr: String,
    pub wall_ms: u64,
    /// How the process was started. Tells benchmarks and tests which path served this
    /// exec; never changes what the command sees.
    #[serde(default)]
    pub start: StartPath,
}

/// How an exec's process was started. Every path gives the command the same view and
/// limits; they differ only in how much was done before the exec asked.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartPath {
    /// Started for this exec (always with docker; with bubblewrap when nothing
    /// pre-started fits or pre-starting is off).
    #[default]
    Cold,
    /// In a sandbox set up ahead for this workspace: its mounts were made before the
    /// exec.
    Ready,
    /// On a launcher parked ahead in its cgroup: bubblewrap's set-up ran during the
    /// exec.
    Warm,
}

impl ExecOutcome {
    /// Exited normally with status 0 and was not ended by a timeout. A limit the
    /// command survived (truncated output, a child killed for memory) does not count
    /// against success; look at [`ExecOutcome::limit_hit`] for those.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Why an exec could not be run at all (as opposed to a command that ran and failed,
/// which is an [`ExecOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox backend `{backend}` is not available: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("invalid exec spec: {0}")]
    InvalidSpec(String),
    #[error("failed to start the sandbox: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A place commands run in isolation. Implementations must: clear the environment
/// except the allowlist, close stdin, deny network, drop root capabilities, mount the
/// workspace read-write and `read_only_paths` read-only, enforce [`Limits`], kill the
/// whole process tree on timeout and when the caller dies, and return partial output.
pub trait Sandbox: Send + Sync {
    /// Backend name for reports (`bwrap`, `docker`, `podman`).
    fn name(&self) -> &'static str;
    /// Runs one command to completion or until a limit ends it.
    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError>;
}

impl<S: Sandbox + ?Sized> Sandbox for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        (**self).exec(spec)
    }
}

impl<S: Sandbox + ?Sized> Sandbox for std::sync::Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        (**self).exec(spec)
    }
}
