//! ssr as an RL environment for external trainers: `ssr env serve` and `ssr episode`.
//!
//! Two front doors onto the existing agent layer (the game, the agent loop and the
//! WASM tools are reused, not copied):
//! - the **episode API** (`http`): the server plays a whole episode, or a whole
//!   self-play round, against the OpenAI-compatible model URL the request names, and
//!   returns exact token ids, logprobs, the reward and the time split;
//! - **OpenEnv's protocol** (`ws`, `mcp`): the trainer samples, the server steps.
//!
//! ```text
//!  trainer ──HTTP──► http ──► engine ──► ssr_agent::selfplay phases (solver_attempt,
//!  trainer ──WS────► ws ───┘     │        injector_episode, inject/solve phases) over
//!                                │        a per-request Table (policy = the request's)
//!                  sessions ◄────┘        └─► GameArena (ssr-game, ssr-sandbox, WASM tools)
//!  (slots, running episodes, cancel, each episode's tools for MCP)
//! ```
//!
//! Owns: the wire protocols, capacity, cancellation and the mapping of an episode's
//! end to what a trainer reads (`api::Status`). Does not own: any rule of the game or
//! of the agent loop.

pub mod api;
pub mod engine;
pub mod error;
pub mod http;
pub mod mcp;
pub mod sessions;
pub mod ws;

pub use api::{EpisodeRequest, EpisodeResult, Status};
pub use engine::{Engine, Players, RepoEnv, Repos};
pub use error::ApiError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How `ssr env serve` was asked to run.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub slots: usize,
    pub token: Option<String>,
    pub max_episode: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Names the repositories: `NAME=DIR` or `DIR` (named after its folder); duplicate
/// names and names that are not names are refused.
pub fn name_repos(specs: &[String]) -> Result<Vec<(String, PathBuf)>, ServeError> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in specs {
        let (name, dir) = match spec.split_once('=') {
            Some((n, d)) => (n.to_string(), PathBuf::from(d)),
            None => {
                let dir = PathBuf::from(spec);
                let name = std::fs::canonicalize(&dir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                (name, dir)
            }
        };
        engine::check_name("repository", &name).map_err(|e| ServeError::Config(e.to_string()))?;
        if !dir.join(".git").exists() {
            return Err(ServeError::Config(format!(
                "--repo {spec}: {} is not a git repository",
                dir.display()
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ServeError::Config(format!(
                "two repositories are named `{name}`; name them: --repo NAME=DIR"
            )));
        }
        out.push((name, dir));
    }
    if out.is_empty() {
        return Err(ServeError::Config("give at least one --repo".into()));
    }
    Ok(out)
}

/// Refuses to listen off loopback without a token.
pub fn check_exposure(host: &str, token: Option<&str>) -> Result<(), ServeError> {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && token.is_none_or(str::is_empty) {
        return Err(ServeError::Config(format!(
            "binding {host} (not loopback) needs --token: every route then checks it"
        )));
    }
    Ok(())
}

/// A bound server, ready to serve.
pub struct Bound {
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
    pub state: http::Shared,
}

/// Binds the listener and builds the state (the caller prints the address, then
/// calls [`Bound::serve`]).
pub async fn bind(config: &ServeConfig, engine: Engine) -> Result<Bound, ServeError> {
    bind_shared(config, Arc::new(engine)).await
}

/// [`bind`] over an engine the caller also uses (the benchmark plays the same
/// episodes in-process).
pub async fn bind_shared(config: &ServeConfig, engine: Arc<Engine>) -> Result<Bound, ServeError> {
    check_exposure(&config.host, config.token.as_deref())?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let state = Arc::new(http::AppState {
        engine,
        registry: sessions::Registry::new(config.slots.max(1)),
        token: config.token.clone(),
        max_episode: config.max_episode,
    });
    Ok(Bound {
        listener,
        addr,
        state,
    })
}

impl Bound {
    /// Serves until `stop` completes; running episodes are cancelled on the way out.
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let app = http::router(self.state.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(ServeError::Serve)
    }
}
