//! The wall-clock limit on both of a call's placements: a standard tool runs on the
//! caller's thread, where only the watchdog can stop a system call the guest is blocked
//! in; a custom tool runs on a worker the caller walks away from. A FIFO in the
//! repository (a model can make one with `mkfifo`) blocks whoever opens it for reading
//! until a writer comes, which here is never.

use crate::support::{Repo, host_with, load_guest, ok, rw};
use ssr_toolhost::{
    CallOptions, CallProfile, Episode, LimitKind, Policy, Role, ToolHost, ToolHostError, ToolReply,
};
use std::io::Read as _;
use std::time::{Duration, Instant};

/// A call of `tool` with its profile; `blocking_thread` as in [`CallOptions`].
fn profiled(
    h: &ToolHost,
    episode: &Episode,
    blocking_thread: bool,
    tool: &str,
    args: &str,
) -> (Result<ToolReply, ToolHostError>, CallProfile) {
    let mut profile = CallProfile::default();
    let options = CallOptions {
        blocking_thread,
        profile: Some(&mut profile),
    };
    let reply = h.call(episode, tool, args, options);
    (reply, profile)
}

const POLICY: &str = r#"
[roles.solver.tools.editor]
repo = "rw"
state = true
limits = { wall_ms = 500 }
[roles.solver.tools.search]
repo = "ro"
limits = { wall_ms = 500 }
[roles.solver.tools.hostile]
repo = "rw"
limits = { wall_ms = 500 }
"#;

fn repo_with_fifo() -> Repo {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let fifo = std::ffi::CString::new(repo.path().join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    repo
}

#[test]
fn editor_view_of_a_fifo_stops_at_the_wall_clock_on_the_callers_thread() {
    let repo = repo_with_fifo();
    let h = host_with(Policy::from_toml(POLICY).unwrap());
    let episode = repo.episode(Role::Solver);
    let started = Instant::now();
    let (reply, profile) = profiled(
        &h,
        &episode,
        false,
        "editor",
        r#"{"command":"view","path":"pipe"}"#,
    );
    let err = reply.unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::WallClock), "{err}");
    assert!(
        profile.inline,
        "a standard tool runs on the caller's thread"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The host and this thread are fine afterwards.
    let again = h
        .call(
            &episode,
            "editor",
            r#"{"command":"view","path":"a.txt"}"#,
            Default::default(),
        )
        .unwrap();
    assert_eq!(ok(&again), "     1\ta\n");
}

#[test]
fn search_over_a_repository_with_a_fifo_ends_by_the_wall_clock() {
    let repo = repo_with_fifo();
    let h = host_with(Policy::from_toml(POLICY).unwrap());
    let started = Instant::now();
    // Either the search skips what is not a regular file or the watchdog stops it:
    // it never hangs.
    let _ = h.call(
        &repo.episode(Role::Solver),
        "search",
        r#"{"pattern":"a"}"#,
        Default::default(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn custom_guest_blocked_on_a_fifo_is_stopped_by_the_wall_clock_on_a_worker() {
    let repo = repo_with_fifo();
    let mut h = host_with(Policy::from_toml(POLICY).unwrap());
    load_guest(&mut h, "ssr_testing_hostile", rw());
    let episode = repo.episode(Role::Solver);
    let started = Instant::now();
    let (reply, profile) = profiled(
        &h,
        &episode,
        false,
        "hostile",
        r#"{"attack":"block","path":"pipe"}"#,
    );
    let err = reply.unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::WallClock), "{err}");
    assert!(!profile.inline, "a custom tool runs on a worker thread");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The abandoned worker is interrupted too (its blocked open returns), so the next
    // call can have it back; either way the next call works.
    std::thread::sleep(Duration::from_millis(50));
    let r = h
        .call(
            &episode,
            "hostile",
            r#"{"attack":"read","path":"a.txt"}"#,
            Default::default(),
        )
        .unwrap();
    ok(&r);
}

#[test]
fn no_signal_reaches_the_caller_after_a_wall_clock_stop() {
    let repo = repo_with_fifo();
    let h = host_with(Policy::from_toml(POLICY).unwrap());
    let episode = repo.episode(Role::Solver);
    for _ in 0..3 {
        let e = h
            .call(
                &episode,
                "editor",
                r#"{"command":"view","path":"pipe"}"#,
                Default::default(),
            )
            .unwrap_err();
        assert_eq!(e.limit(), Some(LimitKind::WallClock), "{e}");
        // A plain blocking read on this thread: a stray signal would make it return
        // `Interrupted` instead of the byte written 100 ms later.
        let (mut reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::io::Write::write_all(&mut writer, b"x").unwrap();
        });
        let mut buf = [0u8; 1];
        let n = reader.read(&mut buf).expect("not interrupted");
        assert_eq!((n, buf[0]), (1, b'x'));
        t.join().unwrap();
    }
}

#[test]
fn calls_inside_a_tokio_runtime_run_on_a_worker() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let h = std::sync::Arc::new(host_with(Policy::from_toml(POLICY).unwrap()));
    let episode = repo.episode(Role::Solver);
    let args = r#"{"command":"view","path":"a.txt"}"#;
    let (_, plain) = profiled(&h, &episode, false, "editor", args);
    assert!(plain.inline);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (in_task, in_blocking) = rt.block_on({
        let h = h.clone();
        let episode = episode.clone();
        async move {
            let (r, p) = profiled(&h, &episode, false, "editor", args);
            assert_eq!(ok(&r.unwrap()), "     1\ta\n");
            let blocking = tokio::task::spawn_blocking(move || {
                let (r, p) = profiled(&h, &episode, false, "editor", args);
                assert_eq!(ok(&r.unwrap()), "     1\ta\n");
                p
            })
            .await
            .unwrap();
            (p, blocking)
        }
    });
    assert!(!in_task.inline, "inside an async task: a worker");
    assert!(!in_blocking.inline, "inside spawn_blocking: a worker");
}

#[test]
fn a_blocking_thread_call_runs_inline_in_spawn_blocking_and_fails_cleanly_on_an_async_worker() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let h = std::sync::Arc::new(host_with(Policy::from_toml(POLICY).unwrap()));
    let episode = repo.episode(Role::Solver);
    let args = r#"{"command":"view","path":"a.txt"}"#;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (in_blocking, misused) = rt.block_on({
        let h = h.clone();
        let episode = episode.clone();
        async move {
            let blocking = tokio::task::spawn_blocking({
                let h = h.clone();
                let episode = episode.clone();
                move || {
                    let (r, p) = profiled(&h, &episode, true, "editor", args);
                    assert_eq!(ok(&r.unwrap()), "     1\ta\n");
                    // The plain call works there too.
                    assert_eq!(
                        ok(&h
                            .call(&episode, "editor", args, CallOptions::blocking_thread())
                            .unwrap()),
                        "     1\ta\n"
                    );
                    p
                }
            })
            .await
            .unwrap();
            // Misuse: on the async worker itself.
            let misused = h.call(&episode, "editor", args, CallOptions::blocking_thread());
            (blocking, misused)
        }
    });
    assert!(
        in_blocking.inline,
        "inside spawn_blocking: the caller's thread"
    );
    match misused {
        Err(ssr_toolhost::ToolHostError::Trap { message, .. }) => {
            assert!(message.contains("async"), "{message}")
        }
        other => panic!("expected a trap error, got {other:?}"),
    }
    // The host still works afterwards.
    assert_eq!(
        ok(&h
            .call(&episode, "editor", args, Default::default())
            .unwrap()),
        "     1\ta\n"
    );
}
