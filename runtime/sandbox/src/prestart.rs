//! A pre-started sandbox: a `bwrap` process started ahead of an exec, in a cgroup of
//! its own without limits, blocked reading what it still needs from a pipe. Two kinds
//! exist (a launcher waiting for its options, `warm`; a sandbox fully set up for one
//! workspace, waiting for its command, `ready`), and both are this one type: what
//! differs is only what they were started with and what the exec writes to the pipe.
//!
//! Owns: [`Prestarted`] (its process, its pipe, its cgroup), releasing it into an exec
//! (limits first, then the bytes, then closing the pipe), and killing it when it is
//! dropped unreleased, so no path (an error, eviction, an idle sandbox, a pool that
//! forgot it) can leak a parked process. Does not own: what a kind is started with
//! (`ready`, `warm`), the pool that keeps them (`pool`), or supervising the exec once
//! released (`supervise`).

use crate::cgroup::ExecCgroup;
use crate::supervise::{self, Launch};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::Child;
use std::time::{Duration, Instant};

/// A `bwrap` started ahead of time and waiting on its pipe. Dropping it without
/// [`Prestarted::release`] kills the process and releases its cgroup.
pub(crate) struct Prestarted {
    /// `None` once released (the exec owns it then).
    child: Option<Child>,
    /// The pipe it reads; closing it lets the process go on.
    input: Option<File>,
    cgroup: Option<ExecCgroup>,
}

/// What an exec gives a pre-started sandbox before letting it run.
pub(crate) struct Release<'a> {
    /// Written to the cgroup (`memory`, `pids`), before anything runs.
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Applied to the waiting process with `prlimit` (empty when it was started with
    /// them, as a ready sandbox is).
    pub rlimits: &'a [(libc::__rlimit_resource_t, u64)],
    /// Written to the pipe, which is then closed.
    pub input: &'a [u8],
}

/// A released process: the exec supervises it from `at` on.
pub(crate) struct Started {
    pub child: Child,
    pub cgroup: Option<ExecCgroup>,
    pub at: Instant,
}

impl Prestarted {
    /// Starts `launch` in `cgroup`; `input` is the write end of the pipe it reads.
    pub(crate) fn spawn(
        launch: Launch,
        input: File,
        cgroup: Option<ExecCgroup>,
    ) -> io::Result<Prestarted> {
        let child = supervise::spawn(launch)?;
        Ok(Prestarted {
            child: Some(child),
            input: Some(input),
            cgroup,
        })
    }

    /// Whether the process is still waiting (not killed from outside, not failed).
    pub(crate) fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sets the exec's limits, writes its input and closes the pipe, which lets the
    /// process run. On error the sandbox is dropped, hence killed, and the caller takes
    /// another path.
    pub(crate) fn release(mut self, r: &Release) -> io::Result<Started> {
        if let Some(cg) = &self.cgroup {
            cg.set_limits(r.memory_bytes, r.pids)?;
        }
        let at = Instant::now();
        let pid = self.child.as_ref().map_or(0, |c| c.id() as libc::pid_t);
        for &(resource, value) in r.rlimits {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: `lim` is a valid rlimit; a null old-limit pointer is allowed.
            if unsafe { libc::prlimit(pid, resource, &lim, std::ptr::null_mut()) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut input = self
            .input
            .take()
            .ok_or_else(|| io::Error::other("pre-started sandbox without its pipe"))?;
        input.write_all(r.input)?;
        drop(input);
        let child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("pre-started sandbox without its process"))?;
        Ok(Started {
            child,
            cgroup: self.cgroup.take(),
            at,
        })
    }

    /// Waits up to `timeout` for `marker` on the process's stdout and consumes exactly
    /// that byte. Anything else (end of file because bubblewrap failed, another byte, no
    /// answer) is an error.
    pub(crate) fn await_marker(&mut self, marker: u8, timeout: Duration) -> io::Result<()> {
        let out = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.as_mut())
            .ok_or_else(|| io::Error::other("pre-started sandbox without a stdout pipe"))?;
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
                    "pre-started sandbox set-up timed out",
                ));
            }
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd that lives across the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
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
            1 if byte[0] == marker => Ok(()),
            _ => Err(io::Error::other("pre-started sandbox failed its set-up")),
        }
    }
}

impl Drop for Prestarted {
    fn drop(&mut self) {
        // Kill before the pipe closes (fields drop after this body): a launcher whose
        // pipe closes empty would otherwise go on and run its shim.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(cg) = self.cgroup.take() {
            cg.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::{SHELL, pipe};

    /// A pre-started `/bin/sh` (no bwrap needed) that prints `R`, then echoes what
    /// arrives on its pipe.
    fn echo_shell() -> Prestarted {
        let (read, write) = pipe().unwrap();
        let launch = Launch {
            program: SHELL.into(),
            args: ["-c", "printf R; cat"].map(Into::into).to_vec(),
            env: Vec::new(),
            rlimits: Vec::new(),
            cgroup_procs: Vec::new(),
            args_pipe: None,
            stdin: Some(read),
        };
        Prestarted::spawn(launch, File::from(write), None).unwrap()
    }

    fn gone(pid: u32) -> bool {
        // Reaped by Drop: the pid no longer names our child (it may be reused later,
        // but not within this test's microseconds on an idle pid space).
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn dropping_an_unreleased_sandbox_kills_its_process() {
        let mut p = echo_shell();
        assert!(p.alive());
        let pid = p.child.as_ref().unwrap().id();
        drop(p);
        assert!(gone(pid), "the pre-started process outlived its drop");
    }

    #[test]
    fn a_released_sandbox_gets_its_input_and_runs_on() {
        let mut p = echo_shell();
        p.await_marker(b'R', Duration::from_secs(5)).unwrap();
        let started = p
            .release(&Release {
                memory_bytes: None,
                pids: None,
                rlimits: &[(libc::RLIMIT_CORE, 0)],
                input: b"hello\n",
            })
            .unwrap();
        let out = started.child.wait_with_output().unwrap();
        assert_eq!(out.stdout, b"hello\n");
        assert!(out.status.success());
    }

    #[test]
    fn a_wrong_marker_is_a_failed_set_up() {
        let mut p = echo_shell();
        assert!(p.await_marker(b'X', Duration::from_secs(5)).is_err());
    }
}
