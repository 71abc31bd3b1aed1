//! Ordinary execution: exit codes, signals, cwd, environment, read-only paths, output.

use crate::{run, sandbox, script};
use ssr_sandbox::{Command, ExecSpec, LimitHit, Sandbox};
use std::time::Duration;

#[test]
fn exit_code_and_output_come_back() {
    let o = run("echo out; echo err >&2; exit 3");
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.signal, None);
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    assert!(!o.timed_out && !o.truncated && o.limit_hit.is_none());
}

#[test]
fn argv_runs_without_a_shell() {
    let ws = tempfile::tempdir().unwrap();
    let spec = ExecSpec::new(
        Command::Argv(vec!["echo".into(), "$HOME".into(), "a b".into()]),
        ws.path(),
    );
    let o = sandbox().exec(&spec).unwrap();
    assert_eq!(o.stdout, "$HOME a b\n");
    assert!(o.success());
}

#[test]
fn signal_is_reported() {
    let o = run("kill -SEGV $$");
    assert_eq!(o.exit_code, None);
    assert_eq!(o.signal, Some(11));
    assert!(!o.timed_out);
}

#[test]
fn cwd_is_inside_the_workspace() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let mut spec = script(ws.path(), "pwd; touch made-here");
    spec.cwd = Some("sub".into());
    let o = sandbox().exec(&spec).unwrap();
    assert_eq!(o.stdout, "/repo/sub\n");
    assert!(ws.path().join("sub/made-here").exists());
}

#[test]
fn runs_as_an_unprivileged_user_without_capabilities() {
    let o = run("id -u; grep CapEff /proc/self/status");
    assert_eq!(o.stdout, "65534\nCapEff:\t0000000000000000\n", "{o:?}");
}

#[test]
fn timeout_returns_partial_output() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "echo before; sleep 30; echo after");
    spec.limits.timeout = Duration::from_secs(1);
    let o = sandbox().exec(&spec).unwrap();
    assert!(o.timed_out);
    assert_eq!(o.limit_hit, Some(LimitHit::Timeout));
    assert_eq!(o.stdout, "before\n");
    assert!(o.wall_ms < 5000, "{}", o.wall_ms);
}
