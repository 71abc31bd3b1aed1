//! `ssr bench model`: prefill and decode speed of the embedded engine on SmolLM2-135M,
//! with a baseline measured side by side in the same run.
//!
//! Baseline: the same engine restricted to one thread and f32 weights throughout (no
//! Q8_0 decode copy, no threaded GEMM), i.e. the plain f32 forward a first
//! implementation would have. The llama.cpp figures measured on the 2-core dev machine
//! (NOTES.md: llama-cpp-python 0.3.36, 2 threads, same GGUF) are printed as a fixed
//! reference point; llama.cpp is not run here.
//!
//! Training: one full RL step (training forward, fused LM head, backward, AdamW) over
//! `--train-tokens` tokens through `ssr_trainer::train::measure_training_throughput`,
//! with the forward-only time of the same sequence as its side-by-side baseline (a
//! step costs about three forwards, so the ratio is expected near 1/3).
//!
//! Continuous batching (`--batch N`): N greedy sequences of `--decode-tokens` decode
//! together through `DecodeBatch`, against one sequence through the same code in the
//! same run; the aggregate decode tok/s, their ratio, and this run's prefill tok/s as
//! the compute bound (a decode step of N sequences is an N-row product that can go no
//! faster per token than the prefill GEMM).
//!
//! The load average is read before and after, and each measurement records the CPU
//! time this process got (`cores_used` = CPU seconds / wall seconds, from
//! `/proc/self/stat`): the dev machine is shared, and a busy machine lowers every
//! figure; `cores_used` well below `threads` says the figures are the machine's load,
//! not the engine's speed.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use ssr_trainer::infer::batch::DecodeBatch;
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{
    Engine, GenerateOptions, Generation, Precision, single_threaded, worker_threads,
};
use ssr_trainer::train::{TrainThroughput, measure_training_throughput};
use std::path::PathBuf;
use std::process::ExitCode;

/// llama.cpp on the 2-core dev machine (NOTES.md), tokens per second.
pub const LLAMA_CPP_PREFILL_TPS: f64 = 375.0;
pub const LLAMA_CPP_DECODE_TPS: f64 = 118.0;

#[derive(Args, Clone)]
pub struct BenchModelArgs {
    /// The GGUF file (default: $SSR_MODEL, else .models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 256)]
    pub prompt_tokens: usize,
    /// Tokens generated for the decode measurement.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Skip the single-threaded f32 baseline (it runs the same measurement again, slower).
    #[arg(long)]
    pub no_baseline: bool,
    /// Tokens of the training-step measurement (128 took about 10 s on the busy 2-core dev machine).
    #[arg(long, default_value_t = 128)]
    pub train_tokens: usize,
    /// Skip the training measurement.
    #[arg(long)]
    pub no_train: bool,
    /// Also measure continuous batching: the aggregate decode tok/s of this many
    /// sequences decoding together against 1 sequence, in the same run.
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Continuous batching measured: `sequences` greedy generations of `decode_tokens`
/// each, decoding together, against one alone through the same batch code.
#[derive(Clone, Debug, Serialize)]
pub struct BatchSpeeds {
    pub sequences: usize,
    /// Tokens per second over all sequences (first tokens, which come from prefill,
    /// excluded), and the same for one sequence.
    pub aggregate_decode_tokens_per_second: f64,
    pub single_decode_tokens_per_second: f64,
    /// aggregate / single.
    pub ratio: f64,
    /// This run's prefill speed: the GEMM-bound ceiling a decode batch approaches as it
    /// grows (a batch step is a small prefill without the GEMM's blocking).
    pub compute_bound_tokens_per_second: f64,
    /// Mean wall time of one decode step, at 1 and at `sequences` sequences.
    pub step_ms_single: f64,
    pub step_ms_batch: f64,
    pub cores_used: Option<f64>,
}

/// Speeds of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Speeds {
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// CPU seconds this process used per wall second during the measured run (`None`
    /// where `/proc/self/stat` is unreadable, and for the llama.cpp reference).
    pub cores_used: Option<f64>,
}

/// CPU time (user + system) of this process, all threads, in seconds: fields 14 and 15
/// of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's USER_HZ on x86-64).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces: count fields after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs `f`, returning its result and the cores it kept busy on average.
fn with_cores_used<R>(f: impl FnOnce() -> R) -> (R, Option<f64>) {
    let (c0, t0) = (process_cpu_seconds(), std::time::Instant::now());
    let r = f();
    let wall = t0.elapsed().as_secs_f64();
    let used = match (c0, process_cpu_seconds()) {
        (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall),
        _ => None,
    };
    (r, used)
}

/// The `--json` object of `ssr bench model`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBenchReport {
    pub model: PathBuf,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    /// The engine as used by self-play (threads, f32 GEMM prefill, Q8_0 decode).
    pub engine: Speeds,
    /// One thread, f32 weights throughout; `None` with `--no-baseline`.
    pub baseline: Option<Speeds>,
    /// engine / baseline.
    pub prefill_ratio: Option<f64>,
    pub decode_ratio: Option<f64>,
    /// llama.cpp on the dev machine (not measured in this run).
    pub llama_cpp_reference: Speeds,
    /// Tokens per second of a whole training step (forward, backward, AdamW) on the
    /// f32 CPU trainer; `None` with `--no-train`.
    pub training_tokens_per_second: Option<f64>,
    /// The training measurement in detail, with its forward-only baseline.
    pub training: Option<TrainThroughput>,
    /// Cores this process kept busy during the training measurement.
    pub training_cores_used: Option<f64>,
    /// Continuous batching (`--batch N`).
    pub batch: Option<BatchSpeeds>,
    /// 1-minute load average before and after the run (`/proc/loadavg`; the dev
    /// machine is shared, so read the figures against it).
    pub load_average: (Option<f64>, Option<f64>),
}

/// The 1-minute load average, where `/proc/loadavg` exists.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn default_model() -> PathBuf {
    std::env::var_os("SSR_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn one_run(engine: &Engine, prompt: &[u32], decode_tokens: usize) -> anyhow::Result<Generation> {
    let opts = GenerateOptions {
        max_tokens: decode_tokens,
        sampling: SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        },
        stop: Vec::new(),
        stop_at_eos: false,
        top_logprobs: 0,
    };
    Ok(engine.generate(prompt, &opts)?)
}

fn speeds(engine: &Engine, prompt: &[u32], decode_tokens: usize) -> anyhow::Result<Speeds> {
    // Warm-up (page faults, thread pool start), then the measured run.
    one_run(engine, &prompt[..prompt.len().min(16)], 4)?;
    let (g, cores_used) = with_cores_used(|| one_run(engine, prompt, decode_tokens));
    let g = g?;
    Ok(Speeds {
        prefill_tokens_per_second: g.prefill_tokens_per_second(),
        decode_tokens_per_second: g.decode_tokens_per_second(),
        cores_used,
    })
}

/// Decodes `n` sequences (prompts of `prompt` rotated, so they differ) together for
/// `decode_tokens` each; returns (decode tokens per second, mean step seconds).
fn batch_decode(
    engine: &Engine,
    prompt: &[u32],
    n: usize,
    decode_tokens: usize,
) -> anyhow::Result<(f64, f64)> {
    let opts = GenerateOptions {
        max_tokens: decode_tokens,
        sampling: SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        },
        stop: Vec::new(),
        stop_at_eos: false,
        top_logprobs: 0,
    };
    let mut batch = DecodeBatch::new(engine);
    for i in 0..n {
        let mut p = prompt.to_vec();
        p.rotate_left(i % prompt.len().max(1));
        if let Some((_, r)) = batch.join(i, &p, &opts) {
            r?;
            anyhow::bail!("a sequence ended at its first token (decode_tokens too small)");
        }
    }
    let t0 = std::time::Instant::now();
    let (mut steps, mut tokens) = (0usize, 0usize);
    while !batch.is_empty() {
        tokens += batch.len();
        steps += 1;
        for (_, r) in batch.step() {
            r?;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    Ok((tokens as f64 / wall, wall / steps.max(1) as f64))
}

fn batch_speeds(
    engine: &Engine,
    prompt: &[u32],
    n: usize,
    decode_tokens: usize,
    compute_bound: f64,
) -> anyhow::Result<BatchSpeeds> {
    anyhow::ensure!(n >= 1, "--batch must be at least 1");
    anyhow::ensure!(
        decode_tokens >= 2,
        "--decode-tokens must be at least 2 with --batch"
    );
    // Warm-up, then one sequence and the batch, one after the other in this run.
    batch_decode(engine, &prompt[..prompt.len().min(16)], n, 2)?;
    let (single, step_single) = batch_decode(engine, prompt, 1, decode_tokens)?;
    let (r, cores_used) = with_cores_used(|| batch_decode(engine, prompt, n, decode_tokens));
    let (aggregate, step_batch) = r?;
    Ok(BatchSpeeds {
        sequences: n,
        aggregate_decode_tokens_per_second: aggregate,
        single_decode_tokens_per_second: single,
        ratio: aggregate / single,
        compute_bound_tokens_per_second: compute_bound,
        step_ms_single: step_single * 1e3,
        step_ms_batch: step_batch * 1e3,
        cores_used,
    })
}

/// Runs the measurement.
pub fn measure(args: &BenchModelArgs) -> anyhow::Result<ModelBenchReport> {
    let load_before = load_average();
    let model = args.model.clone().unwrap_or_else(default_model);
    let mut engine = Engine::load(&model)
        .with_context(|| format!("loading {} (see scripts/setup.sh)", model.display()))?;
    let text = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n// The quick brown fox jumps over the lazy dog. ";
    let mut prompt = Vec::new();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(engine.tokenizer().encode(text));
    }
    prompt.truncate(args.prompt_tokens.max(1));
    let eng = speeds(&engine, &prompt, args.decode_tokens)?;
    // Batching first, while the engine still has its fast (Q8_0) weights.
    let batch = match args.batch {
        Some(n) => Some(batch_speeds(
            &engine,
            &prompt,
            n,
            args.decode_tokens,
            eng.prefill_tokens_per_second,
        )?),
        None => None,
    };
    let baseline = if args.no_baseline {
        None
    } else {
        engine.set_precision(Precision::F32)?;
        Some(single_threaded(|| {
            speeds(&engine, &prompt, args.decode_tokens)
        })??)
    };
    let ratio = |f: fn(&Speeds) -> f64| baseline.as_ref().map(|b| f(&eng) / f(b));
    let (training, training_cores_used) = if args.no_train {
        (None, None)
    } else {
        let (t, cores) =
            with_cores_used(|| measure_training_throughput(engine.weights(), args.train_tokens));
        (Some(t.context("training measurement")?), cores)
    };
    Ok(ModelBenchReport {
        model,
        threads: worker_threads(),
        prompt_tokens: prompt.len(),
        decode_tokens: args.decode_tokens,
        prefill_ratio: ratio(|s| s.prefill_tokens_per_second),
        decode_ratio: ratio(|s| s.decode_tokens_per_second),
        engine: eng,
        baseline,
        llama_cpp_reference: Speeds {
            prefill_tokens_per_second: LLAMA_CPP_PREFILL_TPS,
            decode_tokens_per_second: LLAMA_CPP_DECODE_TPS,
            cores_used: None,
        },
        training_tokens_per_second: training.as_ref().map(|t| t.train_tokens_per_second),
        training,
        training_cores_used,
        batch,
        load_average: (load_before, load_average()),
    })
}

/// Prints a report as text.
pub fn print_text(r: &ModelBenchReport) {
    println!("model: {} ({} threads)", r.model.display(), r.threads);
    println!(
        "{:<34} {:>14} {:>14} {:>11}",
        "", "prefill tok/s", "decode tok/s", "cores used"
    );
    let row = |name: &str, s: &Speeds| {
        println!(
            "{name:<34} {:>14.1} {:>14.1} {:>11}",
            s.prefill_tokens_per_second,
            s.decode_tokens_per_second,
            s.cores_used.map_or("-".to_string(), |c| format!("{c:.2}"))
        )
    };
    row(
        &format!(
            "engine ({} prompt, {} new)",
            r.prompt_tokens, r.decode_tokens
        ),
        &r.engine,
    );
    if let Some(b) = &r.baseline {
        row("baseline (1 thread, f32)", b);
        println!(
            "{:<34} {:>13.1}x {:>13.1}x",
            "engine / baseline",
            r.prefill_ratio.unwrap_or(0.0),
            r.decode_ratio.unwrap_or(0.0)
        );
    }
    row("llama.cpp, dev machine (NOTES.md)", &r.llama_cpp_reference);
    println!(
        "{:<34} {:>13.2}x {:>13.2}x",
        "engine / llama.cpp",
        r.engine.prefill_tokens_per_second / LLAMA_CPP_PREFILL_TPS,
        r.engine.decode_tokens_per_second / LLAMA_CPP_DECODE_TPS
    );
    if let Some(t) = &r.training {
        println!(
            "training step ({} tokens: forward, backward, AdamW): {:.1} tok/s",
            t.tokens, t.train_tokens_per_second
        );
        println!(
            "  forward only, same sequence (baseline): {:.1} tok/s; ratio {:.2} (about 1/3 expected)",
            t.forward_tokens_per_second,
            t.train_tokens_per_second / t.forward_tokens_per_second
        );
        println!(
            "  forward {:.2} s, forward+backward {:.2} s, AdamW {:.2} s; cores used {}",
            t.forward_s,
            t.forward_backward_s,
            t.optimizer_s,
            r.training_cores_used
                .map_or("-".to_string(), |c| format!("{c:.2}"))
        );
    }
    if let Some(b) = &r.batch {
        println!(
            "continuous batching, {} sequences x {} new tokens: {:.1} tok/s aggregate decode vs {:.1} tok/s for 1 sequence: {:.2}x",
            b.sequences,
            r.decode_tokens,
            b.aggregate_decode_tokens_per_second,
            b.single_decode_tokens_per_second,
            b.ratio
        );
        println!(
            "  compute bound (this run's prefill): {:.1} tok/s; step {:.2} ms at 1 sequence, {:.2} ms at {}; cores used {}",
            b.compute_bound_tokens_per_second,
            b.step_ms_single,
            b.step_ms_batch,
            b.sequences,
            b.cores_used.map_or("-".to_string(), |c| format!("{c:.2}"))
        );
    }
    let la = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "load average (1 min): {} before, {} after",
        la(r.load_average.0),
        la(r.load_average.1)
    );
}

/// `ssr bench model`.
pub fn run(args: BenchModelArgs) -> anyhow::Result<ExitCode> {
    if !args.json {
        eprintln!(
            "measuring (engine, the 1-thread f32 baseline unless --no-baseline, then one training step unless --no-train)..."
        );
    }
    let r = measure(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_text(&r);
    }
    Ok(ExitCode::SUCCESS)
}
