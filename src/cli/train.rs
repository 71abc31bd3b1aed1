//! `ssr train`: RL training of the policy on a trajectory file, on a CUDA GPU when one
//! is usable (`--device auto`, the default), else on the CPU.
//!
//! Parses arguments into a `TrainJob`, calls `ssr_trainer::train::prepare_job` (which
//! resolves the device), prints the device, then runs the steps and prints one line per
//! step (or one JSON object per step with `--json`).

use anyhow::Context;
use clap::Args;
use ssr_trainer::rl::{AdvantageKind, Aggregation};
use ssr_trainer::train::{StepMetrics, TrainJob, TrainOverrides, prepare_job};
use ssr_trainer::{ActiveDevice, Device};
use std::path::PathBuf;
use std::process::ExitCode;

/// Trains the policy on self-play trajectories (PPO/DAPO clipped loss, AdamW) and
/// writes a checkpoint.
///
/// `--model` is a GGUF file (a fresh run from its weights) or a checkpoint directory
/// written by `ssr train` (continues that run exactly: step count, optimizer state and
/// settings; flags given here replace the saved settings).
///
/// With `--json`, each step prints one object: {"step", "loss", "pg_loss", "kl",
/// "clip_fraction", "ratio_mean", "entropy", "grad_norm", "lr", "sequences", "tokens",
/// "trained_tokens", "seconds", "tokens_per_second"}, plus "no_signal": {"groups",
/// "sequences"} on a step whose every advantage was 0 (every reward of each group
/// equal: nothing to learn from); a last object (no "step" key)
/// summarises the run: {"device": {"kind": "cpu"|"cuda", ...}, "resumed", "final_step",
/// "checkpoint"}.
///
/// Data parallelism over several GPUs: one `ssr train --device cuda` process per GPU
/// with SSR_RANK, SSR_WORLD_SIZE and SSR_NCCL_ID_FILE set (see the trainer's
/// `gpu::nccl` module doc); gradients are averaged over NCCL each step.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Trajectory file (JSON lines; format in `ssr_trainer::trajectory`).
    #[arg(long, value_name = "FILE")]
    pub trajectories: PathBuf,
    /// Policy to train: a GGUF file or a checkpoint directory.
    #[arg(long, value_name = "FILE|DIR")]
    pub model: PathBuf,
    /// Checkpoint directory to write (created; files replaced atomically).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Optimizer steps to take.
    #[arg(long, default_value_t = 1)]
    pub steps: u64,
    /// Peak learning rate [default: 3e-6].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Linear warm-up steps [default: 30].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Decoupled weight decay [default: 0.01].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Global gradient-norm clip; 0 disables [default: 1.0].
    #[arg(long)]
    pub max_grad_norm: Option<f32>,
    /// Lower clip of the importance ratio (1 - clip_low) [default: 0.2].
    #[arg(long)]
    pub clip_low: Option<f32>,
    /// Upper clip of the importance ratio (1 + clip_high; DAPO clip-higher) [default: 0.28].
    #[arg(long)]
    pub clip_high: Option<f32>,
    /// Weight of the k3 KL penalty to --ref-model [default: 0].
    #[arg(long)]
    pub kl_coef: Option<f32>,
    /// Reference model of the KL penalty (GGUF file or checkpoint directory).
    #[arg(long, value_name = "FILE|DIR")]
    pub ref_model: Option<PathBuf>,
    /// Loss aggregation: token-mean (DAPO), sequence-mean (GRPO), or token-sum:DIVISOR
    /// (Dr. GRPO) [default: token-mean].
    #[arg(long, value_parser = parse_aggregation)]
    pub aggregation: Option<Aggregation>,
    /// Advantage estimator for trajectories without one: grpo, dr-grpo, rloo [default: grpo].
    #[arg(long)]
    pub advantage: Option<AdvantageKind>,
    /// Sampling temperature of the behaviour log-probs. Trajectories that record their
    /// temperature are trained at it, and a different value here is refused; for files
    /// that record none [default: 1.0].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sequences per step; 0 = every sequence in every step [default: 0].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the minibatch order [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the checkpoint every N steps.
    #[arg(long, value_name = "N")]
    pub save_every: Option<u64>,
    /// Make --out a directory of checkpoints, one `step-N/` per save, and keep only the
    /// newest K (each is about 1.6 GB for SmolLM2-135M). `--model DIR` on such a
    /// directory resumes its newest.
    #[arg(long, value_name = "K")]
    pub keep_checkpoints: Option<std::num::NonZeroUsize>,
    /// Where the steps run: auto (CUDA device 0 when usable, else the CPU), cpu, cuda,
    /// or cuda:N. An explicit cuda without a usable GPU is an error.
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: Device,
    /// One JSON object per step on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The last `--json` object of a run.
#[derive(serde::Serialize)]
struct RunSummaryJson<'a> {
    device: &'a ActiveDevice,
    resumed: bool,
    final_step: u64,
    checkpoint: &'a std::path::Path,
}

fn parse_aggregation(s: &str) -> Result<Aggregation, String> {
    match s {
        "token-mean" => Ok(Aggregation::TokenMean),
        "sequence-mean" => Ok(Aggregation::SequenceMean),
        _ => match s.strip_prefix("token-sum:").map(str::parse::<f32>) {
            Some(Ok(divisor)) if divisor > 0.0 => Ok(Aggregation::TokenSum { divisor }),
            _ => Err(format!(
                "expected token-mean, sequence-mean or token-sum:DIVISOR (positive), got {s:?}"
            )),
        },
    }
}

fn positive(name: &str, v: Option<f32>) -> anyhow::Result<()> {
    if let Some(x) = v {
        anyhow::ensure!(
            x.is_finite() && x > 0.0,
            "--{name} must be positive, got {x}"
        );
    }
    Ok(())
}

fn non_negative(name: &str, v: Option<f32>) -> anyhow::Result<()> {
    if let Some(x) = v {
        anyhow::ensure!(x.is_finite() && x >= 0.0, "--{name} must be >= 0, got {x}");
    }
    Ok(())
}

/// A validated command line: the trainer's job and how to print.
struct TrainCli {
    job: TrainJob,
    json: bool,
}

/// Destructures the arguments (a flag added and not wired here does not compile) and
/// checks each value's range.
fn resolve(args: TrainArgs) -> anyhow::Result<TrainCli> {
    let TrainArgs {
        trajectories,
        model,
        out,
        steps,
        lr,
        warmup,
        weight_decay,
        max_grad_norm,
        clip_low,
        clip_high,
        kl_coef,
        ref_model,
        aggregation,
        advantage,
        temperature,
        batch_size,
        seed,
        save_every,
        keep_checkpoints,
        device,
        json,
    } = args;
    positive("lr", lr)?;
    positive("temperature", temperature)?;
    for (name, v) in [
        ("weight-decay", weight_decay),
        ("max-grad-norm", max_grad_norm),
        ("clip-low", clip_low),
        ("clip-high", clip_high),
        ("kl-coef", kl_coef),
    ] {
        non_negative(name, v)?;
    }
    if let Some(c) = clip_low {
        anyhow::ensure!(c < 1.0, "--clip-low must be below 1, got {c}");
    }
    if kl_coef.is_some_and(|k| k > 0.0) && ref_model.is_none() {
        anyhow::bail!("--kl-coef > 0 needs --ref-model (the frozen reference policy)");
    }
    let job = TrainJob {
        trajectories,
        model,
        out,
        steps,
        overrides: TrainOverrides {
            lr,
            warmup_steps: warmup,
            weight_decay,
            max_grad_norm: max_grad_norm.map(|m| (m > 0.0).then_some(m)),
            clip_low,
            clip_high,
            kl_coef,
            aggregation,
            advantage,
            temperature,
            batch_size,
            seed,
        },
        reference: ref_model,
        save_every,
        keep_checkpoints,
        device,
    };
    Ok(TrainCli { job, json })
}

/// One step's line (or JSON object).
fn print_step(m: &StepMetrics, json: bool) {
    if json {
        println!("{}", serde_json::to_string(m).expect("metrics serialize"));
    } else if let Some(none) = &m.no_signal {
        // Not a loss line: a loss of 0 here would read as "trained, converged".
        println!(
            "step {:>4}  {none}; the weights moved only by weight decay and momentum  {:.2} s",
            m.step, m.seconds
        );
    } else {
        println!(
            "step {:>4}  loss {:+.5}  kl {:.5}  clip {:.3}  ratio {:.4}  entropy {:.3}  |g| {:.4}  lr {:.2e}  {} seq / {} tok ({} trained)  {:.2} s  {:.0} tok/s",
            m.step,
            m.loss,
            m.kl,
            m.clip_fraction,
            m.ratio_mean,
            m.entropy,
            m.grad_norm,
            m.lr,
            m.sequences,
            m.tokens,
            m.trained_tokens,
            m.seconds,
            m.tokens_per_second
        );
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let TrainCli { job, json } = resolve(args)?;
    let prepared = prepare_job(&job).context("training failed")?;
    eprintln!("device: {}", prepared.device());
    let summary = prepared
        .run(&job, |m| print_step(m, json))
        .context("training failed")?;
    let how = if summary.resumed { "resumed" } else { "fresh" };
    eprintln!(
        "{how} run on {}: now at step {}; checkpoint written to {}",
        summary.device,
        summary.final_step,
        summary.checkpoint.display()
    );
    if json {
        let last = RunSummaryJson {
            device: &summary.device,
            resumed: summary.resumed,
            final_step: summary.final_step,
            checkpoint: &summary.checkpoint,
        };
        println!("{}", serde_json::to_string(&last)?);
    }
    Ok(ExitCode::SUCCESS)
}
