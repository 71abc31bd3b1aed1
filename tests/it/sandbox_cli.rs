//! `ssr sandbox exec|probe` and `ssr bench sandbox` as a user runs them.

use crate::{json, ssr, ssr_output};
use std::path::Path;
use std::time::{Duration, Instant};

fn exec_args<'a>(repo: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["sandbox", "exec", "--repo", repo.to_str().unwrap()];
    a.extend_from_slice(rest);
    a
}

#[test]
fn exec_json_has_the_documented_fields_and_mirrors_the_exit_code() {
    let ws = tempfile::tempdir().unwrap();
    let out = ssr_output(&exec_args(
        ws.path(),
        &[
            "--json",
            "--",
            "bash",
            "-c",
            "echo hi; echo err >&2; exit 3",
        ],
    ));
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    for field in [
        "exit_code",
        "signal",
        "timed_out",
        "truncated",
        "limit_hit",
        "stdout",
        "stderr",
        "wall_ms",
        "backend",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["signal"], serde_json::Value::Null);
    assert_eq!(v["stdout"], "hi\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["backend"], "bwrap");
}

#[test]
fn exec_human_output_is_the_commands_output_then_a_status_line() {
    let ws = tempfile::tempdir().unwrap();
    let out = ssr_output(&exec_args(ws.path(), &["--", "sh", "-c", "echo hello"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("[sandbox bwrap] exit 0 in "), "{err}");
}

#[test]
fn exec_timeout_exits_124_with_partial_output() {
    let ws = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = ssr_output(&exec_args(
        ws.path(),
        &[
            "--timeout",
            "1",
            "--json",
            "--",
            "bash",
            "-c",
            "echo partial; sleep 30",
        ],
    ));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(124));
    let v = json(&out);
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["limit_hit"], "timeout");
    assert_eq!(v["stdout"], "partial\n");
}

#[test]
fn exec_signal_exits_128_plus_n() {
    let ws = tempfile::tempdir().unwrap();
    let out = ssr_output(&exec_args(
        ws.path(),
        &["--json", "--", "bash", "-c", "kill -TERM $$"],
    ));
    assert_eq!(out.status.code(), Some(143));
    assert_eq!(json(&out)["signal"], 15);
}

#[test]
fn exec_ro_path_cannot_be_written() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("oracle.py"), "keep\n").unwrap();
    let out = ssr_output(&exec_args(
        ws.path(),
        &[
            "--ro",
            "oracle.py",
            "--json",
            "--",
            "bash",
            "-c",
            "echo bad > oracle.py",
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json(&out)["stderr"]
            .as_str()
            .unwrap()
            .contains("Read-only file system")
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("oracle.py")).unwrap(),
        "keep\n"
    );
}

#[test]
fn exec_memory_and_pids_flags_bound_the_command() {
    let ws = tempfile::tempdir().unwrap();
    let out = ssr_output(&exec_args(
        ws.path(),
        &[
            "--memory",
            "64",
            "--pids",
            "16",
            "--timeout",
            "10",
            "--json",
            "--",
            "python3",
            "-c",
            "b = bytearray(300 << 20)",
        ],
    ));
    let v = json(&out);
    assert_eq!(v["limit_hit"], "memory", "{v}");
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn exec_does_not_leak_the_callers_environment() {
    let ws = tempfile::tempdir().unwrap();
    let out = ssr()
        .args(exec_args(
            ws.path(),
            &[
                "--json",
                "--env",
                "GIVEN=yes",
                "--",
                "bash",
                "-c",
                "env; tr '\\0' '\\n' < /proc/1/environ",
            ],
        ))
        .env("SSR_CLI_SECRET", "s3cr3t-value")
        .output()
        .unwrap();
    let v = json(&out);
    let stdout = v["stdout"].as_str().unwrap();
    assert!(stdout.contains("GIVEN=yes"), "{stdout}");
    assert!(!stdout.contains("s3cr3t-value"), "{stdout}");
}

#[test]
fn bad_arguments_are_a_clear_error() {
    let out = ssr_output(&[
        "sandbox",
        "exec",
        "--repo",
        "/nonexistent/dir",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workspace /nonexistent/dir"));
    let out = ssr_output(&[
        "sandbox",
        "exec",
        "--repo",
        "/tmp",
        "--timeout",
        "-1",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Pids of processes whose command line contains `token`.
fn processes_with(token: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(token))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn killing_ssr_kills_the_sandbox() {
    let ws = tempfile::tempdir().unwrap();
    let token = format!("ssr-orphan-token-{}", std::process::id());
    let script = format!("sleep 100 & while :; do echo x >> mark; sleep 0.05; done # {token}");
    let mut child = ssr()
        .args(exec_args(
            ws.path(),
            &["--timeout", "60", "--", "bash", "-c", &script],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mark = ws.path().join("mark");
    let until = Instant::now() + Duration::from_secs(10);
    while !mark.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mark.exists(), "the sandboxed command never started");
    assert!(!processes_with(&token).is_empty());
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while !processes_with(&token).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with(&token),
        Vec::<u32>::new(),
        "sandbox processes outlived ssr"
    );
    let size = std::fs::metadata(&mark).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::metadata(&mark).unwrap().len(), size);
}

#[test]
fn probe_reports_bwrap_cgroups_and_engines() {
    let out = ssr_output(&["sandbox", "probe", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["bwrap"]["usable"], true);
    assert!(v["bwrap"]["version"].as_str().is_some());
    assert!(["v1", "v2", "v1+v2", "none"].contains(&v["cgroup"]["version"].as_str().unwrap()));
    assert_eq!(v["engines"].as_array().unwrap().len(), 2);
    let text = ssr_output(&["sandbox", "probe"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("bwrap:"));
}

#[test]
fn bench_sandbox_reports_both_sides_and_the_ratio() {
    let out = ssr_output(&["bench", "sandbox", "--iterations", "3", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["iterations"], 3);
    assert!(v["plain"]["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["sandbox"]["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["ratio_median"].as_f64().is_some());
}

#[test]
fn every_sandbox_command_has_help() {
    for args in [
        &["sandbox", "exec", "--help"][..],
        &["sandbox", "probe", "--help"],
        &["bench", "sandbox", "--help"],
    ] {
        let out = ssr_output(args);
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}
