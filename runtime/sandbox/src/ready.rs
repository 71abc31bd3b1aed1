//! Ready sandboxes: a `bwrap` started ahead of time for one workspace, with its
//! namespaces, mounts and `/tmp` already made, running a `/bin/sh` shim blocked on
//! reading the command from its stdin. An exec that finds one writes its limits to the
//! cgroup and a few shell lines (working directory, environment, command) to the pipe,
//! and the shim `exec`s the command. Nothing of bubblewrap's set-up is left on the
//! exec's critical path.
//!
//! Why: bubblewrap's own work (namespaces, the minimal root, `/proc`, `/dev`) costs
//! ~5 ms per exec on the 2-core dev machine, more than the 5 ms budget of the whole
//! sandbox. Agents exec many short commands in one workspace; the second exec in a
//! workspace parks a ready sandbox for the next one (a workspace exec'd only once, as
//! a verifier's test run, costs nothing extra).
//!
//! Isolation is the cold path's: each ready sandbox serves exactly one exec, has its
//! own namespaces, `/tmp` and cgroup, and the same mounts. The key that a ready sandbox
//! is found by holds everything its mounts depend on, including the device and inode
//! of the workspace, of every extra mount and of every protected path, so a workspace
//! or a protected file replaced on the host since parking is never served stale.
//!
//! Owns: the keyed pool, its keeper thread, the shim and the script protocol. Does not
//! own: the mount arguments (`bwrap`), limits or supervision (`supervise`, `cgroup`).

use crate::bwrap::BwrapInfo;
use crate::cgroup::{CgroupHost, ExecCgroup};
use crate::plan::Plan;
use crate::supervise::{self, Launch};
use crate::warm::shell_quote;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The shell of the shim; a ready sandbox is only parked when the root filesystem
/// has it.
pub(crate) const SHELL: &str = "/bin/sh";

/// The parked command: say it is up (one [`MARKER`] byte on stdout), read the whole
/// script from stdin (to end of file, so the shim never runs half a command), point
/// stdin at `/dev/null` as on the cold path, run the script. The script ends in
/// `exec`, so the command replaces the shim and runs as pid 2 with the environment,
/// working directory and exit status of the cold path.
const SHIM: &str =
    "printf R; s=; while IFS= read -r l; do s=\"$s$l\n\"; done; exec </dev/null; eval \"$s\"";

/// The byte the shim writes once bubblewrap has finished its set-up. The exec taking
/// the sandbox reads it before sending the command, so the output starts clean.
const MARKER: u8 = b'R';

/// How long bubblewrap may take to set a ready sandbox up before it is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many workspaces are remembered (parked or only seen). The least recently used
/// is dropped, and its ready sandbox killed, past this.
const CAPACITY: usize = 8;

/// A ready sandbox unused for this long is killed (its workspace is probably gone).
const IDLE: Duration = Duration::from_secs(30);

/// What a ready sandbox was made for. Two execs with equal keys get identical mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    bwrap: PathBuf,
    /// The mount part of the command line (everything before `--chdir`).
    mount_args: Vec<OsString>,
    /// `(device, inode)` of the workspace, each extra mount's source and each
    /// protected path, in plan order.
    identities: Vec<(u64, u64)>,
    /// rlimits are set when the launcher starts, so they are part of the key.
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
}

impl Key {
    /// The key of `plan` with these mount arguments, or `None` when a path cannot be
    /// stat'ed (the exec then takes another path and reports the error itself).
    pub(crate) fn new(
        info: &BwrapInfo,
        plan: &Plan,
        mount_args: Vec<OsString>,
        rlimits: &[(libc::__rlimit_resource_t, u64)],
    ) -> Option<Key> {
        let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let mut identities = vec![identity(&plan.workspace)?];
        for m in &plan.mounts {
            identities.push(identity(&m.host)?);
        }
        for rel in &plan.read_only {
            identities.push(identity(&plan.workspace.join(rel))?);
        }
        Some(Key {
            bwrap: info.path.clone(),
            mount_args,
            identities,
            rlimits: rlimits.to_vec(),
        })
    }
}

/// The shell lines a ready sandbox's shim runs for `plan`: change to the working
/// directory, drop the variables `cd` sets, export the environment, `exec` the
/// command. `None` when the plan cannot be said in the shim's shell (a variable name
/// that is not a shell name, a path that is not UTF-8): the exec takes another path.
pub(crate) fn script(plan: &Plan) -> Option<String> {
    let cwd = plan.cwd.to_str()?;
    let mut s = format!(
        "cd {} || exit 127\nunset OLDPWD PWD\n",
        shell_quote(&[cwd.to_owned()])
    );
    if !plan.env.is_empty() {
        s.push_str("export");
        for (k, v) in &plan.env {
            if !is_shell_name(k) {
                return None;
            }
            s.push(' ');
            s.push_str(&shell_quote(&[format!("{k}={v}")]));
        }
        s.push('\n');
    }
    s.push_str("exec ");
    s.push_str(&shell_quote(&plan.argv));
    s.push('\n');
    Some(s)
}

/// True for a name a POSIX shell can set and read as a variable (letters, digits and
/// `_`, not starting with a digit).
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A ready sandbox, its shim waiting on `script`.
pub(crate) struct Ready {
    pub child: Child,
    script: File,
    pub cgroup: Option<ExecCgroup>,
}

impl Ready {
    /// Sends the script and closes the pipe, which lets the shim run it. On error the
    /// caller gets the child and cgroup back to kill them.
    #[allow(clippy::type_complexity)]
    pub fn release(
        self,
        script: &str,
    ) -> Result<(Child, Option<ExecCgroup>), (Child, Option<ExecCgroup>, io::Error)> {
        let Ready {
            child,
            script: mut pipe,
            cgroup,
        } = self;
        let sent = pipe.write_all(script.as_bytes());
        drop(pipe);
        match sent {
            Ok(()) => Ok((child, cgroup)),
            Err(e) => Err((child, cgroup, e)),
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(cg) = self.cgroup.take() {
            cg.release();
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the shim says bubblewrap's set-up is done (usually already). Why
    /// the exec checks this and not the keeper: a mount source removed while bubblewrap
    /// started makes it fail ("Can't get type of source"), and a directory made again
    /// in its place can get the same inode, hence the same key; serving that dying
    /// bubblewrap would hand its error to the exec. Checked here, a sandbox parked a
    /// moment ago can still be taken while its set-up finishes, overlapping the two.
    fn confirm(&mut self) -> io::Result<()> {
        await_marker(&mut self.child, SETUP_TIMEOUT)
    }
}

/// What the keeper needs to park a ready sandbox for a key.
struct ParkRequest {
    key: Key,
    info: BwrapInfo,
    cgroups: CgroupHost,
    /// Where the shim starts (the workspace's guest path).
    guest: PathBuf,
}

struct Entry {
    key: Key,
    ready: Option<Ready>,
    last_used: Instant,
}

struct Pool {
    entries: Mutex<Vec<Entry>>,
    requests: Mutex<mpsc::Sender<ParkRequest>>,
}

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<ParkRequest>();
        // Why a dedicated, process-long thread: `PR_SET_PDEATHSIG` fires when the
        // thread that forked the launcher exits (see `warm`).
        std::thread::Builder::new()
            .name("ssr-sandbox-ready".into())
            .spawn(move || keeper(rx))
            .ok()?;
        Some(Pool {
            entries: Mutex::new(Vec::new()),
            requests: Mutex::new(tx),
        })
    })
    .as_ref()
}

fn keeper(rx: mpsc::Receiver<ParkRequest>) {
    loop {
        match rx.recv_timeout(IDLE / 4) {
            Ok(req) => {
                let Some(p) = pool() else { return };
                // Still wanted and not parked already (requests can pile up)?
                let wanted = p
                    .entries
                    .lock()
                    .is_ok_and(|v| v.iter().any(|e| e.key == req.key && e.ready.is_none()));
                if !wanted {
                    continue;
                }
                let Ok(ready) = park(&req) else { continue };
                let mut spare = Some(ready);
                if let Ok(mut v) = p.entries.lock()
                    && let Some(e) = v.iter_mut().find(|e| e.key == req.key && e.ready.is_none())
                {
                    e.ready = spare.take();
                }
                // Forgotten while parking: not needed any more.
                if let Some(r) = spare {
                    r.kill();
                }
            }
            Err(RecvTimeoutError::Timeout) => prune_idle(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Kills ready sandboxes unused for [`IDLE`].
fn prune_idle() {
    let Some(p) = pool() else { return };
    let stale: Vec<Ready> = match p.entries.lock() {
        Ok(mut v) => {
            let now = Instant::now();
            v.iter_mut()
                .filter(|e| now.duration_since(e.last_used) > IDLE)
                .filter_map(|e| e.ready.take())
                .collect()
        }
        Err(_) => return,
    };
    stale.into_iter().for_each(Ready::kill);
}

static HITS: AtomicU64 = AtomicU64::new(0);

/// How many execs of this process ran in a ready sandbox.
pub fn hits() -> u64 {
    HITS.load(Ordering::Relaxed)
}

pub(crate) fn count_hit() {
    HITS.fetch_add(1, Ordering::Relaxed);
}

/// Takes the ready sandbox parked for `key`, if any, and asks the keeper to park the
/// next one when this key has been seen before (so a workspace used once costs
/// nothing).
pub(crate) fn take(
    key: &Key,
    info: &BwrapInfo,
    cgroups: &CgroupHost,
    guest: &Path,
) -> Option<Ready> {
    let pool = pool()?;
    let (taken, evicted, park) = {
        let mut v = pool.entries.lock().ok()?;
        let mut evicted = None;
        let (taken, park) = match v.iter().position(|e| &e.key == key) {
            Some(i) => {
                let mut e = v.remove(i);
                e.last_used = Instant::now();
                let taken = e.ready.take();
                v.push(e);
                (taken, true)
            }
            None => {
                if v.len() >= CAPACITY {
                    evicted = v.remove(0).ready;
                }
                v.push(Entry {
                    key: key.clone(),
                    ready: None,
                    last_used: Instant::now(),
                });
                (None, false)
            }
        };
        (taken, evicted, park)
    };
    if let Some(r) = evicted {
        r.kill();
    }
    if park && let Ok(tx) = pool.requests.lock() {
        let _ = tx.send(ParkRequest {
            key: key.clone(),
            info: info.clone(),
            cgroups: cgroups.clone(),
            guest: guest.to_path_buf(),
        });
    }
    // A ready sandbox killed from outside, or whose set-up failed, is useless.
    let mut r = taken?;
    if r.alive() && r.confirm().is_ok() {
        Some(r)
    } else {
        r.kill();
        None
    }
}

/// Starts one ready sandbox: the key's mount arguments, then the shim, in a fresh
/// cgroup without limits (the exec writes its limits before releasing it).
fn park(req: &ParkRequest) -> io::Result<Ready> {
    let cgroup = if req.cgroups.hierarchies.is_empty() {
        None
    } else {
        Some(ExecCgroup::create(&req.cgroups, None, None)?)
    };
    let (read, write) = crate::warm::pipe()?;
    let mut args = req.key.mount_args.clone();
    args.extend([
        OsString::from("--chdir"),
        req.guest.clone().into_os_string(),
        "--clearenv".into(),
        "--".into(),
        SHELL.into(),
        "-c".into(),
        SHIM.into(),
    ]);
    let launch = Launch {
        program: req.info.path.clone(),
        args,
        env: Vec::new(),
        rlimits: req.key.rlimits.clone(),
        cgroup_procs: match &cgroup {
            Some(cg) => cg.procs_files()?,
            None => Vec::new(),
        },
        args_pipe: None,
        stdin: Some(read),
    };
    let child = supervise::spawn(launch)?;
    Ok(Ready {
        child,
        script: File::from(write),
        cgroup,
    })
}

/// Waits up to `timeout` for the shim's [`MARKER`] on the child's stdout and consumes
/// exactly that byte. Anything else (end of file because bubblewrap failed, another
/// byte, no answer) is an error.
fn await_marker(child: &mut Child, timeout: Duration) -> io::Result<()> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let out = child
        .stdout
        .as_mut()
        .ok_or_else(|| io::Error::other("ready sandbox without a stdout pipe"))?;
    let mut pfd = libc::pollfd {
        fd: out.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "ready sandbox set-up timed out",
            ));
        }
        // SAFETY: one valid pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n > 0 {
            break;
        }
    }
    let mut byte = [0u8; 1];
    match out.read(&mut byte)? {
        1 if byte[0] == MARKER => Ok(()),
        _ => Err(io::Error::other("ready sandbox failed its set-up")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn plan(env: &[(&str, &str)], argv: &[&str], cwd: &str) -> Plan {
        Plan {
            workspace: PathBuf::from("/tmp"),
            guest: PathBuf::from("/repo"),
            read_only: Vec::new(),
            mounts: Vec::new(),
            cwd: PathBuf::from(cwd),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Runs the shim on the host with `script` on its stdin.
    fn run_shim(script: &str) -> std::process::Output {
        let mut child = std::process::Command::new(SHELL)
            .args(["-c", SHIM])
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let mut out = child.wait_with_output().unwrap();
        assert_eq!(out.stdout.first(), Some(&MARKER), "the shim says it is up");
        out.stdout.remove(0);
        out
    }

    #[test]
    fn shim_runs_the_command_exactly_with_only_the_plans_environment() {
        let p = plan(
            &[("PATH", "/usr/bin:/bin"), ("V", "a 'b'\n$HOME `x`\\n")],
            &["printf", "%s|", "a b", "c'd", "$HOME", "`x`", "", "l1\nl2"],
            "/tmp",
        );
        let out = run_shim(&script(&p).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "a b|c'd|$HOME|`x`||l1\nl2|"
        );
        let p = plan(
            &[("PATH", "/usr/bin:/bin"), ("V", "a 'b'\n$HOME `x`\\n")],
            &["env"],
            "/tmp",
        );
        let out = String::from_utf8(run_shim(&script(&p).unwrap()).stdout).unwrap();
        // The shell's own order of the environment is not part of the contract.
        let (path, v) = ("PATH=/usr/bin:/bin\n", "V=a 'b'\n$HOME `x`\\n\n");
        assert!(
            out == format!("{path}{v}") || out == format!("{v}{path}"),
            "{out:?}"
        );
        let p = plan(&[("PATH", "/usr/bin:/bin")], &["pwd"], "/tmp");
        assert_eq!(
            String::from_utf8_lossy(&run_shim(&script(&p).unwrap()).stdout),
            "/tmp\n"
        );
    }

    #[test]
    fn shim_gives_the_command_a_null_stdin_and_its_exit_status() {
        let p = plan(
            &[("PATH", "/usr/bin:/bin")],
            &["sh", "-c", "cat; exit 7"],
            "/",
        );
        let out = run_shim(&script(&p).unwrap());
        assert_eq!(out.stdout, b"");
        assert_eq!(out.status.code(), Some(7));
    }

    #[test]
    fn a_variable_that_is_not_a_shell_name_is_not_scripted() {
        assert!(script(&plan(&[("A-B", "1")], &["true"], "/")).is_none());
        assert!(script(&plan(&[("1A", "1")], &["true"], "/")).is_none());
        assert!(script(&plan(&[("_A1", "1")], &["true"], "/")).is_some());
    }

    #[test]
    fn a_missing_working_directory_fails_without_running_the_command() {
        let p = plan(&[], &["/bin/echo", "ran"], "/nonexistent-ssr-dir");
        let out = run_shim(&script(&p).unwrap());
        assert_eq!(out.status.code(), Some(127));
        assert_eq!(out.stdout, b"");
    }

    /// A ready request whose only mount source is `source`, outside any cgroup.
    fn request(info: BwrapInfo, source: &Path) -> ParkRequest {
        let mount_args: Vec<OsString> = vec![
            "--ro-bind".into(),
            "/".into(),
            "/".into(),
            "--dev".into(),
            "/dev".into(),
            "--ro-bind".into(),
            source.into(),
            "/mnt".into(),
        ];
        ParkRequest {
            key: Key {
                bwrap: info.path.clone(),
                mount_args,
                identities: Vec::new(),
                rlimits: Vec::new(),
            },
            info,
            cgroups: CgroupHost::default(),
            guest: PathBuf::from("/"),
        }
    }

    /// Regression (CI, session 2): a workspace removed while its ready sandbox was
    /// being set up, then made again with the same inode, was served the dying
    /// bubblewrap and the exec got "Can't get type of source". A ready sandbox whose
    /// set-up failed must never serve an exec.
    #[test]
    fn a_ready_sandbox_whose_set_up_failed_is_not_served() {
        let Ok(info) = crate::bwrap::probe_bwrap() else {
            eprintln!("skipped: no bwrap");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("removed-before-set-up");
        let mut failed = park(&request(info.clone(), &gone)).unwrap();
        assert!(failed.confirm().is_err(), "a failed set-up was confirmed");
        failed.kill();
        // The same request with the source present is confirmed, and the command's
        // output starts clean (the marker was consumed).
        let mut ready = park(&request(info, dir.path())).unwrap();
        ready.confirm().unwrap();
        let (child, _) = ready
            .release("exec /bin/echo served\n")
            .map_err(|(_, _, e)| e)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "served\n", "{out:?}");
    }
}
