//! Limits: memory and pids through cgroups, output cap, idle timeout, file size.

use crate::{sandbox, script};
use ssr_sandbox::cgroup::{Controller, ExecCgroup};
use ssr_sandbox::{LimitHit, Sandbox, host_cgroups};
use std::time::Duration;

fn require_cgroup(c: Controller) -> bool {
    let ok = host_cgroups().has(c);
    if !ok {
        eprintln!(
            "skipped: no usable cgroup controller {c:?} on this host: {:?}",
            host_cgroups().problems
        );
    }
    ok
}

#[test]
fn memory_limit_kills_a_memory_hog() {
    if !require_cgroup(Controller::Memory) {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    // 400 MiB of touched memory against a 64 MiB limit.
    let mut spec = script(
        ws.path(),
        "python3 -c 'b = bytearray(400 << 20); print(len(b))'",
    );
    spec.limits.memory_bytes = Some(64 << 20);
    spec.limits.timeout = Duration::from_secs(20);
    let o = sandbox().exec(&spec).unwrap();
    assert_eq!(o.limit_hit, Some(LimitHit::Memory), "{o:?}");
    assert!(!o.success());
    assert!(!o.stdout.contains("419430400"));
}

#[test]
fn pids_limit_stops_forking() {
    if !require_cgroup(Controller::Pids) {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "for i in $(seq 1 40); do sleep 5 & done; wait");
    spec.limits.pids = Some(10);
    spec.limits.timeout = Duration::from_secs(3);
    let o = sandbox().exec(&spec).unwrap();
    assert_eq!(o.limit_hit, Some(LimitHit::Pids), "{o:?}");
    assert!(
        o.stderr.contains("fork") || o.stderr.contains("retry") || o.stderr.contains("Resource"),
        "{o:?}"
    );
}

#[test]
fn output_over_the_cap_is_truncated() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(
        ws.path(),
        "head -c 100000 /dev/zero | tr '\\0' x; echo done >&2",
    );
    spec.limits.output_bytes = 1000;
    let o = sandbox().exec(&spec).unwrap();
    assert!(o.truncated);
    assert_eq!(o.stdout.len(), 1000);
    assert_eq!(o.stderr, "done\n");
    assert_eq!(o.limit_hit, Some(LimitHit::Output));
    assert_eq!(o.exit_code, Some(0));
}

#[test]
fn idle_timeout_kills_a_silent_command() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "echo start; sleep 30");
    spec.limits.idle_timeout = Some(Duration::from_millis(700));
    spec.limits.timeout = Duration::from_secs(10);
    let o = sandbox().exec(&spec).unwrap();
    assert!(o.timed_out);
    assert_eq!(o.limit_hit, Some(LimitHit::IdleTimeout));
    assert_eq!(o.stdout, "start\n");
    assert!(o.wall_ms < 5000);
}

#[test]
fn idle_timeout_is_reset_by_output() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "for i in 1 2 3 4 5; do echo $i; sleep 0.3; done");
    spec.limits.idle_timeout = Some(Duration::from_millis(900));
    let o = sandbox().exec(&spec).unwrap();
    assert!(o.success(), "{o:?}");
    assert_eq!(o.stdout, "1\n2\n3\n4\n5\n");
}

#[test]
fn file_size_limit_stops_a_large_write() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "head -c 10000000 /dev/zero > big");
    spec.limits.file_size_bytes = Some(1 << 20);
    let o = sandbox().exec(&spec).unwrap();
    assert_eq!(o.limit_hit, Some(LimitHit::FileSize), "{o:?}");
    assert!(std::fs::metadata(ws.path().join("big")).unwrap().len() <= 1 << 20);
}

#[test]
fn exec_cgroup_is_killed_and_removed_on_drop() {
    if !require_cgroup(Controller::Pids) {
        return;
    }
    let cg = ExecCgroup::create(host_cgroups(), Some(64 << 20), Some(8)).unwrap();
    let dirs: Vec<_> = cg.dirs().map(|d| d.to_path_buf()).collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()));
    let mut child = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    std::fs::write(dirs[0].join("cgroup.procs"), child.id().to_string()).unwrap();
    assert!(!cg.is_empty());
    drop(cg);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(dirs.iter().all(|d| !d.exists()));
}

/// A sandbox as on a host without usable cgroups.
fn without_cgroups() -> ssr_sandbox::BwrapSandbox {
    sandbox().with_cgroups(ssr_sandbox::cgroup::CgroupHost::default())
}

#[test]
fn without_cgroups_memory_falls_back_to_rlimit_as() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "python3 -c 'b = bytearray(600 << 20)'");
    spec.limits.memory_bytes = Some(256 << 20);
    let o = without_cgroups().exec(&spec).unwrap();
    assert!(!o.success());
    assert!(o.stderr.contains("MemoryError"), "{o:?}");
}

#[test]
fn without_cgroups_timeout_still_kills_the_whole_tree() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(
        ws.path(),
        "setsid bash -c 'while :; do echo x >> /repo/mark; sleep 0.05; done' >/dev/null 2>&1 & sleep 30",
    );
    spec.limits.timeout = Duration::from_secs(1);
    let o = without_cgroups().exec(&spec).unwrap();
    assert!(o.timed_out);
    let size = || {
        std::fs::metadata(ws.path().join("mark"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let before = size();
    assert!(before > 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(size(), before, "a process survived the timeout");
}

#[test]
fn released_cgroup_is_killed_at_once_and_removed_soon() {
    if !require_cgroup(Controller::Pids) {
        return;
    }
    let cg = ExecCgroup::create(host_cgroups(), None, Some(8)).unwrap();
    let dirs: Vec<_> = cg.dirs().map(|d| d.to_path_buf()).collect();
    let mut child = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    std::fs::write(dirs[0].join("cgroup.procs"), child.id().to_string()).unwrap();
    cg.release();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while dirs.iter().any(|d| d.exists()) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        dirs.iter().all(|d| !d.exists()),
        "cgroup left behind: {dirs:?}"
    );
}

/// Regression (environment server): an episode cancelled during a tool call left the
/// call's command running until its own timeout.
#[test]
fn a_cancelled_exec_is_killed_at_once_with_its_children() {
    let ws = tempfile::tempdir().unwrap();
    let marker = format!("sleep 41.{}", std::process::id());
    let mut spec = script(ws.path(), &format!("{marker} & {marker}; wait"));
    spec.limits.timeout = Duration::from_secs(60);
    let cancel = spec.limits.cancel.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let t0 = std::time::Instant::now();
    let o = sandbox().exec(&spec).unwrap();
    stopper.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(o.limit_hit, Some(LimitHit::Cancelled), "{o:?}");
    assert!(!o.timed_out && !o.success(), "{o:?}");
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(&marker)
            })
        })
        .count();
    assert_eq!(left, 0, "processes of the cancelled exec remain");
}
