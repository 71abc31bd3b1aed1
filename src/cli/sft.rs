//! `ssr sft`: supervised fine-tuning on demonstrations (a warm start), the masked
//! next-token loss on the assistant's tokens through the trainer's own forward,
//! backward and AdamW (`ssr_trainer::train::TrainSession::sft_step`), on the CPU.
//!
//! Parses and prints; the format and the step are the trainer's (`train::sft`).

use anyhow::Context;
use clap::Args;
use ssr_trainer::train::{LoadedPolicy, TrainConfig, TrainSession, load_policy, read_demos};
use std::path::PathBuf;
use std::process::ExitCode;

/// Fine-tunes the policy on demonstrations: JSON lines of {"token_ids": [...],
/// "loss_mask": [0/1 ...], "metadata": {...}} where the mask marks the tokens to learn
/// (the assistant's). Writes a checkpoint that `ssr train` and `ssr sft` continue.
#[derive(Args, Debug)]
pub struct SftArgs {
    /// Demonstration file (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub demos: PathBuf,
    /// Policy to start from: a GGUF file or a checkpoint directory.
    #[arg(long, value_name = "FILE|DIR")]
    pub model: PathBuf,
    /// Checkpoint directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Optimizer steps, each over every demonstration.
    #[arg(long, default_value_t = 1)]
    pub steps: u64,
    /// Peak learning rate (warm-up 0 steps: a warm start is short).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f32,
    /// One JSON object per step on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SftArgs) -> anyhow::Result<ExitCode> {
    let SftArgs {
        demos,
        model,
        out,
        steps,
        lr,
        json,
    } = args;
    anyhow::ensure!(
        lr.is_finite() && lr > 0.0,
        "--lr must be positive, got {lr}"
    );
    let mut session = match load_policy(&model).context("loading the policy")? {
        LoadedPolicy::Fresh(w) => {
            let mut config = TrainConfig::default();
            config.adamw.lr = lr;
            config.adamw.warmup_steps = 0;
            TrainSession::new(w, config)
        }
        LoadedPolicy::Resume(s) => {
            let mut s = *s;
            let mut config = s.config.clone();
            config.adamw.lr = lr;
            s.set_config(config);
            s
        }
    };
    let demos = read_demos(&demos, session.weights.config.vocab_size)?;
    for _ in 0..steps {
        let m = session.sft_step(&demos).context("supervised step")?;
        if json {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            println!(
                "step {:>4}  loss {:.4}  |g| {:.4}  lr {:.2e}  {} demos / {} tok ({} trained)  {:.2} s",
                m.step,
                m.loss,
                m.grad_norm,
                m.lr,
                m.sequences,
                m.tokens,
                m.trained_tokens,
                m.seconds
            );
        }
    }
    session.save(&out).context("writing the checkpoint")?;
    eprintln!(
        "at step {}; checkpoint written to {}",
        session.step_count(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
