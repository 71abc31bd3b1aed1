//! GPU parity tests: every kernel against its CPU twin on fresh random inputs, with a
//! tolerance per dtype (each commented with how it was chosen). Without a GPU each test
//! prints why it skipped and passes; the no-GPU behaviour itself is tested here too.
//!
//! One module per concern: the row pass from logits ([`logprobs`]), the fused LM head
//! ([`lm_head`]), advantages and the policy loss ([`rl`]), the model's element-wise ops
//! and attention ([`model_ops`]), and whole training and generation on the device
//! ([`training`]: AdamW, a sequence's backward, NCCL, the decoder, a train step, in the
//! f32 reference precision), the same in the default bf16 precision ([`bf16_mode`]: logits,
//! loss, gradients, three optimizer steps, plus the LM head's single-GEMM pass), and the
//! real SmolLM2-135M's logits and loss ([`smollm2`]).
//!
//! Run on a GPU machine with `scripts/gpu_check.sh` (the carried test binary), or on the
//! emulated device (`just gpu-emu`, gpu-emu/). Under `SSR_REQUIRE_GPU=1` (both set it)
//! every skip path fails instead: no device, no model file, no libnccl, no NVRTC.
//! [`emulator`] holds the emulated device's own checks (each refusal names its check).
#![cfg(feature = "cuda")]

mod bf16_mode;
mod emulator;
mod lm_head;
mod logprobs;
mod model_ops;
mod ptxas;
mod rl;
mod smollm2;
mod training;

use half::bf16;
use ssr_trainer::gpu::{Gpu, GpuError, LibraryProbe};

/// Whether a skip is a failure: `SSR_REQUIRE_GPU=1` (set by `just gpu-emu` and
/// `scripts/gpu_check.sh run`), where a test that does not run proves nothing.
pub(crate) fn gpu_required() -> bool {
    std::env::var("SSR_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Prints why `test` is skipped, or fails it under `SSR_REQUIRE_GPU=1`.
pub(crate) fn skip(test: &str, reason: &str) {
    assert!(
        !gpu_required(),
        "{test}: SSR_REQUIRE_GPU=1 but the test would skip: {reason}"
    );
    eprintln!("skipping {test}: {reason}");
}

/// The GPU, or `None` after printing why the test is skipped. Any failure other than
/// "no GPU" is a real failure of the backend and fails the test.
pub(crate) fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match Gpu::open() {
        Ok(g) => Some(g),
        Err(e @ GpuError::NoGpu { .. }) => {
            skip(test, &e.to_string());
            None
        }
        Err(e) => panic!("{test}: opening the GPU failed: {e}"),
    }
}

/// The SmolLM2 model file, or `None` after printing why (failing under
/// `SSR_REQUIRE_GPU=1`).
pub(crate) fn smollm2_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let path = crate::model_files::smollm2(test);
    if path.is_none() {
        skip(test, "the SmolLM2 model file is missing");
    }
    path
}

pub(crate) fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

pub(crate) fn from_bf16(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

pub(crate) fn random_targets(r: &mut rand_chacha::ChaCha8Rng, n: usize, vocab: usize) -> Vec<u32> {
    use rand::Rng;
    (0..n).map(|_| r.gen_range(0..vocab as u32)).collect()
}

#[test]
fn open_without_gpu_is_a_typed_error_not_a_panic() {
    // On a machine without CUDA this must be NoGpu; on a GPU machine it must open, and
    // under SSR_REQUIRE_GPU=1 it must open.
    if gpu_required() {
        Gpu::open().expect("SSR_REQUIRE_GPU=1 but no GPU opened");
    }
    match Gpu::open() {
        Ok(g) => {
            assert!(g.info().compute_capability.0 >= 7, "{:?}", g.info());
            assert!(g.arch().starts_with("--gpu-architecture=sm_"));
        }
        Err(e) => assert!(e.is_no_gpu(), "expected NoGpu, got {e}"),
    }
    let probe = LibraryProbe::run();
    if !probe.driver {
        assert!(
            probe
                .require_compute()
                .unwrap_err()
                .to_string()
                .contains("libcuda")
        );
    }
}

#[test]
fn every_kernel_source_compiles_with_nvrtc() {
    // Needs only libnvrtc (no GPU): `pip download nvidia-cuda-nvrtc==13.0.*`, unzip, and put
    // its lib folder on LD_LIBRARY_PATH to run this on a CPU-only machine.
    if !LibraryProbe::run().nvrtc {
        skip(
            "every_kernel_source_compiles_with_nvrtc",
            "libnvrtc not found",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let arch = ssr_trainer::gpu::compile::arch_flag(9, 0);
    for src in ssr_trainer::gpu::compile::KernelSource::ALL {
        let ptx = ssr_trainer::gpu::compile::compile(src, &arch, dir.path())
            .unwrap_or_else(|e| panic!("{}: {e}", src.file_name()));
        assert!(ptx.contains(".target sm_90"), "{}", src.file_name());
        // Every kernel of this source is emitted under its unmangled `extern "C"` name.
        for k in ssr_trainer::gpu::compile::Kernel::ALL
            .into_iter()
            .filter(|k| k.source() == src)
        {
            assert!(
                ptx.contains(&format!(".entry {}(", k.symbol())),
                "{} lacks the entry {}",
                src.file_name(),
                k.symbol()
            );
        }
        // The second call is served from the cache.
        let again = ssr_trainer::gpu::compile::compile(src, &arch, dir.path()).unwrap();
        assert_eq!(ptx, again);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        ssr_trainer::gpu::compile::KernelSource::ALL.len()
    );
}
