//! `ssr serve`: the embedded model as an OpenAI-compatible server.

use anyhow::Context;
use clap::Args;
use ssr_agent::policy::embedded::EmbeddedPolicy;
use ssr_agent::serve::{Completer, EngineCompleter, Server};
use ssr_agent::shutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Serves the embedded engine over HTTP: `/v1/models`, `/v1/completions` and
/// `/v1/chat/completions` with logprobs (`stream` is not supported). Prompts may be
/// token ids; `return_tokens_as_token_ids` returns the sampled ids exactly.
#[derive(Args)]
pub struct ServeArgs {
    /// The GGUF model file.
    #[arg(long, default_value = ".models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The model id the server reports (default: the file's stem).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Requests decoding together in one batch (continuous batching: one pass over the
    /// weights per step serves them all); more wait in a queue.
    #[arg(long, default_value_t = ssr_agent::serve::DEFAULT_MAX_BATCH)]
    pub max_concurrent: usize,
    /// Print the listening address as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let policy = EmbeddedPolicy::load(&args.model, args.max_concurrent).with_context(|| {
            format!(
                "loading {} (run `just setup` to fetch the model)",
                args.model.display()
            )
        })?;
        let model_id = args.model_id.clone().unwrap_or_else(|| {
            args.model
                .file_stem()
                .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
        });
        let completer: Arc<dyn Completer> = Arc::new(
            EngineCompleter::new(Arc::new(policy), model_id.clone(), args.max_concurrent)
                .context("starting the batching thread")?,
        );
        let addr: SocketAddr = format!("{}:{}", args.host, args.port)
            .parse()
            .context("parsing --host/--port")?;
        let server = Server::bind(addr, completer)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = server.local_addr()?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"base_url": format!("http://{local}/v1"), "model": model_id})
            );
        } else {
            println!("serving {model_id} at http://{local}/v1 (Ctrl-C stops)");
        }
        let (handle, rx) = shutdown::channel();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.request();
            }
        });
        server.run(rx).await.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
