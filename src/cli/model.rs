//! `ssr model ...`: inspect a GGUF model and generate text with the embedded engine.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use ssr_trainer::gguf::{self, GgufFile};
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{Engine, GenerateOptions, Precision};
use ssr_trainer::tokenizer::{ChatOptions, Message, Role, Tokenizer};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Shows a GGUF model's architecture, shapes, tensor types, vocabulary and template.
    Info(InfoArgs),
    /// Generates text from a prompt with the embedded engine (on a CUDA GPU when one is
    /// usable, else the CPU; see --device).
    Generate(GenerateArgs),
    /// Prefill and decode speed against a same-run baseline (same as `ssr bench model`).
    Bench(super::bench_model::BenchModelArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// bf16 prompt prefill (AVX-512 BF16 CPUs) and Q8_0 decode (default).
    Fast,
    /// f32 weights throughout (exact, slower).
    F32,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt text (special tokens such as <|im_start|> are recognised).
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user turn of the chat template and start an assistant turn.
    #[arg(long)]
    pub chat: bool,
    /// System prompt for --chat (default: the model's own).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Where generation runs: auto (CUDA device 0 when usable, else the CPU), cpu, cuda
    /// or cuda:N. An explicit cuda without a usable GPU is an error.
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: ssr_trainer::Device,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Weight copies used by the engine.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast)]
    pub precision: PrecisionArg,
    /// Print one JSON object (text, ids, logprobs, counts, speeds) instead of streaming.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ModelCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCmd::Info(a) => info(a),
        ModelCmd::Generate(a) => generate(a),
        ModelCmd::Bench(a) => super::bench_model::run(a),
    }
}

fn info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let f = GgufFile::open(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let config = gguf::config_from_gguf(&f)?;
    let tok = Tokenizer::from_gguf(&f)?;
    let mut types: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let mut params = 0u64;
    for t in &f.tensors {
        let e = types.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        params += t.n_elements();
    }
    let file_bytes = std::fs::metadata(&a.file)?.len();
    let name = f
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let specials: Vec<&str> = (0..tok.vocab_size() as u32)
        .filter(|&i| tok.is_special(i))
        .filter_map(|i| tok.token_str(i))
        .collect();
    if a.json {
        let tensors: Vec<_> = f
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "dims": t.dims, "type": t.ty.name()}))
            .collect();
        let out = json!({
            "file": a.file, "file_bytes": file_bytes, "gguf_version": f.version, "name": name,
            "architecture": f.get_str("general.architecture")?, "config": config,
            "parameters": params,
            "tensor_types": types.iter().map(|(k, (n, e))| (k.to_string(), json!({"tensors": n, "elements": e}))).collect::<BTreeMap<_,_>>(),
            "tensors": tensors,
            "vocab_size": tok.vocab_size(), "bos_id": tok.bos_id, "eos_id": tok.eos_id,
            "special_tokens": specials, "chat_template": tok.chat_template,
            "chat_template_error": tok.template_error,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "file:          {} ({:.1} MB, GGUF v{})",
        a.file.display(),
        file_bytes as f64 / 1e6,
        f.version
    );
    println!("name:          {name}");
    println!("architecture:  {}", f.get_str("general.architecture")?);
    println!(
        "shape:         {} layers, width {}, {} heads ({} kv, head size {}), SwiGLU {}, vocab {}",
        config.n_layers,
        config.dim,
        config.n_heads,
        config.n_kv_heads,
        config.head_dim(),
        config.ffn_dim,
        config.vocab_size
    );
    println!(
        "context:       {} tokens, RoPE base {}, RMSNorm eps {:e}, tied embeddings: {}",
        config.max_seq_len, config.rope_theta, config.norm_eps, config.tied_embeddings
    );
    println!("parameters:    {params} ({:.1} M)", params as f64 / 1e6);
    let types_line: Vec<String> = types
        .iter()
        .map(|(k, (n, _))| format!("{k} x{n}"))
        .collect();
    println!("tensor types:  {}", types_line.join(", "));
    println!(
        "tokenizer:     byte-level BPE, {} tokens, bos {}, eos {}",
        tok.vocab_size(),
        tok.bos_id.map_or("none".to_string(), |b| b.to_string()),
        tok.eos_id
    );
    println!("special:       {}", specials.join(" "));
    if let Some(t) = &tok.chat_template {
        println!("chat template:\n{t}");
    }
    if let Some(e) = &tok.template_error {
        println!("chat template not used (ChatML instead): {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let mut engine =
        Engine::load(&a.model).with_context(|| format!("loading {}", a.model.display()))?;
    engine.set_precision(match a.precision {
        PrecisionArg::Fast => Precision::Fast,
        PrecisionArg::F32 => Precision::F32,
    })?;
    let device = engine
        .set_device(a.device)
        .context("choosing the device")?
        .clone();
    let load_seconds = t0.elapsed().as_secs_f64();
    let tok = engine.tokenizer();
    let ids = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::new(Role::System, s.clone()));
        }
        msgs.push(Message::new(Role::User, a.prompt.clone()));
        tok.encode_chat(
            &msgs,
            &ChatOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .context("rendering the chat with the model's template")?
    } else {
        tok.encode(&a.prompt)
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampling: SamplingOptions {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
        },
        stop: a.stop.clone(),
        stop_at_eos: true,
        top_logprobs: 0,
    };
    let g = if a.json {
        engine.generate(&ids, &opts)?
    } else {
        eprintln!(
            "loaded {} in {load_seconds:.2}s on {device}; prompt {} tokens",
            a.model.display(),
            ids.len()
        );
        let mut stdout = std::io::stdout();
        let g = engine.generate_streaming(&ids, &opts, |_, bytes| {
            // Streams raw bytes; a stop sequence may show before it is cut from `text`.
            let _ = stdout.write_all(bytes);
            let _ = stdout.flush();
        })?;
        println!();
        g
    };
    if a.json {
        let out = json!({
            "text": g.text, "token_ids": g.token_ids, "logprobs": g.logprobs, "raw_logprobs": g.raw_logprobs,
            "prompt_tokens": g.prompt_tokens, "completion_tokens": g.token_ids.len(), "finish": g.finish,
            "load_seconds": load_seconds, "prefill_seconds": g.prefill_seconds, "decode_seconds": g.decode_seconds,
            "prefill_tokens_per_second": g.prefill_tokens_per_second(),
            "decode_tokens_per_second": g.decode_tokens_per_second(),
            "kernels": engine.kernels(), "device": device,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!(
            "{} prompt + {} generated tokens ({:?}); prefill {:.1} tok/s, decode {:.1} tok/s ({} prefill, {} decode)",
            g.prompt_tokens,
            g.token_ids.len(),
            g.finish,
            g.prefill_tokens_per_second(),
            g.decode_tokens_per_second(),
            engine.kernels().prefill,
            engine.kernels().decode
        );
    }
    Ok(ExitCode::SUCCESS)
}
