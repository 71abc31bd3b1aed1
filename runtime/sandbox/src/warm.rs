//! Parked launchers: a `bwrap` started ahead of time inside a fresh per-exec cgroup and
//! blocked reading its whole command line from a pipe (`bwrap --args N`). An exec that
//! finds one writes the limits and the arguments and lets it go, so the start of the
//! process and its move into the cgroup are off the exec's critical path.
//!
//! Why: on the 2-core dev machine, moving a new process into a cgroup v1 hierarchy
//! (writing `cgroup.procs`) took ~10 ms under load (the kernel waits for an RCU grace
//! period), as much as bubblewrap itself. Parking hides it.
//!
//! Owns: the pool (one parked launcher per process, refilled after each take) and the
//! keeper thread that starts them. Why a dedicated thread: `PR_SET_PDEATHSIG` fires
//! when the *thread* that forked the child exits, and the keeper lives as long as the
//! process; a parked launcher started by a short-lived worker thread would die with it.
//! Does not own: arguments, limits or supervision (`bwrap`, `supervise`).

use crate::bwrap::BwrapInfo;
use crate::cgroup::{CgroupHost, ExecCgroup};
use crate::supervise::{self, Launch};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// A launcher waiting for its arguments.
pub(crate) struct Parked {
    pub child: Child,
    /// Write end of the args pipe; closing it lets bwrap parse and run.
    args_pipe: File,
    pub cgroup: Option<ExecCgroup>,
    bwrap: PathBuf,
}

impl Parked {
    /// Applies `rlimits` to the parked process, then sends the NUL-separated `args` and
    /// closes the pipe, which lets bwrap parse them and run. On error the caller kills
    /// the child (it gets the child and cgroup back) and takes the cold path.
    #[allow(clippy::type_complexity)]
    pub fn release(
        self,
        args: &[std::ffi::OsString],
        rlimits: &[(libc::__rlimit_resource_t, u64)],
    ) -> Result<(Child, Option<ExecCgroup>), (Child, Option<ExecCgroup>, io::Error)> {
        let Parked {
            child,
            mut args_pipe,
            cgroup,
            ..
        } = self;
        let pid = child.id() as libc::pid_t;
        let mut send = || -> io::Result<()> {
            for &(resource, value) in rlimits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                // SAFETY: `lim` is a valid rlimit; a null old-limit pointer is allowed.
                if unsafe { libc::prlimit(pid, resource, &lim, std::ptr::null_mut()) } < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut buf = Vec::new();
            for a in args {
                buf.extend_from_slice(a.as_encoded_bytes());
                buf.push(0);
            }
            args_pipe.write_all(&buf)
        };
        let result = send();
        drop(args_pipe);
        match result {
            Ok(()) => Ok((child, cgroup)),
            Err(e) => Err((child, cgroup, e)),
        }
    }
}

/// The shell the parked command line runs; the warm path is only taken when the
/// sandbox's root filesystem is the host's, which has it.
pub(crate) const SHELL: &str = "/bin/sh";

/// The variable carrying the real command, shell-quoted, to [`SHIM`].
pub(crate) const ARGV_VAR: &str = "SSR_SANDBOX_ARGV";

/// bwrap reads only options from `--args`; the command must be on its own command line,
/// which is fixed when the launcher is parked. So the parked command is this shim: it
/// takes the real command from [`ARGV_VAR`], removes that variable and the `PWD` the
/// shell adds, and `exec`s the command, which then runs as pid 2 exactly as on the cold
/// path (same environment, exit status and signals).
const SHIM: &str = "c=$SSR_SANDBOX_ARGV; unset SSR_SANDBOX_ARGV PWD; eval \"exec $c\"";

/// Quotes `argv` for a shim's `eval` (this one's and `ready`'s): every word in single
/// quotes.
pub(crate) fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pool and the keeper's request channel.
struct Pool {
    parked: Mutex<Vec<Parked>>,
    refill: Mutex<mpsc::Sender<(BwrapInfo, CgroupHost)>>,
}

/// How many launchers are kept parked. One covers sequential execs; concurrent execs
/// beyond it take the cold path.
const CAPACITY: usize = 1;

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(BwrapInfo, CgroupHost)>();
        std::thread::Builder::new()
            .name("ssr-sandbox-keeper".into())
            .spawn(move || {
                for (info, cgroups) in rx {
                    let Some(p) = pool() else { return };
                    if p.parked.lock().map(|v| v.len() >= CAPACITY).unwrap_or(true) {
                        continue;
                    }
                    if let Ok(parked) = park(&info, &cgroups) {
                        match p.parked.lock() {
                            Ok(mut v) => v.push(parked),
                            Err(_) => return,
                        }
                    }
                }
            })
            .ok()?;
        Some(Pool {
            parked: Mutex::new(Vec::new()),
            refill: Mutex::new(tx),
        })
    })
    .as_ref()
}

static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many execs of this process ran on a parked launcher.
pub fn hits() -> u64 {
    HITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one exec that ran on a parked launcher.
pub(crate) fn count_hit() {
    HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Takes a parked launcher for `info` (when one is ready) and asks the keeper to park
/// the next one. Only used with the host's own cgroup setup.
pub(crate) fn take(info: &BwrapInfo, cgroups: &CgroupHost) -> Option<Parked> {
    let pool = pool()?;
    let taken = pool.parked.lock().ok().and_then(|mut v| {
        let i = v.iter().position(|p| p.bwrap == info.path)?;
        Some(v.swap_remove(i))
    });
    if let Ok(tx) = pool.refill.lock() {
        let _ = tx.send((info.clone(), cgroups.clone()));
    }
    // A parked launcher whose keeper thread died, or that was killed, is useless.
    taken.and_then(|mut p| match p.child.try_wait() {
        Ok(None) => Some(p),
        _ => None,
    })
}

/// Starts one parked launcher: `bwrap --args N` in a fresh cgroup without limits.
fn park(info: &BwrapInfo, cgroups: &CgroupHost) -> io::Result<Parked> {
    let cgroup = if cgroups.hierarchies.is_empty() {
        None
    } else {
        Some(ExecCgroup::create(cgroups, None, None)?)
    };
    let (read, write) = pipe()?;
    let launch = Launch {
        program: info.path.clone(),
        args: [
            "--args",
            &read.as_raw_fd().to_string(),
            "--",
            SHELL,
            "-c",
            SHIM,
        ]
        .map(Into::into)
        .to_vec(),
        env: Vec::new(),
        rlimits: vec![(libc::RLIMIT_CORE, 0)],
        cgroup_procs: match &cgroup {
            Some(cg) => cg.procs_files()?,
            None => Vec::new(),
        },
        args_pipe: Some(read),
        stdin: None,
    };
    let child = supervise::spawn(launch)?;
    Ok(Parked {
        child,
        args_pipe: File::from(write),
        cgroup,
        bwrap: info.path.clone(),
    })
}

/// A close-on-exec pipe `(read, write)`; `supervise` clears the flag on the end a
/// launcher inherits.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: pipe2 just returned these two fds and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_runs_the_quoted_command_exactly() {
        let argv: Vec<String> = ["printf", "%s|", "a b", "c'd", "$HOME", "`x`", ""]
            .map(String::from)
            .to_vec();
        let out = std::process::Command::new(SHELL)
            .args(["-c", SHIM])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env(ARGV_VAR, shell_quote(&argv))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|c'd|$HOME|`x`||");
        let env = std::process::Command::new(SHELL)
            .args(["-c", SHIM])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env(ARGV_VAR, shell_quote(&["env".to_string()]))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&env.stdout), "PATH=/usr/bin:/bin\n");
    }
}
