//! `ssr bench kernels` and `ssr bench train`: argument parsing and printing for the GPU
//! benchmarks. The cases, timing and PyTorch baselines live in `ssr_trainer::gpu::bench`.
//!
//! Without a usable GPU both print why and measure nothing: exit status
//! [`NO_GPU_EXIT`] (3), distinct from 0 (measured) and 2 (any other error), and with
//! `--json` the object `{"status": "no_gpu", "benchmark": "kernels"|"train", "reason"}`
//! (a measured run's object has no "status" key).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ssr_trainer::gpu::bench::{self, KernelBenchOptions, KernelBenchReport};
use ssr_trainer::gpu::{Gpu, GpuError};

/// Exit status of `ssr bench kernels` / `ssr bench train` on a machine without a usable
/// GPU (nothing was measured).
pub const NO_GPU_EXIT: u8 = 3;

/// The `--json` object of a benchmark that found no GPU.
#[derive(serde::Serialize)]
struct NoGpuReport<'a> {
    status: &'static str,
    benchmark: &'a str,
    reason: String,
}

/// Opens the GPU, or reports "no GPU" (module doc) and returns the exit code to end with.
fn open_or_report(benchmark: &str, json: bool) -> anyhow::Result<Result<Gpu, ExitCode>> {
    match Gpu::open() {
        // An emulated device runs kernels on the CPU: any figure would be meaningless.
        Ok(g) if g.is_emulated() => anyhow::bail!(
            "`ssr bench {benchmark}` refuses the emulated device {:?} (gpu-emu/): it runs kernels on the CPU and gives no performance figures; run it on a real GPU",
            g.info().name
        ),
        Ok(g) => Ok(Ok(g)),
        Err(GpuError::NoGpu { reason }) => {
            if json {
                let r = NoGpuReport {
                    status: "no_gpu",
                    benchmark,
                    reason,
                };
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                eprintln!(
                    "`ssr bench {benchmark}` needs a CUDA GPU and found none ({reason}); nothing was measured (exit status {NO_GPU_EXIT})."
                );
            }
            Ok(Err(ExitCode::from(NO_GPU_EXIT)))
        }
        Err(e) => Err(e).context("opening the GPU"),
    }
}

/// Times the log-prob row pass and the fused LM head (forward + backward) at SmolLM2
/// (vocab 49,152, width 576) and 7B-like (152,064 × 3,584) shapes for 4,096 and 16,384
/// tokens, against the measured device copy bandwidth, a plain cuBLAS GEMM of the same
/// size, and PyTorch eager run in the same process tree. Needs a CUDA GPU; without one it
/// says so, measures nothing and exits with status 3 (with `--json`:
/// {"status": "no_gpu", "benchmark": "kernels", "reason"}).
#[derive(Args, Debug)]
pub struct KernelsBenchArgs {
    /// Shapes to run: any of `smollm2`, `7b` (comma-separated).
    #[arg(long, default_value = "smollm2,7b", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Token counts per case (comma-separated).
    #[arg(long, default_value = "4096,16384", value_delimiter = ',')]
    tokens: Vec<usize>,
    /// Timed repeats per case (median reported, after 3 warm-up runs).
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// LM-head workspace budget in MiB (the largest chunk of logits held at once).
    #[arg(long, default_value_t = 1024)]
    workspace_mib: usize,
    /// The PyTorch baseline script.
    #[arg(long, default_value = "scripts/bench_torch.py")]
    torch_script: PathBuf,
    /// Python interpreter for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the PyTorch baseline.
    #[arg(long)]
    no_torch: bool,
    /// Print one JSON object (`KernelBenchReport`) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn kernels(a: KernelsBenchArgs) -> anyhow::Result<ExitCode> {
    let shapes = a
        .shapes
        .iter()
        .map(|s| {
            bench::SHAPES
                .iter()
                .find(|h| h.name == s.as_str())
                .copied()
                .with_context(|| format!("unknown shape {s:?} (expected smollm2 or 7b)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(a.tokens.iter().all(|&t| t > 0), "--tokens must be positive");
    let opts = KernelBenchOptions {
        shapes,
        tokens: a.tokens,
        reps: a.reps.max(1),
        workspace_bytes: a.workspace_mib.max(1) << 20,
        torch_script: (!a.no_torch).then_some(a.torch_script),
        python: a.python,
    };
    let gpu = match open_or_report("kernels", a.json)? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    let report =
        bench::run_kernel_bench(&gpu, &opts, &mut |step| eprintln!("[bench kernels] {step}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &KernelBenchReport) {
    println!(
        "{} (sm_{}{}), device copy {:.0} GB/s (read + write)",
        r.device, r.compute_capability.0, r.compute_capability.1, r.copy_gb_per_s
    );
    println!(
        "{:<17} {:<8} {:>6} {:>9} {:>8} {:>7} {:>8} {:>7} {:>9} {:>9} {:>8} {:>9}",
        "op",
        "shape",
        "tokens",
        "ms",
        "GB/s",
        "%copy",
        "TFLOP/s",
        "%gemm",
        "MiB",
        "torch ms",
        "speedup",
        "torch MiB"
    );
    for c in &r.cases {
        let opt = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
        println!(
            "{:<17} {:<8} {:>6} {:>9.3} {:>8.0} {:>6.0}% {:>8.1} {:>6.0}% {:>9.0} {:>9} {:>8} {:>9}",
            c.op,
            c.shape,
            c.tokens,
            c.ms,
            c.gb_per_s,
            100.0 * c.frac_of_copy_bw,
            c.tflop_per_s,
            100.0 * c.frac_of_gemm,
            c.device_bytes as f64 / 1048576.0,
            opt(c.torch_ms, 3),
            opt(c.speedup_vs_torch, 2).to_string()
                + if c.speedup_vs_torch.is_some() {
                    "x"
                } else {
                    ""
                },
            opt(c.torch_peak_bytes.map(|b| b as f64 / 1048576.0), 0),
        );
    }
    if let Some(e) = &r.torch_error {
        println!("PyTorch baseline unavailable: {e}");
    }
}

/// Training tokens/s and device memory for SmolLM2-135M shapes (random weights) at 8,192
/// tokens per step, and generation tokens/s with the GPU KV cache, side by side with
/// PyTorch + transformers eager on the same GPU. Needs a CUDA GPU; without one it says
/// so, measures nothing and exits with status 3 (with `--json`:
/// {"status": "no_gpu", "benchmark": "train", "reason"}).
#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Tokens per optimizer step.
    #[arg(long, default_value_t = 8192)]
    tokens_per_step: usize,
    /// Tokens per sequence (the step holds tokens_per_step / seq_len sequences).
    #[arg(long, default_value_t = 2048)]
    seq_len: usize,
    /// Timed steps after one warm-up step (median reported).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Prompt and generated tokens for the generation measurement.
    #[arg(long, default_value_t = 128)]
    gen_prompt: usize,
    #[arg(long, default_value_t = 256)]
    gen_tokens: usize,
    #[arg(long, default_value = "scripts/bench_torch.py")]
    torch_script: PathBuf,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the PyTorch baseline.
    #[arg(long)]
    no_torch: bool,
    /// Precision of the GPU model: bf16 (bf16 GEMM operands, f32 master weights and
    /// accumulation; also times the f32 trainer side by side) or f32 (the reference).
    #[arg(long, default_value = "bf16", value_name = "bf16|f32")]
    precision: ssr_trainer::gpu::GpuPrecision,
    /// Print one JSON object (`TrainBenchReport`).
    #[arg(long)]
    json: bool,
}

pub fn train(a: TrainBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.tokens_per_step > 0 && a.seq_len >= 2 && a.gen_prompt > 0,
        "sizes must be positive (seq_len ≥ 2)"
    );
    let opts = bench::TrainBenchOptions {
        tokens_per_step: a.tokens_per_step,
        seq_len: a.seq_len,
        steps: a.steps.max(1),
        gen_prompt: a.gen_prompt,
        gen_tokens: a.gen_tokens,
        torch_script: (!a.no_torch).then_some(a.torch_script),
        python: a.python,
        precision: a.precision,
        compare_f32: true,
    };
    let gpu = match open_or_report("train", a.json)? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    let r = bench::run_train_bench(&gpu, &opts, &mut |step| eprintln!("[bench train] {step}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} — {} — {} precision", r.device, r.model, r.precision);
    if let Some(f) = r.f32_step_ms {
        println!(
            "train step: {} {:.1} ms, f32 reference {:.1} ms ({:.2}x)",
            r.precision,
            r.step_ms,
            f,
            f / r.step_ms
        );
    }
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "", "ssr (GPU)", "PyTorch", "ratio"
    );
    let t = r.torch.as_ref();
    let row = |name: &str, ours: f64, theirs: Option<f64>| {
        let th = theirs.map_or("-".to_string(), |v| format!("{v:.0}"));
        let ratio = theirs.map_or("-".to_string(), |v| format!("{:.2}x", ours / v));
        println!("{name:<28} {ours:>14.0} {th:>14} {ratio:>8}");
    };
    row(
        &format!("train tokens/s ({} per step)", r.tokens_per_step),
        r.train_tokens_per_s,
        t.map(|t| t.train_tokens_per_s),
    );
    row(
        "prefill tokens/s",
        r.prefill_tokens_per_s,
        t.map(|t| t.prefill_tokens_per_s),
    );
    row(
        "decode tokens/s",
        r.decode_tokens_per_s,
        t.map(|t| t.decode_tokens_per_s),
    );
    println!(
        "device memory: ssr {:.0} MiB in use after a step; PyTorch peak {}",
        r.device_bytes_in_use as f64 / 1048576.0,
        t.map_or("-".to_string(), |t| format!(
            "{:.0} MiB",
            t.peak_bytes as f64 / 1048576.0
        ))
    );
    if let Some(e) = &r.torch_error {
        println!("PyTorch baseline unavailable: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
