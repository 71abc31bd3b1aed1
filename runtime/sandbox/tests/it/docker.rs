//! The docker/podman backend against a real engine. This host kind has none (no docker
//! daemon; podman's runtime fails on rlimits, NOTES.md): the tests print why they skip.
//! The command line itself is unit-tested in `src/docker.rs`.

use ssr_sandbox::{
    Command, DockerSandbox, Environment, ExecSpec, LimitHit, RootFs, Sandbox, SandboxError,
};
use std::time::Duration;

/// An image small engines usually have or can pull; override with `SSR_TEST_IMAGE`.
fn image() -> String {
    std::env::var("SSR_TEST_IMAGE").unwrap_or_else(|_| "debian:bookworm-slim".into())
}

fn engine() -> Option<DockerSandbox> {
    let env = Environment {
        rootfs: RootFs::Image(image()),
        ..Environment::default()
    };
    match DockerSandbox::new(env) {
        Ok(sb) => Some(sb),
        Err(e) => {
            eprintln!("skipped: no container engine answers here: {e}");
            None
        }
    }
}

/// Runs `spec`, or reports a skip when the engine cannot run the image at all.
fn exec(sb: &DockerSandbox, spec: &ExecSpec) -> Option<ssr_sandbox::ExecOutcome> {
    match sb.exec(spec) {
        Ok(o) => Some(o),
        Err(SandboxError::Unavailable { reason, .. }) => {
            eprintln!("skipped: the engine could not run {}: {reason}", image());
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn container_exec_reports_exit_code_output_and_no_network() {
    let Some(sb) = engine() else { return };
    let ws = tempfile::tempdir().unwrap();
    let spec = ExecSpec::new(
        Command::Script(
            "echo hi; touch made; (echo > /dev/tcp/1.1.1.1/80) 2>/dev/null && echo NET; exit 4"
                .into(),
        ),
        ws.path(),
    );
    let Some(o) = exec(&sb, &spec) else { return };
    assert_eq!(o.exit_code, Some(4), "{o:?}");
    assert_eq!(o.stdout, "hi\n");
    assert!(ws.path().join("made").exists());
}

#[test]
fn container_timeout_kills_the_container() {
    let Some(sb) = engine() else { return };
    let ws = tempfile::tempdir().unwrap();
    let mut spec = ExecSpec::new(Command::Script("echo start; sleep 60".into()), ws.path());
    spec.limits.timeout = Duration::from_secs(3);
    let Some(o) = exec(&sb, &spec) else { return };
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.limit_hit, Some(LimitHit::Timeout));
    assert_eq!(o.stdout, "start\n");
}
