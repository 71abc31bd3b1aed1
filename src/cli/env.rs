//! `ssr env serve` (the environment server for external trainers) and `ssr episode`
//! (the same request and answer, one process per episode).

use anyhow::Context;
use clap::{Args, Subcommand};
use ssr_agent::selfplay::SelfPlayConfig;
use ssr_agent::selfplay::game_arena::{GameArena, tool_host};
use ssr_agent::selfplay::open::load_codec;
use ssr_env::api::{EpisodeRequest, LlmSpec};
use ssr_env::engine::{Engine, Players, RepoEnv, repo_store};
use ssr_env::{ServeConfig, name_repos};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum EnvCmd {
    /// Serves episodes and rounds to external trainers (HTTP episode API, OpenEnv's
    /// WebSocket protocol at /ws, MCP at /mcp).
    Serve(ServeArgs),
}

/// Where the game is played and with what settings (shared by `env serve` and `episode`).
#[derive(Args, Clone)]
pub struct GameArgs {
    /// A repository the requests may name: `NAME=DIR`, or `DIR` (named after its
    /// folder). Repeat for several. Requests name repositories only by name.
    #[arg(long = "repo", required = true)]
    pub repos: Vec<String>,
    /// The bug store (tasks persist here across restarts).
    #[arg(long, default_value = ".ssr-env")]
    pub store: PathBuf,
    /// Self-play settings file (TOML) for budgets, sampling, syntax, reward.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model's GGUF file, for its tokenizer: prompts then go to the model server as
    /// token ids and every turn's ids are exact. Default: the embedded model when set up.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub game: GameArgs,
    /// Address to listen on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Episodes at once; more are refused with 429 CAPACITY_REACHED. Default: the
    /// machine's CPUs.
    #[arg(long)]
    pub slots: Option<usize>,
    /// A bearer token every route checks (also read from SSR_ENV_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// The longest an episode or round may run, in seconds, before it is cancelled.
    #[arg(long, default_value_t = 3600)]
    pub max_episode_s: u64,
    /// Print one line `{"base_url": ..., "slots": N}` once listening.
    #[arg(long)]
    pub json: bool,
}

/// Plays one episode from a request file and writes its result (the episode API's
/// request and answer, with no server). The model URL comes from the request's `llm`,
/// else from OPENAI_BASE_URL (or AGL_OPENAI_BASE_URL).
#[derive(Args)]
pub struct EpisodeArgs {
    #[command(flatten)]
    pub game: GameArgs,
    /// The request (JSON, as `POST /v1/episodes` takes); `-` reads stdin.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the result (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(cmd: EnvCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EnvCmd::Serve(a) => serve(a),
    }
}

/// The engine over the named repositories.
pub fn engine(game: &GameArgs) -> anyhow::Result<Engine> {
    let repos = name_repos(&game.repos)?;
    let defaults = match &game.config {
        Some(p) => SelfPlayConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => SelfPlayConfig::default(),
    };
    let tools = tool_host(&defaults)?;
    let store = &game.store;
    let mut out = ssr_env::Repos::new();
    for (name, dir) in repos {
        let scratch = own_scratch(&store.join(&name).join("scratch"))?;
        let mut arena = GameArena::open(&defaults, &dir, scratch, tools.clone())?;
        arena.repo_name = name.clone();
        let (bugs, rounds) = repo_store(store, &name);
        out.insert(
            name.clone(),
            Arc::new(RepoEnv {
                name,
                arena: Arc::new(arena),
                bugs,
                rounds,
            }),
        );
    }
    let embedded = PathBuf::from(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let tokenizer = game
        .tokenizer
        .clone()
        .or_else(|| embedded.exists().then_some(embedded));
    let codec = tokenizer.map(|p| load_codec(&p)).transpose()?;
    Ok(Engine {
        repos: out,
        defaults,
        codec,
    })
}

/// This process's scratch directory under `root` (`root/<pid>`): servers may share a
/// store (one per Ray node on a shared file system), so each has its own workspaces
/// and snapshots, and one only removes those of processes no longer alive.
fn own_scratch(root: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Completes on Ctrl-C or SIGTERM (what Ray and Kubernetes send to stop a server).
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let slots = args.slots.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        let config = ServeConfig {
            host: args.host.clone(),
            port: args.port,
            slots,
            token: args
                .token
                .clone()
                .or_else(|| std::env::var("SSR_ENV_TOKEN").ok()),
            max_episode: Duration::from_secs(args.max_episode_s.max(1)),
        };
        // Refused before the repositories are opened (which may vendor a Rust
        // project's dependencies): a bad flag answers at once.
        ssr_env::check_exposure(&config.host, config.token.as_deref())?;
        let engine = engine(&args.game)?;
        let bound = ssr_env::bind(&config, engine).await?;
        let base_url = format!("http://{}", bound.addr);
        if args.json {
            println!("{}", serde_json::json!({"base_url": base_url, "slots": slots}));
        } else {
            println!(
                "serving episodes at {base_url} ({slots} slots; POST /v1/episodes, /v1/rounds, GET /ws; Ctrl-C stops)"
            );
        }
        bound.serve(stop_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn episode(args: EpisodeArgs) -> anyhow::Result<ExitCode> {
    let text = if args.input == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the request from stdin")?
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?
    };
    let mut req: EpisodeRequest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an episode request", args.input.display()))?;
    if req.llm.is_none() && req.script.is_none() {
        let base_url = std::env::var("OPENAI_BASE_URL")
            .or_else(|_| std::env::var("AGL_OPENAI_BASE_URL"))
            .context("the request has no `llm` and OPENAI_BASE_URL is not set")?;
        req.llm = Some(LlmSpec {
            base_url,
            api_key_env: Some("OPENAI_API_KEY".into()),
            ..LlmSpec::default()
        });
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let engine = engine(&args.game)?;
        engine.check_episode(&req, true)?;
        let players = Players {
            policy: engine.policy(req.llm.as_ref(), req.script.as_ref())?,
            arena: engine.repo(&req.repo)?.arena.clone(),
        };
        let id = req.episode_id.clone().unwrap_or_else(ssr_env::http::new_id);
        let (handle, shutdown) = ssr_agent::shutdown::channel();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.request();
            }
        });
        anyhow::Ok(engine.episode(&req, &id, players, shutdown).await?)
    })?;
    let json = serde_json::to_string_pretty(&result)?;
    match &args.output {
        Some(p) => std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{json}"),
    }
    Ok(if result.status.scored() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
