//! Starting one sandbox launcher process (`bwrap`, `docker run`) and watching it to the
//! end: bounded capture of stdout and stderr, total and idle timeouts, killing the
//! whole tree, and collecting the exit status.
//!
//! Owns: the fork/exec of the launcher with a cleared environment, closed stdin, its own
//! session, `PR_SET_PDEATHSIG`, rlimits and cgroup membership applied in the child before
//! `exec`; the poll loop over the two pipes and a pidfd. Does not own: the launcher's
//! arguments (the backends build them) or what "kill the tree" means for a backend
//! (the backend passes a [`TreeKiller`]).

use crate::spec::{Cancel, LimitHit};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long to keep reading the pipes after the launcher has exited or was killed.
/// Everything in the sandbox dies with it (pid namespace, cgroup kill), so EOF comes
/// within milliseconds; the bound only guards against a pipe held open by something
/// we failed to kill, so the caller never hangs.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Size of one read from a pipe. The same buffer is reused for dropped output, so the
/// host memory of one exec is bounded by `2 * output_bytes + READ_CHUNK`.
const READ_CHUNK: usize = 64 * 1024;

/// One process to start.
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The launcher's own environment (everything else is cleared).
    pub env: Vec<(OsString, OsString)>,
    /// `(resource, limit)` pairs applied with `setrlimit` in the child before `exec`.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// `cgroup.procs` files the child writes itself into before `exec`.
    pub cgroup_procs: Vec<File>,
    /// A pipe read end the child inherits under the same number (for `bwrap --args N`).
    pub args_pipe: Option<OwnedFd>,
    /// The launcher's stdin (a ready sandbox's script pipe); `None` is `/dev/null`.
    pub stdin: Option<OwnedFd>,
}

/// Kills everything a launch started, not only the launcher process.
pub(crate) trait TreeKiller {
    /// Called on timeout and once more after the launcher has exited, to remove
    /// anything left behind. `pid` is the launcher's pid, which is also its process
    /// group id (the child calls `setsid`).
    /// `reaped` is true once the launcher has been waited for (its pid may then be
    /// reused, so it must not be signalled).
    fn kill_tree(&self, pid: i32, reaped: bool);
}

/// Limits the supervisor itself enforces.
pub(crate) struct Watch {
    pub timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub output_bytes: usize,
    /// Checked every [`Cancel::POLL`]: set means kill now.
    pub cancel: Cancel,
}

/// What the supervisor saw.
pub(crate) struct Supervised {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Set when the supervisor killed the tree because of a timeout.
    pub killed_for: Option<LimitHit>,
    /// When the supervisor killed the tree (for ordering limits).
    pub killed_at: Option<Instant>,
    pub wall: Duration,
}

/// The kept head of one output stream.
#[derive(Default)]
pub(crate) struct Captured {
    pub kept: Vec<u8>,
    pub dropped: u64,
    /// When the first byte was dropped.
    pub truncated_at: Option<Instant>,
}

impl Captured {
    fn push(&mut self, bytes: &[u8], limit: usize) {
        let room = limit.saturating_sub(self.kept.len());
        let take = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            self.dropped += (bytes.len() - take) as u64;
            self.truncated_at.get_or_insert_with(Instant::now);
        }
    }

    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// Starts `launch` and watches it to the end.
pub(crate) fn run(
    launch: Launch,
    watch: &Watch,
    killer: &dyn TreeKiller,
) -> io::Result<Supervised> {
    let started = Instant::now();
    let child = spawn(launch)?;
    watch_child(child, started, watch, killer)
}

/// Watches an already started launcher (see [`run`]); `started` is when its clock began.
pub(crate) fn watch_child(
    mut child: Child,
    started: Instant,
    watch: &Watch,
    killer: &dyn TreeKiller,
) -> io::Result<Supervised> {
    let pid = child.id() as i32;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let pidfd = open_pidfd(pid);

    let mut streams = [
        Stream::new(stdout, watch.output_bytes),
        Stream::new(stderr, watch.output_bytes),
    ];
    let mut scratch = vec![0u8; READ_CHUNK];
    let deadline = started + watch.timeout;
    let mut last_output = started;
    let mut killed_for = None;
    let mut killed_at = None;
    let mut status = None;

    // Phase 1: until the launcher exits or a timeout kills it.
    while status.is_none() {
        let now = Instant::now();
        if now >= deadline {
            killed_for = Some(LimitHit::Timeout);
        } else if let Some(idle) = watch.idle_timeout
            && now >= last_output + idle
        {
            killed_for = Some(LimitHit::IdleTimeout);
        } else if watch.cancel.is_cancelled() {
            killed_for = Some(LimitHit::Cancelled);
        }
        if killed_for.is_some() {
            killed_at = Some(now);
            killer.kill_tree(pid, false);
            break;
        }
        let mut wake = deadline;
        if let Some(idle) = watch.idle_timeout {
            wake = wake.min(last_output + idle);
        }
        wake = wake.min(now + Cancel::POLL);
        // Without a pidfd (kernels before 5.3) the exit is noticed by polling.
        let mut wait_for = wake.saturating_duration_since(now);
        if pidfd.is_none() {
            wait_for = wait_for.min(Duration::from_millis(5));
        }
        let ready = poll_once(&streams, pidfd.as_ref(), wait_for)?;
        if read_ready(&mut streams, &ready, &mut scratch)? {
            last_output = Instant::now();
        }
        if ready.pidfd || pidfd.is_none() {
            status = child.try_wait()?;
        }
    }

    // Phase 2: collect the status (after a kill), clean up leftovers, drain the pipes.
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    killer.kill_tree(pid, true);
    let drain_until = Instant::now() + DRAIN_GRACE;
    while streams.iter().any(|s| s.fd.is_some()) {
        let now = Instant::now();
        if now >= drain_until {
            break;
        }
        let ready = poll_once(&streams, None, drain_until - now)?;
        read_ready(&mut streams, &ready, &mut scratch)?;
    }
    let [out, err] = streams;
    Ok(Supervised {
        status,
        stdout: out.captured,
        stderr: err.captured,
        killed_for,
        killed_at,
        wall: started.elapsed(),
    })
}

/// Starts the launcher with a cleared environment, closed stdin, piped output, its own
/// session, `PR_SET_PDEATHSIG` (tied to the calling thread), rlimits and cgroups.
pub(crate) fn spawn(launch: Launch) -> io::Result<Child> {
    let mut cmd = std::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(match launch.stdin {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    let rlimits = launch.rlimits;
    let procs: Vec<RawFd> = launch.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let args_fd: Option<RawFd> = launch.args_pipe.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, prctl, getppid, setrlimit, write, fcntl,
    // _exit)
    // on values prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Own session and process group: a timeout kills the group at once, and the
            // sandbox never shares the caller's terminal.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Die with the caller. The signal is tied to the thread that forked us,
            // which is the thread blocked in `run` for the whole exec.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The caller may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            for &(resource, value) in &rlimits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &lim) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Writing "0" to cgroup.procs moves the writing process (v1 and v2).
            for &fd in &procs {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The args pipe keeps its number (the launcher's command line names it);
            // only its close-on-exec flag is cleared, in the child alone. Why not dup2 to
            // a fixed number: that number may be the pipe std uses to report exec errors.
            if let Some(fd) = args_fd
                && libc::fcntl(fd, libc::F_SETFD, 0) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(launch.cgroup_procs);
    drop(launch.args_pipe);
    child
}

fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

struct Stream {
    fd: Option<OwnedFd>,
    captured: Captured,
    limit: usize,
}

impl Stream {
    fn new(fd: Option<OwnedFd>, limit: usize) -> Self {
        Stream {
            fd,
            captured: Captured::default(),
            limit,
        }
    }
}

#[derive(Default)]
struct Ready {
    streams: [bool; 2],
    pidfd: bool,
}

fn poll_once(streams: &[Stream; 2], pidfd: Option<&OwnedFd>, wait: Duration) -> io::Result<Ready> {
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
    let mut slots = [None; 2];
    for (i, s) in streams.iter().enumerate() {
        if let Some(fd) = &s.fd {
            slots[i] = Some(fds.len());
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }
    let pid_slot = pidfd.map(|fd| {
        fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        fds.len() - 1
    });
    if fds.is_empty() {
        std::thread::sleep(wait);
        return Ok(Ready::default());
    }
    // Round up so a sub-millisecond remainder does not become a busy loop.
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Ready::default());
        }
        return Err(e);
    }
    let hit = |slot: Option<usize>| slot.is_some_and(|i| fds[i].revents != 0);
    Ok(Ready {
        streams: [hit(slots[0]), hit(slots[1])],
        pidfd: hit(pid_slot),
    })
}

/// Reads once from every ready stream. Returns whether any byte arrived.
fn read_ready(streams: &mut [Stream; 2], ready: &Ready, scratch: &mut [u8]) -> io::Result<bool> {
    let mut any = false;
    for (i, s) in streams.iter_mut().enumerate() {
        if !ready.streams[i] {
            continue;
        }
        let Some(fd) = &s.fd else { continue };
        // SAFETY: `scratch` is a valid writable buffer of `scratch.len()` bytes and
        // `fd` is an open pipe we own; poll said it is readable, so read won't block.
        let n = unsafe { libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            s.fd = None;
            continue;
        }
        any = true;
        s.captured.push(&scratch[..n as usize], s.limit);
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_keeps_the_head_and_counts_the_rest() {
        let mut c = Captured::default();
        c.push(b"hello", 8);
        c.push(b"world", 8);
        assert_eq!(c.kept, b"hellowor");
        assert_eq!(c.dropped, 2);
        assert!(c.truncated());
        c.push(b"more", 8);
        assert_eq!(c.kept.len(), 8);
        assert_eq!(c.dropped, 6);
    }

    #[test]
    fn captured_under_the_limit_is_not_truncated() {
        let mut c = Captured::default();
        c.push(b"abc", 3);
        assert!(!c.truncated());
        assert_eq!(c.text(), "abc");
    }
}
