//! Red-team tests through the host, one per attack. The hostile guest bypasses every
//! friendly check the standard tools make, so what is refused here is refused by the
//! host: WASI preopens, the workspace import's checks, and the per-call limits.

use crate::support::{ProcessSandbox, Repo, guest_path, host_with, load_guest, ok, rw};
use ssr_toolhost::policy::{RepoAccess, ToolGrantSpec};
use ssr_toolhost::{LimitKind, Policy, Role, ToolHost, ToolHostError, ToolOrigin};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[roles.solver]
protected = ["**/conftest.py"]
[roles.solver.tools.hostile]
repo = "rw"
limits = { cpu_ms = 300, memory_bytes = 33554432, wall_ms = 10000, output_bytes = 65536 }
[roles.injector.tools.hostile]
repo = "ro"
[roles.solver.tools.wants-exec]
exec = true
limits = { wall_ms = 1000 }
"#;

fn hostile_host() -> ToolHost {
    let mut h = host_with(Policy::from_toml(POLICY).unwrap());
    load_guest(&mut h, "ssr_testing_hostile", rw());
    h
}

fn attack(
    h: &ToolHost,
    repo: &Repo,
    role: Role,
    args: &str,
) -> Result<ssr_toolhost::ToolReply, ToolHostError> {
    h.call(&repo.episode(role), "hostile", args, Default::default())
}

fn refused(h: &ToolHost, repo: &Repo, role: Role, args: &str) {
    let r = attack(h, repo, role, args).unwrap();
    let text = ok(&r);
    assert!(
        text.starts_with("refused"),
        "{args} was not refused: {text}"
    );
}

/// A directory outside the repository with a secret in it.
fn outside() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret.txt"), "secret").unwrap();
    d
}

#[test]
fn dotdot_traversal_is_refused() {
    let secret = outside();
    let repo = Repo::new(&[("a.txt", "a")]);
    let h = hostile_host();
    let name = secret.path().file_name().unwrap().to_str().unwrap();
    // Both directories live in the same temporary parent.
    let escape = format!("../{name}/secret.txt");
    assert!(repo.path().join(&escape).exists(), "test setup");
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"read","path":"{escape}"}}"#),
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"write_host","path":"{escape}"}}"#),
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"write_wasi","path":"{escape}"}}"#),
    );
    assert_eq!(
        std::fs::read_to_string(secret.path().join("secret.txt")).unwrap(),
        "secret"
    );
}

#[test]
fn absolute_paths_are_refused() {
    let secret = outside();
    let repo = Repo::new(&[]);
    let h = hostile_host();
    let abs = secret.path().join("secret.txt");
    let abs = abs.display();
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"read","path":"{abs}"}}"#),
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"read","path":"/etc/passwd"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"write_host","path":"{abs}"}}"#),
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        &format!(r#"{{"attack":"write_wasi","path":"{abs}"}}"#),
    );
    assert_eq!(
        std::fs::read_to_string(secret.path().join("secret.txt")).unwrap(),
        "secret"
    );
}

#[test]
fn symlink_out_of_the_repository_is_refused() {
    let secret = outside();
    let repo = Repo::new(&[]);
    std::os::unix::fs::symlink(secret.path(), repo.path().join("link")).unwrap();
    std::os::unix::fs::symlink(
        secret.path().join("secret.txt"),
        repo.path().join("file-link"),
    )
    .unwrap();
    let h = hostile_host();
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"read","path":"link/secret.txt"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"read","path":"file-link"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_host","path":"link/secret.txt"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_host","path":"link/new.txt"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_host","path":"file-link"}"#,
    );
    assert_eq!(
        std::fs::read_to_string(secret.path().join("secret.txt")).unwrap(),
        "secret"
    );
    assert!(!secret.path().join("new.txt").exists());
}

#[test]
fn writing_under_a_read_only_grant_is_refused() {
    let repo = Repo::new(&[("a.txt", "original")]);
    let h = hostile_host();
    refused(
        &h,
        &repo,
        Role::Injector,
        r#"{"attack":"write_wasi","path":"a.txt"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Injector,
        r#"{"attack":"write_host","path":"a.txt"}"#,
    );
    refused(
        &h,
        &repo,
        Role::Injector,
        r#"{"attack":"remove_host","path":"a.txt"}"#,
    );
    assert_eq!(repo.read("a.txt"), "original");
    // The read-write grant writes only through the checked import, never through WASI.
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_wasi","path":"a.txt"}"#,
    );
    let r = attack(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_host","path":"a.txt"}"#,
    )
    .unwrap();
    assert!(ok(&r).starts_with("ok"));
    assert_eq!(repo.read("a.txt"), "pwned");
}

#[test]
fn protected_file_inside_a_read_write_grant_stays_read_only() {
    let repo = Repo::new(&[("conftest.py", "original"), ("pkg/conftest.py", "original")]);
    std::os::unix::fs::symlink("conftest.py", repo.path().join("alias.py")).unwrap();
    std::fs::hard_link(repo.path().join("conftest.py"), repo.path().join("hard.py")).unwrap();
    let h = hostile_host();
    for path in [
        "conftest.py",
        "pkg/conftest.py",
        "./pkg/../conftest.py",
        "alias.py",
    ] {
        refused(
            &h,
            &repo,
            Role::Solver,
            &format!(r#"{{"attack":"write_host","path":"{path}"}}"#),
        );
        refused(
            &h,
            &repo,
            Role::Solver,
            &format!(r#"{{"attack":"write_wasi","path":"{path}"}}"#),
        );
    }
    refused(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"remove_host","path":"conftest.py"}"#,
    );
    // A hard link is replaced by the atomic rename, never written through.
    let r = attack(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"write_host","path":"hard.py"}"#,
    )
    .unwrap();
    assert!(ok(&r).starts_with("ok"));
    assert_eq!(repo.read("hard.py"), "pwned");
    assert_eq!(repo.read("conftest.py"), "original");
    assert_eq!(repo.read("pkg/conftest.py"), "original");
}

#[test]
fn endless_loop_stops_at_the_cpu_limit() {
    let repo = Repo::new(&[]);
    let h = hostile_host();
    let started = Instant::now();
    let e = attack(&h, &repo, Role::Solver, r#"{"attack":"loop"}"#).unwrap_err();
    assert_eq!(e.limit(), Some(LimitKind::Cpu), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn memory_bomb_stops_at_the_memory_limit() {
    let repo = Repo::new(&[]);
    let h = hostile_host();
    let e = attack(&h, &repo, Role::Solver, r#"{"attack":"memory"}"#).unwrap_err();
    assert_eq!(e.limit(), Some(LimitKind::Memory), "{e}");
    // The host is still usable afterwards.
    ok(&attack(&h, &repo, Role::Solver, r#"{"attack":"read","path":"."}"#).unwrap());
}

#[test]
fn two_hundred_megabytes_of_output_are_truncated() {
    let repo = Repo::new(&[]);
    let h = hostile_host();
    let r = attack(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"stdout_flood","bytes":209715200}"#,
    )
    .unwrap();
    assert!(ok(&r).starts_with("ok: wrote 2097"), "{}", ok(&r));
    assert_eq!(
        r.stdout.len(),
        65536,
        "captured stdout is capped at the output limit"
    );
    let big = attack(
        &h,
        &repo,
        Role::Solver,
        r#"{"attack":"big_result","bytes":8000000}"#,
    )
    .unwrap();
    assert!(big.truncated);
    let text = ok(&big);
    assert!(text.len() <= 65536, "{}", text.len());
    assert!(text.contains("bytes truncated by the tool host"));
}

#[test]
fn guest_blocked_in_a_host_call_is_stopped_by_the_wall_clock() {
    let repo = Repo::new(&[]);
    let mut h = host_with(Policy::from_toml(POLICY).unwrap());
    load_guest(
        &mut h,
        "ssr_testing_wants_exec",
        ToolGrantSpec {
            exec: true,
            ..Default::default()
        },
    );
    let mut e = repo.episode(Role::Solver);
    e.sandbox = Some(Arc::new(ProcessSandbox));
    let started = Instant::now();
    let err = h
        .call(
            &e,
            "wants-exec",
            r#"{"command":"sleep 30"}"#,
            Default::default(),
        )
        .unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::WallClock), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ungranted_import_is_refused_at_load() {
    let mut h = host_with(Policy::from_toml(POLICY).unwrap());
    let path = guest_path("ssr_testing_wants_exec");
    let bytes = std::fs::read(&path).unwrap();
    let origin = ToolOrigin::Custom {
        manifest: path.clone(),
    };
    let err = h
        .load(
            &bytes,
            &path,
            ToolGrantSpec::default(),
            None,
            origin.clone(),
            None,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ToolHostError::Contract { .. }), "{msg}");
    assert!(
        msg.contains("ssr:tool/exec@0.1.0") && msg.contains("exec = false"),
        "{msg}"
    );
    let hostile = guest_path("ssr_testing_hostile");
    let ro = ToolGrantSpec {
        repo: RepoAccess::Ro,
        ..Default::default()
    };
    let err = h
        .load(
            &std::fs::read(&hostile).unwrap(),
            &hostile,
            ro,
            None,
            origin,
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("ssr:tool/workspace@0.1.0"),
        "{err}"
    );
}

#[test]
fn malformed_wasm_is_refused_with_a_clear_error() {
    let mut h = host_with(Policy::default());
    let path = std::path::PathBuf::from("garbage.wasm");
    let origin = ToolOrigin::Custom {
        manifest: path.clone(),
    };
    for bytes in [
        &b"not wasm at all"[..],
        &b"\0asm\x01\0\0\0"[..],
        &b"\0asm\x0d\0\x01\0\xff\xff"[..],
    ] {
        let err = h
            .load(
                bytes,
                &path,
                ToolGrantSpec::default(),
                None,
                origin.clone(),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ToolHostError::InvalidComponent { .. } | ToolHostError::Contract { .. }
            ),
            "{err}"
        );
    }
}
