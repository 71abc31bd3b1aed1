//! Ready sandboxes (set up ahead for a workspace exec'd before): the same results as
//! the cold path, one fresh sandbox per exec, limits that still bind, and nothing
//! served stale when the host replaced a mounted path.

use crate::{sandbox, script};
use ssr_sandbox::cgroup::Controller;
use ssr_sandbox::{
    BwrapSandbox, ExecOutcome, ExecSpec, LimitHit, Sandbox, StartPath, host_cgroups,
};
use std::path::Path;
use std::time::Duration;

/// Runs `spec` often enough in its workspace that the last run is served by a ready
/// sandbox (the second exec in a workspace parks one; the keeper needs a moment).
/// Returns the outcome of that last run; panics when no run was served ready.
fn exec_ready(sb: &BwrapSandbox, warm_up: &ExecSpec, spec: &ExecSpec) -> ExecOutcome {
    for _ in 0..40 {
        sb.exec(warm_up).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let o = sb.exec(spec).unwrap();
        if o.start == StartPath::Ready {
            assert!(o.stdout.contains("ready-probe"), "{o:?}");
            return o;
        }
    }
    panic!("no exec in this workspace was served by a ready sandbox");
}

const PROBE: &str = "echo ready-probe; echo \"$0|$1\"; pwd; id -u; hostname; env | sort; \
                     ls /tmp; touch /tmp/left-behind; exit 7";

#[test]
fn a_ready_sandbox_gives_the_cold_paths_results() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let mut spec = script(ws.path(), PROBE);
    spec.cwd = Some("sub".into());
    spec.env
        .insert("WEIRD".into(), "a 'b' \"c\"\n$HOME `x` \\n".into());
    spec.env.insert("PWD".into(), "/set/by/caller".into());
    let cold = sandbox().with_warm_pool(false).exec(&spec).unwrap();
    assert_eq!(cold.start, StartPath::Cold, "pre-starting was turned off");
    let sb = sandbox();
    let ready = exec_ready(&sb, &spec, &spec);
    assert_eq!(cold.exit_code, Some(7), "{cold:?}");
    assert_eq!(ready.exit_code, cold.exit_code);
    assert_eq!(ready.stdout, cold.stdout, "ready and cold paths differ");
    assert_eq!(ready.stderr, cold.stderr);
    // A fresh /tmp each time: the file the earlier runs left is not there.
    assert!(!ready.stdout.contains("left-behind"), "{ready:?}");
}

#[test]
fn a_protected_file_replaced_on_the_host_is_not_served_stale() {
    let ws = tempfile::tempdir().unwrap();
    let file = ws.path().join("oracle.txt");
    std::fs::write(&file, "old\n").unwrap();
    let mut spec = script(
        ws.path(),
        "echo ready-probe; cat oracle.txt; echo x >> oracle.txt",
    );
    spec.read_only_paths = vec!["oracle.txt".into()];
    let sb = sandbox();
    let o = exec_ready(&sb, &spec, &spec);
    assert!(o.stdout.contains("old"), "{o:?}");
    assert!(
        o.stderr.contains("Read-only"),
        "protected in a ready sandbox too: {o:?}"
    );
    // Replace the file (a new inode) as an evaluator restoring oracle files does.
    let tmp = ws.path().join("oracle.new");
    std::fs::write(&tmp, "new\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let o = sb.exec(&spec).unwrap();
    assert!(
        o.stdout.contains("new") && !o.stdout.contains("old"),
        "stale: {o:?}"
    );
    assert!(o.stderr.contains("Read-only"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "new\n");
}

#[test]
fn a_replaced_workspace_directory_is_not_served_stale() {
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("marker"), "first\n").unwrap();
    let spec = script(&ws, "echo ready-probe; cat marker");
    let sb = sandbox();
    exec_ready(&sb, &spec, &spec);
    std::fs::remove_dir_all(&ws).unwrap();
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("marker"), "second\n").unwrap();
    let o = sb.exec(&spec).unwrap();
    assert_eq!(o.stdout, "ready-probe\nsecond\n", "{o:?}");
}

#[test]
fn limits_bind_in_a_ready_sandbox() {
    let ws = tempfile::tempdir().unwrap();
    let sb = sandbox();
    let warm_up = script(ws.path(), "true");
    if host_cgroups().has(Controller::Pids) {
        let mut spec = script(
            ws.path(),
            "echo ready-probe; for i in $(seq 1 40); do sleep 5 & done; wait",
        );
        spec.limits.pids = Some(10);
        spec.limits.timeout = Duration::from_secs(3);
        let o = exec_ready(&sb, &warm_up, &spec);
        assert_eq!(o.limit_hit, Some(LimitHit::Pids), "{o:?}");
    } else {
        eprintln!("skipped the pids part: no pids controller");
    }
    // rlimits are set when a ready sandbox starts, so they are part of its key: a
    // file-size limit asked for now is not escaped by a sandbox parked without one.
    let mut spec = script(
        ws.path(),
        "echo ready-probe; head -c 10000000 /dev/zero > big",
    );
    spec.limits.file_size_bytes = Some(1 << 20);
    let o = exec_ready(&sb, &spec, &spec);
    assert_eq!(o.limit_hit, Some(LimitHit::FileSize), "{o:?}");
    assert!(std::fs::metadata(ws.path().join("big")).unwrap().len() <= 1 << 20);
    let o = sb.exec(&spec).unwrap();
    assert_eq!(o.limit_hit, Some(LimitHit::FileSize), "{o:?}");
}

#[test]
fn a_timeout_in_a_ready_sandbox_kills_the_whole_tree() {
    let ws = tempfile::tempdir().unwrap();
    let sb = sandbox();
    let warm_up = script(ws.path(), "true");
    let mut spec = script(ws.path(), "echo ready-probe; (setsid sleep 60 &); sleep 60");
    spec.limits.timeout = Duration::from_secs(1);
    let o = exec_ready(&sb, &warm_up, &spec);
    assert!(o.timed_out, "{o:?}");
    assert!(o.wall_ms < 5000, "{o:?}");
    assert!(
        no_process_mentions(ws.path()),
        "a process outlived the exec"
    );
}

/// Regression (review of 9f332a6, weakness 4): which path served an exec was read from
/// process-wide hit counters before and after it, so a concurrent exec served ready
/// was credited to whichever exec looked. The path is now part of each outcome: execs
/// with pre-starting off stay `Cold` while another thread is served ready sandboxes.
#[test]
fn the_start_path_belongs_to_each_exec_under_concurrency() {
    let ws = tempfile::tempdir().unwrap();
    let spec = script(ws.path(), "echo ready-probe");
    let busy = std::thread::spawn(move || {
        let sb = sandbox();
        exec_ready(&sb, &spec, &spec).start
    });
    let cold_ws = tempfile::tempdir().unwrap();
    let cold = sandbox().with_warm_pool(false);
    let mut starts = Vec::new();
    while !busy.is_finished() {
        starts.push(cold.exec(&script(cold_ws.path(), "true")).unwrap().start);
    }
    assert_eq!(busy.join().unwrap(), StartPath::Ready);
    assert!(!starts.is_empty());
    assert!(starts.iter().all(|s| *s == StartPath::Cold), "{starts:?}");
}

/// Whether no process on the host has `dir` as its working directory.
fn no_process_mentions(dir: &Path) -> bool {
    std::thread::sleep(Duration::from_millis(300));
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    !procs
        .flatten()
        .any(|p| std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)))
}
