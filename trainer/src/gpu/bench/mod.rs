//! `ssr bench kernels`: times the log-prob row pass and the fused LM head at SmolLM2 and
//! 7B-like shapes, against the measured device copy bandwidth, a plain cuBLAS GEMM of the
//! same size, and PyTorch eager run side by side as a subprocess (`scripts/bench_torch.py`).
//!
//! Owns: the benchmark cases, their timing (device events, warm-up, median of repeats),
//! the ceilings, and the report; the training and generation benchmark of `ssr bench
//! train` is in [`train`]. Does not own: printing (the CLI) or any kernel.

mod train;
pub use train::{TorchTrainReport, TrainBenchOptions, TrainBenchReport, run_train_bench};

use std::path::PathBuf;
use std::process::Command;

use cudarc::driver::{CudaSlice, DeviceRepr, sys::CUevent_flags};
use half::bf16;
use serde::{Deserialize, Serialize};

use crate::gpu::blas::Gemm;
use crate::gpu::context::Gpu;
use crate::gpu::error::GpuError;
use crate::gpu::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use crate::gpu::nvtx::Range;

/// A model's LM-head shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadShape {
    pub name: &'static str,
    pub vocab: usize,
    pub dim: usize,
}

/// SmolLM2-135M (vocab 49,152, width 576) and a Qwen2-7B-like head (152,064 × 3,584).
pub const SHAPES: [HeadShape; 2] = [
    HeadShape {
        name: "smollm2",
        vocab: 49_152,
        dim: 576,
    },
    HeadShape {
        name: "7b",
        vocab: 152_064,
        dim: 3_584,
    },
];

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelBenchOptions {
    pub shapes: Vec<HeadShape>,
    pub tokens: Vec<usize>,
    /// Timed repeats per case (after 3 warm-up runs); the median is reported.
    pub reps: usize,
    /// LM-head workspace budget in bytes (bounds the chunk of logits in memory).
    pub workspace_bytes: usize,
    /// The PyTorch baseline script; `None` skips the baseline.
    pub torch_script: Option<PathBuf>,
    pub python: String,
}

impl Default for KernelBenchOptions {
    fn default() -> Self {
        KernelBenchOptions {
            shapes: SHAPES.to_vec(),
            tokens: vec![4096, 16384],
            reps: 20,
            workspace_bytes: 1 << 30,
            torch_script: Some(PathBuf::from("scripts/bench_torch.py")),
            python: "python3".into(),
        }
    }
}

/// One timed case, ours and (when available) PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchCase {
    /// `logprobs_fwd`, `logprobs_fwd_bwd` or `lm_head_fwd_bwd`.
    pub op: String,
    pub shape: String,
    pub tokens: usize,
    pub vocab: usize,
    pub dim: usize,
    pub ms: f64,
    /// Minimum bytes the op must move through device memory.
    pub bytes: f64,
    pub gb_per_s: f64,
    /// `gb_per_s` over the measured device copy bandwidth.
    pub frac_of_copy_bw: f64,
    /// Floating-point operations (GEMMs only; 0 for the row pass).
    pub flops: f64,
    pub tflop_per_s: f64,
    /// `tflop_per_s` over a plain cuBLAS bf16 GEMM of the same m×n×k (0 when no GEMM).
    pub frac_of_gemm: f64,
    /// Device memory the case allocated (inputs, outputs, workspace).
    pub device_bytes: usize,
    pub torch_ms: Option<f64>,
    pub torch_peak_bytes: Option<usize>,
    /// `torch_ms / ms` (> 1: ours is faster).
    pub speedup_vs_torch: Option<f64>,
}

/// The whole report (`ssr bench kernels --json` prints this object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelBenchReport {
    pub device: String,
    pub compute_capability: (i32, i32),
    /// Device-to-device copy, bytes read + written per second.
    pub copy_gb_per_s: f64,
    pub cases: Vec<BenchCase>,
    /// Why the PyTorch baseline is missing, when it is.
    pub torch_error: Option<String>,
}

/// The PyTorch script's output.
#[derive(Debug, Deserialize)]
struct TorchReport {
    cases: Vec<TorchCase>,
}

#[derive(Debug, Deserialize)]
struct TorchCase {
    op: String,
    shape: String,
    tokens: usize,
    ms: f64,
    peak_bytes: usize,
}

/// Times `f` with device events: 3 warm-up calls, then `reps` timed ones; median in ms.
pub fn time_ms(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut() -> Result<(), GpuError>,
) -> Result<f64, GpuError> {
    for _ in 0..3 {
        f()?;
    }
    gpu.synchronize()?;
    let mut times = Vec::with_capacity(reps.max(1));
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    for _ in 0..reps.max(1) {
        let start = gpu
            .stream()
            .record_event(flags)
            .map_err(GpuError::driver("record event"))?;
        f()?;
        let end = gpu
            .stream()
            .record_event(flags)
            .map_err(GpuError::driver("record event"))?;
        end.synchronize()
            .map_err(GpuError::driver("event synchronize"))?;
        times.push(f64::from(
            start
                .elapsed_ms(&end)
                .map_err(GpuError::driver("event elapsed"))?,
        ));
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Fills a device buffer with uniform values in `[-scale, scale)` from a repeated host tile
/// (never zeros: those hide unwritten outputs and can run faster than real data).
fn fill_random<T: DeviceRepr + Copy>(
    gpu: &Gpu,
    buf: &mut CudaSlice<T>,
    scale: f32,
    seed: u64,
    conv: impl Fn(f32) -> T,
) -> Result<(), GpuError> {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let tile_len = buf.len().min(1 << 23);
    let tile: Vec<T> = (0..tile_len)
        .map(|_| conv(r.gen_range(-scale..scale)))
        .collect();
    let mut off = 0;
    while off < buf.len() {
        let k = tile_len.min(buf.len() - off);
        let mut dst = buf.slice_mut(off..off + k);
        gpu.stream()
            .memcpy_htod(&tile[..k], &mut dst)
            .map_err(GpuError::driver("fill"))?;
        off += k;
    }
    Ok(())
}

fn random_targets(
    gpu: &Gpu,
    n: usize,
    vocab: usize,
    seed: u64,
) -> Result<CudaSlice<u32>, GpuError> {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let t: Vec<u32> = (0..n).map(|_| r.gen_range(0..vocab as u32)).collect();
    gpu.upload(&t)
}

/// Device copy bandwidth (read + write bytes per second) over a 1 GiB buffer.
pub fn copy_bandwidth(gpu: &Gpu, reps: usize) -> Result<f64, GpuError> {
    let n = 1usize << 28; // f32 elements = 1 GiB
    let mut src = gpu.zeros::<f32>(n)?;
    fill_random(gpu, &mut src, 1.0, 7, |x| x)?;
    let mut dst = gpu.zeros::<f32>(n)?;
    let _r = Range::new("bench copy");
    let ms = time_ms(gpu, reps, || {
        gpu.stream()
            .memcpy_dtod(&src, &mut dst)
            .map_err(GpuError::driver("copy"))
    })?;
    Ok(2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9)
}

/// Runs every case; `progress` gets one line per step (the CLI shows it on stderr).
pub fn run_kernel_bench(
    gpu: &Gpu,
    opts: &KernelBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelBenchReport, GpuError> {
    gpu.warm_up()?;
    progress("measuring device copy bandwidth");
    let copy = copy_bandwidth(gpu, opts.reps)?;
    let mut cases = Vec::new();
    for shape in &opts.shapes {
        for &n in &opts.tokens {
            progress(&format!("{} × {} tokens: log-prob row pass", shape.name, n));
            cases.extend(bench_row_pass(gpu, shape, n, opts.reps, copy)?);
            progress(&format!("{} × {} tokens: fused LM head", shape.name, n));
            cases.push(bench_lm_head(gpu, shape, n, opts, copy)?);
        }
    }
    let torch_error = match &opts.torch_script {
        None => Some("baseline not requested".to_string()),
        Some(script) => {
            progress("running the PyTorch eager baseline");
            match run_torch(&opts.python, script, opts) {
                Ok(t) => {
                    merge_torch(&mut cases, t);
                    None
                }
                Err(e) => Some(e),
            }
        }
    };
    let info = gpu.info();
    Ok(KernelBenchReport {
        device: info.name.clone(),
        compute_capability: info.compute_capability,
        copy_gb_per_s: copy,
        cases,
        torch_error,
    })
}

fn bench_row_pass(
    gpu: &Gpu,
    shape: &HeadShape,
    n: usize,
    reps: usize,
    copy: f64,
) -> Result<Vec<BenchCase>, GpuError> {
    let v = shape.vocab;
    let _r = Range::new(format!("bench logprobs {} {n}", shape.name));
    let mut logits = gpu.zeros::<bf16>(n * v)?;
    fill_random(gpu, &mut logits, 8.0, 1, bf16::from_f32)?;
    let targets = random_targets(gpu, n, v, 2)?;
    let mut lp = gpu.zeros::<f32>(n)?;
    let mut h = gpu.zeros::<f32>(n)?;
    let mut dlp = gpu.zeros::<f32>(n)?;
    fill_random(gpu, &mut dlp, 1.0, 3, |x| x)?;
    let mut dlogits = gpu.zeros::<bf16>(n * v)?;
    let device_bytes = 2 * n * v * 2 + n * 16;
    let fwd = time_ms(gpu, reps, || {
        gpu.logprobs_from_logits(&logits, &targets, v, 1.0, &mut lp, &mut h)
    })?;
    // Forward and gradient in one launch: read, read again, write the gradient. Timed into
    // a separate buffer (same traffic as in place) so every repeat reads the same logits.
    let fused = time_ms(gpu, reps, || {
        gpu.logprobs_from_logits_backward(
            &logits,
            &targets,
            v,
            1.0,
            &dlp,
            None,
            &mut dlogits,
            &mut lp,
            &mut h,
        )
    })?;
    let mk = |op: &str, ms: f64, bytes: f64| BenchCase {
        op: op.into(),
        shape: shape.name.into(),
        tokens: n,
        vocab: v,
        dim: shape.dim,
        ms,
        bytes,
        gb_per_s: bytes / (ms * 1e-3) / 1e9,
        frac_of_copy_bw: bytes / (ms * 1e-3) / 1e9 / copy,
        flops: 0.0,
        tflop_per_s: 0.0,
        frac_of_gemm: 0.0,
        device_bytes,
        torch_ms: None,
        torch_peak_bytes: None,
        speedup_vs_torch: None,
    };
    let row = (n * v * 2) as f64;
    Ok(vec![
        mk("logprobs_fwd", fwd, row),
        mk("logprobs_fwd_bwd", fused, 3.0 * row),
    ])
}

fn bench_lm_head(
    gpu: &Gpu,
    shape: &HeadShape,
    n: usize,
    opts: &KernelBenchOptions,
    copy: f64,
) -> Result<BenchCase, GpuError> {
    let (v, d) = (shape.vocab, shape.dim);
    let _r = Range::new(format!("bench lm_head {} {n}", shape.name));
    let mut hidden = gpu.zeros::<bf16>(n * d)?;
    fill_random(gpu, &mut hidden, 1.0, 4, bf16::from_f32)?;
    let mut weight = gpu.zeros::<bf16>(v * d)?;
    fill_random(gpu, &mut weight, 0.05, 5, bf16::from_f32)?;
    let targets = random_targets(gpu, n, v, 6)?;
    let mut dlp = gpu.zeros::<f32>(n)?;
    fill_random(gpu, &mut dlp, 1.0, 7, |x| x)?;
    let mut lp = gpu.zeros::<f32>(n)?;
    let mut en = gpu.zeros::<f32>(n)?;
    let mut dh = gpu.zeros::<f32>(n * d)?;
    let mut dw = gpu.zeros::<f32>(v * d)?;
    let mut ws = LmHeadWorkspace::new(gpu, v, opts.workspace_bytes)?;
    let device_bytes = (n * d + v * d) * 2 + n * 16 + (n * d + v * d) * 4 + ws.bytes();
    let shape_l = LmHeadShape {
        tokens: n,
        dim: d,
        vocab: v,
        temperature: 1.0,
    };
    let ms = time_ms(gpu, opts.reps, || {
        let inp = LmHeadInputs {
            hidden: &hidden,
            weight: &weight,
            targets: &targets,
            dlogprob: Some(&dlp),
            dentropy: None,
        };
        let mut out = LmHeadOutputs {
            logprob: &mut lp,
            entropy: &mut en,
            dhidden: Some(&mut dh),
            dweight: Some(&mut dw),
        };
        gpu.lm_head_loss(&shape_l, &inp, &mut out, &mut ws)
    })?;
    drop(ws);
    // The ceiling: one plain cuBLAS bf16 GEMM of the forward's size, f32 output.
    let g = Gemm {
        m: n,
        n: v,
        k: d,
        a_trans: false,
        b_trans: true,
        alpha: 1.0,
        beta: 0.0,
    };
    let gemm_ms = {
        let mut c = gpu.zeros::<f32>(n * v)?;
        time_ms(gpu, opts.reps, || gpu.gemm(&g, &hidden, &weight, &mut c))?
    };
    let flops = 3.0 * g.flops();
    let tflops = flops / (ms * 1e-3) / 1e12;
    let gemm_tflops = g.flops() / (gemm_ms * 1e-3) / 1e12;
    // Bytes the op must move at least: inputs once, gradients once (f32 dW read+write).
    let bytes = ((n * d + v * d) * 2 + (n * d) * 4 + 2 * (v * d) * 4) as f64;
    Ok(BenchCase {
        op: "lm_head_fwd_bwd".into(),
        shape: shape.name.into(),
        tokens: n,
        vocab: v,
        dim: d,
        ms,
        bytes,
        gb_per_s: bytes / (ms * 1e-3) / 1e9,
        frac_of_copy_bw: bytes / (ms * 1e-3) / 1e9 / copy,
        flops,
        tflop_per_s: tflops,
        frac_of_gemm: tflops / gemm_tflops,
        device_bytes,
        torch_ms: None,
        torch_peak_bytes: None,
        speedup_vs_torch: None,
    })
}

fn run_torch(
    python: &str,
    script: &std::path::Path,
    opts: &KernelBenchOptions,
) -> Result<TorchReport, String> {
    let shapes: Vec<&str> = opts.shapes.iter().map(|s| s.name).collect();
    let tokens: Vec<String> = opts.tokens.iter().map(|t| t.to_string()).collect();
    let args = [
        "kernels".to_string(),
        "--shapes".into(),
        shapes.join(","),
        "--tokens".into(),
        tokens.join(","),
        "--reps".into(),
        opts.reps.to_string(),
    ];
    run_python(python, script, &args)
}

fn merge_torch(cases: &mut [BenchCase], t: TorchReport) {
    for c in cases.iter_mut() {
        if let Some(tc) = t
            .cases
            .iter()
            .find(|tc| tc.op == c.op && tc.shape == c.shape && tc.tokens == c.tokens)
        {
            c.torch_ms = Some(tc.ms);
            c.torch_peak_bytes = Some(tc.peak_bytes);
            c.speedup_vs_torch = Some(tc.ms / c.ms);
        }
    }
}

pub(super) fn run_python<T: serde::de::DeserializeOwned>(
    python: &str,
    script: &std::path::Path,
    args: &[String],
) -> Result<T, String> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("could not run {python} {}: {e}", script.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(800)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{} exited with {}: {tail}",
            script.display(),
            out.status
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unreadable baseline output: {e}"))
}
