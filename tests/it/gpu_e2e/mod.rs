//! The whole path on a CUDA device, through the `ssr` program, on the tiny model
//! (`ssr_trainer::testing::tiny_model`: 2 layers, SmolLM2's vocabulary and tokenizer):
//! `ssr train --device cuda` against `--device cpu` ([`train`]), a self-play round that
//! trains on the device ([`selfplay`]), and greedy generation in f32 on both
//! ([`generate`]).
//!
//! In CI they run on the emulated device (`scripts/gpu_emu.sh ci`, so `just test`),
//! where the `ssr` processes inherit the emulator's library path, its sanitizer runtime
//! and the filled kernel cache; on a GPU machine they run on the GPU. Without a device
//! each test prints why it skips and passes, except under `SSR_REQUIRE_GPU=1`, where a
//! skip fails (as the trainer's `gpu::` tests do).

mod generate;
mod selfplay;
mod train;

use ssr_trainer::gpu::{Gpu, GpuError};
use ssr_trainer::testing::tiny_model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where a test runs: the device's name and the tiny model written for it.
pub(crate) struct OnDevice {
    /// The CUDA device 0's name (`ssr-emu` on the emulator).
    pub device_name: String,
    pub model: PathBuf,
    pub weights: ssr_trainer::Weights,
    dir: tempfile::TempDir,
}

impl OnDevice {
    /// The test's scratch directory (removed with it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Prints why `test` skips, or fails it under `SSR_REQUIRE_GPU=1`.
fn skip(test: &str, reason: &str) {
    assert!(
        !std::env::var("SSR_REQUIRE_GPU").is_ok_and(|v| v == "1"),
        "{test}: SSR_REQUIRE_GPU=1 but the test would skip: {reason}"
    );
    eprintln!("skipping {test}: {reason}");
}

/// A CUDA device and the tiny model in a fresh directory, or `None` after printing why
/// the test skips (no device; the embedded model, whose tokenizer the tiny model takes,
/// missing). A device that is present but fails to open fails the test.
pub(crate) fn on_device_or_skip(test: &str) -> Option<OnDevice> {
    let device_name = match Gpu::open() {
        Ok(g) => g.info().name.clone(),
        Err(e @ GpuError::NoGpu { .. }) => {
            skip(
                test,
                &format!("{e} (scripts/gpu_emu.sh runs it on the emulated device)"),
            );
            return None;
        }
        Err(e) => panic!("{test}: opening the GPU failed: {e}"),
    };
    let source =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !source.is_file() {
        skip(
            test,
            "the embedded model (the tokenizer's source) is missing: just setup",
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let weights = tiny_model::write(&source, &model, tiny_model::SEED).unwrap();
    Some(OnDevice {
        device_name,
        model,
        weights,
        dir,
    })
}

/// Runs `ssr` with `args` from the project root. The environment is inherited: on the
/// emulated device the child needs its library path, preloaded sanitizer runtime and
/// kernel cache.
pub(crate) fn ssr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssr"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("ssr runs")
}

/// `o`'s stdout, failing the test with both streams when it did not succeed.
pub(crate) fn succeeded(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
