//! `ssr bench kernels`: argument parsing and printing for the GPU kernel benchmark. The
//! cases, timing and PyTorch baseline live in `ssr_trainer::gpu::bench`.
//!
//! Wire-up (in `src/cli/bench.rs`): a variant `Kernels(bench_gpu::KernelsBenchArgs)` of
//! `BenchCmd` and the arm `BenchCmd::Kernels(a) => bench_gpu::kernels(a)`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ssr_trainer::gpu::bench::{self, KernelBenchOptions, KernelBenchReport};
use ssr_trainer::gpu::{Gpu, GpuError};

/// Times the log-prob row pass and the fused LM head (forward + backward) at SmolLM2
/// (vocab 49,152, width 576) and 7B-like (152,064 × 3,584) shapes for 4,096 and 16,384
/// tokens, against the measured device copy bandwidth, a plain cuBLAS GEMM of the same
/// size, and PyTorch eager run in the same process tree. Needs a CUDA GPU; without one it
/// exits with a "no GPU" error.
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
    let gpu = match Gpu::open() {
        Ok(g) => g,
        Err(e @ GpuError::NoGpu { .. }) => {
            anyhow::bail!("`ssr bench kernels` needs a CUDA GPU: {e}")
        }
        Err(e) => return Err(e).context("opening the GPU"),
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
