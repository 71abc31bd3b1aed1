//! Integration tests of `ssr-sandbox` against the real bubblewrap and cgroups of this
//! host: ordinary behaviour (`exec`), limits (`limits`), and attacks that must end
//! blocked or bounded (`red_team`), and sandboxes set up ahead (`ready`). The docker backend's tests skip with a printed
//! reason when no engine answers (`docker`).

mod docker;
mod exec;
mod limits;
mod ready;
mod red_team;

use ssr_sandbox::{BwrapSandbox, Command, Environment, ExecOutcome, ExecSpec, Sandbox};
use std::path::Path;
use std::time::Duration;

/// A bwrap sandbox over the default environment.
pub fn sandbox() -> BwrapSandbox {
    BwrapSandbox::new(Environment::default()).expect("bwrap must work on the test host")
}

/// A spec running `script` under bash in `ws`, with test-sized limits.
pub fn script(ws: &Path, script: &str) -> ExecSpec {
    let mut spec = ExecSpec::new(Command::Script(script.into()), ws);
    spec.limits.timeout = Duration::from_secs(10);
    spec.limits.memory_bytes = Some(256 << 20);
    spec.limits.pids = Some(64);
    spec
}

/// Runs `script` in a fresh temporary workspace.
pub fn run(script_text: &str) -> ExecOutcome {
    let ws = tempfile::tempdir().unwrap();
    sandbox().exec(&script(ws.path(), script_text)).unwrap()
}
