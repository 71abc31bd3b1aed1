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
//! Owns: the key, the shim and the script protocol, and starting one ready sandbox.
//! Does not own: the process once started (`prestart`), the pool that keeps it
//! (`pool`), the mount arguments (`bwrap`), limits or supervision (`supervise`,
//! `cgroup`).

use crate::cgroup::{CgroupHost, ExecCgroup};
use crate::plan::Plan;
use crate::prestart::Prestarted;
use crate::probe::BwrapInfo;
use crate::shell::{SHELL, is_shell_name, pipe, shell_quote};
use crate::supervise::Launch;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
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

/// Starts one ready sandbox for `key`: its mount arguments, then the shim starting in
/// `guest` (the workspace's guest path), in a fresh cgroup without limits (the exec
/// writes its limits before releasing it).
pub(crate) fn start(
    key: &Key,
    info: &BwrapInfo,
    cgroups: &CgroupHost,
    guest: &Path,
) -> io::Result<Prestarted> {
    let cgroup = if cgroups.hierarchies.is_empty() {
        None
    } else {
        Some(ExecCgroup::create(cgroups, None, None)?)
    };
    let (read, write) = pipe()?;
    let mut args = key.mount_args.clone();
    args.extend([
        OsString::from("--chdir"),
        guest.as_os_str().to_owned(),
        "--clearenv".into(),
        "--".into(),
        SHELL.into(),
        "-c".into(),
        SHIM.into(),
    ]);
    let launch = Launch {
        program: info.path.clone(),
        args,
        env: Vec::new(),
        rlimits: key.rlimits.clone(),
        cgroup_procs: match &cgroup {
            Some(cg) => cg.procs_files()?,
            None => Vec::new(),
        },
        args_pipe: None,
        stdin: Some(read),
    };
    Prestarted::spawn(launch, File::from(write), cgroup)
}

/// Waits until the shim says bubblewrap's set-up is done (usually already). Why the
/// exec checks this and not the keeper: a mount source removed while bubblewrap
/// started makes it fail ("Can't get type of source"), and a directory made again in
/// its place can get the same inode, hence the same key; serving that dying bubblewrap
/// would hand its error to the exec. Checked at take, a sandbox parked a moment ago can
/// still be taken while its set-up finishes, overlapping the two.
pub(crate) fn confirm(sandbox: &mut Prestarted) -> io::Result<()> {
    sandbox.await_marker(MARKER, SETUP_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;

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

    /// A key whose only mount source is `source` (the host's `/` read-only beneath),
    /// started outside any cgroup.
    fn start_with_source(info: &BwrapInfo, source: &Path) -> Prestarted {
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
        let key = Key {
            bwrap: info.path.clone(),
            mount_args,
            identities: Vec::new(),
            rlimits: Vec::new(),
        };
        start(&key, info, &CgroupHost::default(), Path::new("/")).unwrap()
    }

    /// Regression (CI, session 2): a workspace removed while its ready sandbox was
    /// being set up, then made again with the same inode, was served the dying
    /// bubblewrap and the exec got "Can't get type of source". A ready sandbox whose
    /// set-up failed must never serve an exec.
    #[test]
    fn a_ready_sandbox_whose_set_up_failed_is_not_served() {
        let Ok(info) = crate::probe::read_bwrap() else {
            eprintln!("skipped: no bwrap");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("removed-before-set-up");
        let mut failed = start_with_source(&info, &gone);
        assert!(
            confirm(&mut failed).is_err(),
            "a failed set-up was confirmed"
        );
        drop(failed);
        // The same key with the source present is confirmed, and the command's output
        // starts clean (the marker was consumed).
        let mut ready = start_with_source(&info, dir.path());
        confirm(&mut ready).unwrap();
        let started = ready
            .release(&crate::prestart::Release {
                memory_bytes: None,
                pids: None,
                rlimits: &[],
                input: b"exec /bin/echo served\n",
            })
            .unwrap();
        let out = started.child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "served\n", "{out:?}");
    }
}
