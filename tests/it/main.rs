//! Cross-crate integration tests of the `ssr` program, one module per command group.
//! They run the built binary (`CARGO_BIN_EXE_ssr`) as a user would.

mod demos_cli;
mod game_cli;
mod game_image;
mod gpu_e2e;
mod heldout_cli;
mod learn_cli;
mod sandbox_cli;
mod tidy;
mod tools_cli;
mod train_cli;

use std::process::{Command, Output};

/// The `ssr` binary under test, with a cleared environment except `PATH`.
pub fn ssr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssr"));
    c.env_clear();
    if let Ok(p) = std::env::var("PATH") {
        c.env("PATH", p);
    }
    c
}

/// Runs `ssr` with `args` and returns its output.
pub fn ssr_output(args: &[&str]) -> Output {
    ssr().args(args).output().expect("ssr runs")
}

/// Runs `ssr` with `args` and `HOME` (the tool host's component cache lives under it):
/// exit code, stdout, stderr.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let out = ssr()
        .env("HOME", home)
        .args(args)
        .output()
        .expect("ssr runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path as a command-line argument.
pub fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The embedded model, or `None` (with the reason printed) where bubblewrap or the
/// model is missing: the tests that need both skip there (`just setup` provides them).
pub fn embedded_model_or_skip() -> Option<std::path::PathBuf> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !std::path::Path::new("/usr/bin/bwrap").exists() || !model.exists() {
        eprintln!("skipped: needs bubblewrap and the embedded model (just setup)");
        return None;
    }
    Some(model)
}

/// The `loss` of each JSON line a training command (`ssr sft --json`) printed.
pub fn step_losses(out: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Parses the single JSON object `ssr ... --json` printed.
pub fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}
mod agent_openai_python;
mod agent_report;
mod env_server;
mod selfplay_embedded;
mod selfplay_image;
mod selfplay_model_down;
mod selfplay_own_repo;
mod selfplay_scripted;
mod selfplay_train;
mod serve_chat;
