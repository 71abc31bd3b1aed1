//! Ordinary execution: exit codes, signals, cwd, environment, read-only paths, output.

use crate::{run, sandbox, script};
use ssr_sandbox::{Command, ExecSpec, LimitHit, Sandbox, StartPath};
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

/// Copies `bash` and the libraries `ldd` lists into `root`, giving a tiny image.
fn tiny_image(root: &std::path::Path) {
    let ldd = std::process::Command::new("ldd")
        .arg("/usr/bin/bash")
        .output()
        .unwrap();
    let mut files = vec![std::path::PathBuf::from("/usr/bin/bash")];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(p.into());
        }
    }
    for f in files {
        let real = f.canonicalize().unwrap();
        for dest in [f.clone(), real.clone()] {
            let d = root.join(dest.strip_prefix("/").unwrap());
            std::fs::create_dir_all(d.parent().unwrap()).unwrap();
            if !d.exists() {
                std::fs::copy(&real, &d).unwrap();
            }
        }
    }
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/image-marker"), "from-the-image").unwrap();
}

#[test]
fn rootfs_dir_is_used_as_the_root() {
    let img = tempfile::tempdir().unwrap();
    tiny_image(img.path());
    let env = ssr_sandbox::Environment {
        rootfs: ssr_sandbox::RootFs::Dir(img.path().to_path_buf()),
        ..ssr_sandbox::Environment::default()
    };
    let sb = ssr_sandbox::BwrapSandbox::new(env).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let spec = ExecSpec::new(
        Command::Argv(vec![
            "/usr/bin/bash".into(),
            "-c".into(),
            "echo $(< /etc/image-marker); [ -e /usr/bin/python3 ] && echo HOST-VISIBLE; echo x > /repo/out; echo done".into(),
        ]),
        ws.path(),
    );
    let o = sb.exec(&spec).unwrap();
    assert_eq!(o.stdout, "from-the-image\ndone\n", "{o:?}");
    assert!(ws.path().join("out").exists());
}

#[test]
fn environment_allowlist_and_explicit_variables() {
    let env = ssr_sandbox::Environment {
        env_allowlist: vec!["PATH".into()],
        env: [("FROM_ENV".to_string(), "1".to_string())].into(),
        ..ssr_sandbox::Environment::default()
    };
    let sb = ssr_sandbox::BwrapSandbox::new(env).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "env | sort");
    spec.env.insert("FROM_SPEC".into(), "2".into());
    let o = sb.exec(&spec).unwrap();
    let names: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    // bash adds PWD, SHLVL and `_` itself.
    for n in &names {
        assert!(
            ["FROM_ENV", "FROM_SPEC", "HOME", "PATH", "PWD", "SHLVL", "_"].contains(n),
            "unexpected variable {n} in {}",
            o.stdout
        );
    }
    assert!(o.stdout.contains("FROM_ENV=1\n") && o.stdout.contains("FROM_SPEC=2\n"));
    assert!(o.stdout.contains("HOME=/tmp\n"));
}

#[test]
fn invalid_specs_are_typed_errors() {
    let ws = tempfile::tempdir().unwrap();
    let mut spec = script(ws.path(), "true");
    spec.cwd = Some("../..".into());
    assert!(matches!(
        sandbox().exec(&spec),
        Err(ssr_sandbox::SandboxError::InvalidSpec(_))
    ));
    let spec = ExecSpec::new(Command::Argv(vec![]), ws.path());
    assert!(matches!(
        sandbox().exec(&spec),
        Err(ssr_sandbox::SandboxError::InvalidSpec(_))
    ));
}

#[test]
fn missing_program_is_a_failed_command_not_an_error() {
    let ws = tempfile::tempdir().unwrap();
    let spec = ExecSpec::new(Command::Argv(vec!["no-such-program-xyz".into()]), ws.path());
    let o = sandbox().exec(&spec).unwrap();
    assert!(!o.success());
    assert!(o.stderr.contains("no-such-program-xyz"), "{o:?}");
}

#[test]
fn sequential_execs_reuse_a_parked_launcher_with_identical_results() {
    let sb = sandbox();
    let mut outs = Vec::new();
    for _ in 0..4 {
        // A fresh workspace each time: a workspace exec'd before gets a ready sandbox
        // (`ready`), and this test is about the parked launcher of any other exec.
        let ws = tempfile::tempdir().unwrap();
        let spec = ExecSpec::new(
            Command::Argv(vec![
                "sh".into(),
                "-c".into(),
                "echo \"$0|$1\"; env | sort; exit 7".into(),
                "it's".into(),
            ]),
            ws.path(),
        );
        outs.push(sb.exec(&spec).unwrap());
        // Let the keeper park the next launcher.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        outs.iter().any(|o| o.start == StartPath::Warm),
        "no exec took the warm path: {outs:?}"
    );
    for o in &outs {
        assert_eq!(o.exit_code, Some(7), "{o:?}");
        assert_eq!(o.stdout, outs[0].stdout, "warm and cold paths differ");
        assert!(o.stdout.starts_with("it's|\n"), "{o:?}");
        assert!(!o.stdout.contains("SSR_SANDBOX_ARGV"), "{o:?}");
    }
}
