//! Warm launchers: a `bwrap` started ahead of time inside a fresh per-exec cgroup and
//! blocked reading its whole command line from a pipe (`bwrap --args N`). An exec that
//! finds one writes the limits and the options and lets it go, so the start of the
//! process and its move into the cgroup are off the exec's critical path; bubblewrap's
//! own set-up still runs during the exec (a `ready` sandbox has done that too, but only
//! serves a workspace seen before).
//!
//! Why: on the 2-core dev machine, moving a new process into a cgroup v1 hierarchy
//! (writing `cgroup.procs`) took ~10 ms under load (the kernel waits for an RCU grace
//! period), as much as bubblewrap itself. Parking hides it.
//!
//! Owns: the launcher's command line and shim, and the bytes an exec sends it. Does not
//! own: the process once started (`prestart`), the pool (`pool`), the options
//! themselves (`bwrap`), limits or supervision (`supervise`, `cgroup`).

use crate::cgroup::{CgroupHost, ExecCgroup};
use crate::prestart::Prestarted;
use crate::probe::BwrapInfo;
use crate::shell::{SHELL, pipe, shell_quote};
use crate::supervise::Launch;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The variable carrying the real command, shell-quoted, to [`SHIM`].
pub(crate) const ARGV_VAR: &str = "SSR_SANDBOX_ARGV";

/// bwrap reads only options from `--args`; the command must be on its own command line,
/// which is fixed when the launcher is parked. So the parked command is this shim: it
/// takes the real command from [`ARGV_VAR`], removes that variable and the `PWD` the
/// shell adds, and `exec`s the command, which then runs as pid 2 exactly as on the cold
/// path (same environment, exit status and signals).
const SHIM: &str = "c=$SSR_SANDBOX_ARGV; unset SSR_SANDBOX_ARGV PWD; eval \"exec $c\"";

/// What an exec writes to a launcher's pipe: its bwrap `options` (everything before
/// `--` and the command) and the command in [`ARGV_VAR`], each NUL-terminated, as
/// `bwrap --args` reads them.
pub(crate) fn input(options: &[OsString], argv: &[String]) -> Vec<u8> {
    let quoted = shell_quote(argv);
    let mut buf = Vec::new();
    let tail = ["--setenv", ARGV_VAR, quoted.as_str()].map(OsString::from);
    for a in options.iter().chain(&tail) {
        buf.extend_from_slice(a.as_encoded_bytes());
        buf.push(0);
    }
    buf
}

/// Starts one launcher: `bwrap --args N` in a fresh cgroup without limits.
pub(crate) fn start(info: &BwrapInfo, cgroups: &CgroupHost) -> io::Result<Prestarted> {
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
    Prestarted::spawn(launch, File::from(write), cgroup)
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

    #[test]
    fn input_is_the_options_then_the_quoted_command_each_nul_terminated() {
        let got = input(
            &["--chdir".into(), "/repo".into()],
            &["echo".into(), "a b".into()],
        );
        assert_eq!(
            got,
            b"--chdir\0/repo\0--setenv\0SSR_SANDBOX_ARGV\0'echo' 'a b'\0".to_vec()
        );
    }
}
