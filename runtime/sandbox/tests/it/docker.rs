//! Image-based environments against the real engine: the docker backend (`docker run`
//! per command) and bubblewrap over the image's unpacked root, each held to the same
//! guarantees as bubblewrap on the host root (no network, no capabilities, limits,
//! read-only protected paths, nothing kept between commands, no container left behind
//! even when the caller is killed with SIGKILL).
//!
//! The images are built locally by `scripts/test_images.sh` (setup.sh runs it). Where
//! no engine answers, every test prints why it skips; where one answers, a missing image
//! is a failure, not a skip: the tests must run on CI's machines. The command line itself
//! is unit-tested in `src/docker.rs`.

use ssr_sandbox::{
    Command, Engine, ExecOutcome, ExecSpec, ImageExec, ImageSandbox, LimitHit, Sandbox,
    first_engine, sweep_stale_containers, unpack_image,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The plain Debian + python3 + pytest image.
const PY_IMAGE: &str = "ssr-test-py:latest";
/// The SWE-bench-layout instance (repository at /testbed, a dependency only inside).
const SWE_IMAGE: &str = "ssr-test-swebench:latest";

/// The engine, or `None` (printed) where none answers. Panics when the engine answers
/// but the test images were not built.
fn engine() -> Option<(Engine, PathBuf)> {
    match first_engine() {
        Ok(e) => {
            for image in [PY_IMAGE, SWE_IMAGE] {
                let ok = std::process::Command::new(&e.1)
                    .args(["image", "inspect", image])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    ok,
                    "an engine answers but image {image} is missing: run scripts/test_images.sh"
                );
            }
            Some(e)
        }
        Err(e) => {
            eprintln!("skipped: no container engine answers here: {e}");
            None
        }
    }
}

/// A private cache for unpacked images, shared by the tests of this process.
fn cache() -> &'static Path {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn sandbox(image: &str, exec: ImageExec, workdir: Option<&str>) -> Option<ImageSandbox> {
    let (engine, program) = engine()?;
    Some(
        ImageSandbox::with_engine(
            image,
            exec,
            workdir.map(PathBuf::from),
            engine,
            program,
            cache(),
        )
        .unwrap(),
    )
}

fn both() -> [ImageExec; 2] {
    [ImageExec::Docker, ImageExec::RootFs]
}

fn script(ws: &Path, text: &str) -> ExecSpec {
    let mut spec = ExecSpec::new(Command::Script(text.into()), ws);
    spec.limits.timeout = Duration::from_secs(30);
    spec.limits.memory_bytes = Some(256 << 20);
    spec.limits.pids = Some(64);
    spec
}

fn run(sb: &ImageSandbox, ws: &Path, text: &str) -> ExecOutcome {
    sb.exec(&script(ws, text)).unwrap()
}

#[test]
fn image_exec_reports_exit_code_output_and_has_no_network() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        let o = run(
            &sb,
            ws.path(),
            "echo hi; touch made; (echo > /dev/tcp/1.1.1.1/80) 2>/dev/null && echo NET; \
             cat /sys/class/net/*/operstate 2>/dev/null | grep -qx up && echo IFACE; exit 4",
        );
        assert_eq!(o.exit_code, Some(4), "{exec:?}: {o:?}");
        assert_eq!(o.stdout, "hi\n", "{exec:?}");
        assert!(ws.path().join("made").exists(), "{exec:?}");
    }
}

#[test]
fn image_exec_has_no_capabilities_and_a_read_only_root() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        let o = run(
            &sb,
            ws.path(),
            "grep -E '^Cap(Prm|Eff|Bnd|Amb):' /proc/self/status; touch /usr/x 2>/dev/null && echo ROOT-WRITABLE; true",
        );
        assert!(o.success(), "{exec:?}: {o:?}");
        let caps: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(caps.len(), 4, "{exec:?}: {o:?}");
        for line in caps {
            assert!(line.ends_with("0000000000000000"), "{exec:?}: {line}");
        }
        assert!(!o.stdout.contains("ROOT-WRITABLE"), "{exec:?}");
    }
}

#[test]
fn image_exec_runs_the_images_own_interpreter_at_its_repository_path() {
    for exec in both() {
        let Some(sb) = sandbox(SWE_IMAGE, exec, None) else {
            return;
        };
        // The image's WORKDIR is /testbed; the workspace goes there.
        assert_eq!(sb.workdir(), Path::new("/testbed"));
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("probe.txt"), "here").unwrap();
        let o = run(
            &sb,
            ws.path(),
            "pwd; cat /testbed/probe.txt; echo; python3 -c 'import tallyfmt, pytest; print(tallyfmt.fmt_count(\"a\", 1))'",
        );
        assert!(o.success(), "{exec:?}: {o:?}");
        assert_eq!(o.stdout, "/testbed\nhere\na: 1\n", "{exec:?}");
    }
}

#[test]
fn image_exec_keeps_protected_paths_read_only() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join("tests")).unwrap();
        std::fs::write(ws.path().join("tests/test_a.py"), "ORIGINAL").unwrap();
        let spec = script(
            ws.path(),
            "echo EVIL > tests/test_a.py; rm -f tests/test_a.py; echo ok > free.txt; true",
        )
        .with_read_only(["tests"]);
        let o = sb.exec(&spec).unwrap();
        assert!(o.success(), "{exec:?}: {o:?}");
        assert_eq!(
            std::fs::read_to_string(ws.path().join("tests/test_a.py")).unwrap(),
            "ORIGINAL",
            "{exec:?}"
        );
        assert!(ws.path().join("free.txt").exists(), "{exec:?}");
    }
}

#[test]
fn image_exec_keeps_nothing_between_commands() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        let first = run(&sb, ws.path(), "echo secret > /tmp/left; echo done");
        assert!(first.success(), "{exec:?}: {first:?}");
        let second = run(&sb, ws.path(), "cat /tmp/left 2>/dev/null || echo gone");
        assert_eq!(second.stdout, "gone\n", "{exec:?}");
    }
}

#[test]
fn image_exec_memory_limit_kills_a_memory_hog() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        let mut spec = script(
            ws.path(),
            "python3 -c 'b = bytearray(400 << 20); print(len(b))'",
        );
        spec.limits.memory_bytes = Some(64 << 20);
        let o = sb.exec(&spec).unwrap();
        assert_eq!(o.limit_hit, Some(LimitHit::Memory), "{exec:?}: {o:?}");
        assert!(!o.stdout.contains("419430400"), "{exec:?}");
    }
}

#[test]
fn image_exec_pids_and_file_size_limits_hold() {
    for exec in both() {
        let Some(sb) = sandbox(PY_IMAGE, exec, None) else {
            return;
        };
        let ws = tempfile::tempdir().unwrap();
        let mut spec = script(ws.path(), "for i in $(seq 1 40); do sleep 5 & done; wait");
        spec.limits.pids = Some(10);
        spec.limits.timeout = Duration::from_secs(4);
        let o = sb.exec(&spec).unwrap();
        assert!(
            o.stderr.contains("fork")
                || o.stderr.contains("retry")
                || o.stderr.contains("Resource"),
            "{exec:?}: forking was not stopped: {o:?}"
        );
        let mut spec = script(ws.path(), "head -c 10000000 /dev/zero > big");
        spec.limits.file_size_bytes = Some(1 << 20);
        let o = sb.exec(&spec).unwrap();
        assert_eq!(o.limit_hit, Some(LimitHit::FileSize), "{exec:?}: {o:?}");
        assert!(std::fs::metadata(ws.path().join("big")).unwrap().len() <= 1 << 20);
    }
}

/// Names of this crate's containers made by process `pid`.
fn containers_of(program: &Path, pid: u32) -> Vec<String> {
    let out = std::process::Command::new(program)
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name=ssr-sandbox-{pid}-"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn docker_timeout_kills_and_removes_the_container() {
    let Some(sb) = sandbox(PY_IMAGE, ImageExec::Docker, None) else {
        return;
    };
    let (_, program) = first_engine().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "echo start; sleep 60");
    spec.limits.timeout = Duration::from_secs(3);
    let start = Instant::now();
    let o = sb.exec(&spec).unwrap();
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.limit_hit, Some(LimitHit::Timeout));
    assert_eq!(o.stdout, "start\n");
    assert!(start.elapsed() < Duration::from_secs(30));
    // Other tests of this process run containers at the same time: look for this one's
    // command only.
    let out = std::process::Command::new(&program)
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("name=ssr-sandbox-{}-", std::process::id()),
            "--format",
            "{{.Command}}",
        ])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&out.stdout);
    assert!(!left.contains("sleep 60"), "container left: {left}");
}

/// Not a test on its own: the body of the child process that
/// `a_container_of_a_caller_killed_with_sigkill_is_swept` kills.
#[test]
fn sigkill_child_body() {
    if std::env::var_os("SSR_SIGKILL_CHILD").is_none() {
        return;
    }
    let sb = sandbox(PY_IMAGE, ImageExec::Docker, None).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "sleep 120");
    spec.limits.timeout = Duration::from_secs(120);
    let _ = sb.exec(&spec);
}

#[test]
fn a_container_of_a_caller_killed_with_sigkill_is_swept() {
    let Some((_, program)) = engine() else { return };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "docker::sigkill_child_body", "--nocapture"])
        .env("SSR_SIGKILL_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_of(&program, pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the child never started a container"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGKILL: no handler, no drop runs; the engine keeps the container.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let orphaned = containers_of(&program, pid);
    assert!(!orphaned.is_empty(), "the engine should still hold it");
    let removed = sweep_stale_containers(&program);
    for name in &orphaned {
        assert!(removed.contains(name), "{name} not swept: {removed:?}");
    }
    assert!(containers_of(&program, pid).is_empty());
}

#[test]
fn unpacked_rootfs_is_cached_by_image_id() {
    let Some((_, program)) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = unpack_image(&program, PY_IMAGE, dir.path()).unwrap();
    assert!(first.fresh);
    assert!(first.root.join("usr/bin/python3").exists());
    assert!(first.root.ends_with(first.info.id.replace(':', "-")));
    let again = unpack_image(&program, PY_IMAGE, dir.path()).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.root, first.root);
    // The unpacking container is gone.
    assert!(
        containers_of(&program, std::process::id())
            .iter()
            .all(|n| !n.contains("-unpack-"))
    );
    // Only the complete directory is left in the cache.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn a_missing_image_is_a_typed_error_not_a_panic() {
    let Some((engine, program)) = engine() else {
        return;
    };
    for exec in both() {
        let e = ImageSandbox::with_engine(
            "ssr-test-no-such-image:never",
            exec,
            None,
            engine,
            program.clone(),
            cache(),
        );
        assert!(
            matches!(e, Err(ssr_sandbox::SandboxError::Unavailable { .. })),
            "{exec:?}: {e:?}"
        );
    }
}
