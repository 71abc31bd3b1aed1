//! `ssr bench train`: training tokens per second and device memory of SmolLM2-135M
//! shapes (random weights) through the GPU trainer, and generation tokens per second
//! through the GPU decoder, next to PyTorch + transformers eager run as a subprocess, and
//! (when the bf16 precision is measured) next to the f32 reference precision of the same
//! trainer, measured side by side in the same run.
//!
//! Does not own: the trainer or decoder (`gpu::train`, `gpu::generate`), printing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::run_python;
use crate::gpu::context::Gpu;
use crate::gpu::error::GpuError;
use crate::gpu::precision::GpuPrecision;

/// What `ssr bench train` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBenchOptions {
    /// Tokens per optimizer step (split into sequences of `seq_len`).
    pub tokens_per_step: usize,
    pub seq_len: usize,
    /// Timed steps (after one warm-up step); the median is reported.
    pub steps: usize,
    pub gen_prompt: usize,
    pub gen_tokens: usize,
    pub torch_script: Option<PathBuf>,
    pub python: String,
    /// The precision of the measured trainer and decoder.
    pub precision: GpuPrecision,
    /// With bf16: also time the f32 reference trainer on the same batch (the baseline of
    /// the bf16 path).
    pub compare_f32: bool,
}

impl Default for TrainBenchOptions {
    fn default() -> Self {
        TrainBenchOptions {
            tokens_per_step: 8192,
            seq_len: 2048,
            steps: 3,
            gen_prompt: 128,
            gen_tokens: 256,
            torch_script: Some(PathBuf::from("scripts/bench_torch.py")),
            python: "python3".into(),
            precision: GpuPrecision::default(),
            compare_f32: true,
        }
    }
}

/// `ssr bench train --json` prints this object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainBenchReport {
    pub device: String,
    /// SmolLM2-135M's shapes with random weights (speed does not depend on the values).
    pub model: String,
    pub tokens_per_step: usize,
    pub seq_len: usize,
    /// `"bf16"` or `"f32"` (`GpuPrecision`).
    pub precision: String,
    pub step_ms: f64,
    pub train_tokens_per_s: f64,
    /// The f32 reference trainer's median step on the same batch (bf16 runs with
    /// `compare_f32`), measured after the bf16 one.
    pub f32_step_ms: Option<f64>,
    /// Device memory in use after the step (total − free), not a true peak.
    pub device_bytes_in_use: usize,
    pub gen_prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub torch: Option<TorchTrainReport>,
    pub torch_error: Option<String>,
}

/// The PyTorch + transformers baseline (`bench_torch.py train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TorchTrainReport {
    pub step_ms: f64,
    pub train_tokens_per_s: f64,
    pub peak_bytes: usize,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    pub torch: String,
}

/// Training and generation throughput at SmolLM2-135M shapes, next to PyTorch.
// tidy: long-function: one benchmark script run top to bottom on the device: warm-up, timed
// training steps per precision, generation, then the PyTorch baseline, each announced through
// `progress`; the stages share the model shapes, the seeded inputs and the report being filled.
// GPU code, measured only on real hardware, so it is not split without a device to rerun it.
pub fn run_train_bench(
    gpu: &Gpu,
    opts: &TrainBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<TrainBenchReport, GpuError> {
    use crate::gpu::generate::GpuDecoder;
    use crate::gpu::train::{GpuTrainer, TrainSequence};
    use rand::{Rng, SeedableRng};
    gpu.warm_up()?;
    let cfg = crate::Config::smollm2_135m();
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut w = crate::Weights::zeros(&cfg);
    w.for_each_mut(|name, t| {
        let base = if name.contains("norm") { 1.0 } else { 0.0 };
        t.iter_mut()
            .for_each(|x| *x = base + r.gen_range(-0.02..0.02));
    });
    let n_seq = opts.tokens_per_step.div_ceil(opts.seq_len.max(2));
    let seqs: Vec<(Vec<u32>, Vec<usize>, Vec<f32>)> = (0..n_seq)
        .map(|_| {
            let toks: Vec<u32> = (0..opts.seq_len)
                .map(|_| r.gen_range(0..cfg.vocab_size as u32))
                .collect();
            let pos: Vec<usize> = (1..opts.seq_len).collect();
            let old = vec![-10.8f32; pos.len()];
            (toks, pos, old)
        })
        .collect();
    let batch: Vec<TrainSequence<'_>> = seqs
        .iter()
        .enumerate()
        .map(|(i, (t, p, o))| TrainSequence {
            tokens: t,
            positions: p,
            old_logp: o,
            advantage: if i % 2 == 0 { 1.0 } else { -1.0 },
        })
        .collect();
    progress(&format!(
        "training: {n_seq} sequences × {} tokens per step",
        opts.seq_len
    ));
    let mut tc = crate::train::TrainConfig::default();
    tc.adamw.warmup_steps = 0;
    // Median step time (after one warm-up step) and memory in use, per precision; each
    // trainer is dropped before the next is built.
    let mut time_steps = |precision: GpuPrecision| -> Result<(f64, usize), GpuError> {
        let mut trainer =
            GpuTrainer::with_precision(gpu, &w, None, tc.clone(), None, None, precision)?;
        trainer.step(gpu, &batch)?;
        let mut times = Vec::new();
        for s in 0..opts.steps.max(1) {
            progress(&format!("training step {} ({precision})", s + 1));
            let t0 = std::time::Instant::now();
            trainer.step(gpu, &batch)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let (free, total) = gpu.memory()?;
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], total - free))
    };
    let (step_ms, in_use) = time_steps(opts.precision)?;
    let f32_step_ms = if opts.precision == GpuPrecision::Bf16 && opts.compare_f32 {
        Some(time_steps(GpuPrecision::F32)?.0)
    } else {
        None
    };
    let tokens = n_seq * opts.seq_len;
    progress("generation");
    let prompt: Vec<u32> = (0..opts.gen_prompt)
        .map(|_| r.gen_range(0..cfg.vocab_size as u32))
        .collect();
    let mut dec =
        GpuDecoder::with_precision(gpu, &w, opts.gen_prompt + opts.gen_tokens, opts.precision)?;
    let greedy = crate::infer::sampling::SamplingOptions {
        temperature: 0.0,
        ..Default::default()
    };
    dec.generate(gpu, &prompt, 8, greedy.clone(), &[])?;
    let g = dec.generate(gpu, &prompt, opts.gen_tokens, greedy, &[])?;
    let decode = g.token_ids.len().saturating_sub(1) as f64 / g.decode_seconds.max(1e-9);
    let prefill = opts.gen_prompt as f64 / g.prefill_seconds.max(1e-9);
    let (torch, torch_error) = match &opts.torch_script {
        None => (None, Some("baseline not requested".to_string())),
        Some(script) => {
            progress("running the PyTorch + transformers baseline");
            let args = [
                "train".to_string(),
                "--tokens-per-step".into(),
                opts.tokens_per_step.to_string(),
                "--seq-len".into(),
                opts.seq_len.to_string(),
                "--steps".into(),
                opts.steps.to_string(),
                "--gen-prompt".into(),
                opts.gen_prompt.to_string(),
                "--gen-tokens".into(),
                opts.gen_tokens.to_string(),
            ];
            match run_python::<TorchTrainReport>(&opts.python, script, &args) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e)),
            }
        }
    };
    Ok(TrainBenchReport {
        device: gpu.info().name.clone(),
        model: "SmolLM2-135M shapes, random weights".into(),
        tokens_per_step: tokens,
        seq_len: opts.seq_len,
        precision: opts.precision.name().to_string(),
        step_ms,
        f32_step_ms,
        train_tokens_per_s: tokens as f64 / (step_ms * 1e-3),
        device_bytes_in_use: in_use,
        gen_prompt_tokens: opts.gen_prompt,
        gen_tokens: g.token_ids.len(),
        prefill_tokens_per_s: prefill,
        decode_tokens_per_s: decode,
        torch,
        torch_error,
    })
}
