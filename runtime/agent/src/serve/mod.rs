//! An OpenAI-compatible HTTP server (`ssr serve`): `/v1/models`, `/v1/completions`
//! and `/v1/chat/completions` with logprobs, over a [`Completer`] — the embedded
//! engine, or (for load tests and demos) recorded turns with added latency.
//!
//! Owns: the wire format (the subset of the OpenAI API that the `openai` Python
//! package and this crate's client use, `top_logprobs` in both shapes included, plus
//! vLLM's `return_tokens_as_token_ids` and `stop_reason`), request validation with OpenAI-shaped errors, and graceful
//! shutdown. Does not own: generation (the [`Completer`]; the embedded engine's
//! batching of concurrent requests is the trainer's `infer::batcher`).

mod logprobs;

use crate::chat::{ChatMl, Message, Role, TextCodec, encode_pieces};
use crate::policy::PolicyError;
use crate::policy::embedded::EmbeddedPolicy;
use crate::shutdown::Shutdown;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use logprobs::MAX_TOP_LOGPROBS;
use logprobs::{chat_logprobs, completion_logprobs, top_count};
use serde::Deserialize;
use serde_json::{Value, json};
use ssr_trainer::infer::batcher::{Batcher, BatcherError};
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{
    FinishReason as EngineFinish, GenerateOptions, Generation as EngineGeneration,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the server generates with.
#[async_trait::async_trait]
pub trait Completer: Send + Sync {
    fn model_id(&self) -> String;
    fn codec(&self) -> Arc<dyn TextCodec>;
    fn context_tokens(&self) -> usize;
    async fn complete(
        &self,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<EngineGeneration, PolicyError>;
}

/// The embedded engine as a [`Completer`]: concurrent requests decode together
/// (continuous batching through the trainer's [`Batcher`]: one pass over the weights
/// per step for every request in flight), each with the result it would get alone.
pub struct EngineCompleter {
    pub policy: Arc<EmbeddedPolicy>,
    pub model_id: String,
    /// The queue and thread that batch the requests over the policy's engine.
    batcher: Batcher,
}

/// Requests decoding together by default; more wait in the batcher's queue. Eight
/// fills the AVX-512 tile of the batched Q8_0 kernel (`ssr bench model --batch`).
pub const DEFAULT_MAX_BATCH: usize = 8;

impl EngineCompleter {
    /// Serves `policy`'s engine with at most `max_batch` requests decoding together.
    pub fn new(
        policy: Arc<EmbeddedPolicy>,
        model_id: String,
        max_batch: usize,
    ) -> Result<Self, BatcherError> {
        let batcher = Batcher::spawn(policy.engine(), max_batch)?;
        Ok(EngineCompleter {
            policy,
            model_id,
            batcher,
        })
    }
}

#[async_trait::async_trait]
impl Completer for EngineCompleter {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }
    fn codec(&self) -> Arc<dyn TextCodec> {
        self.policy.trainer_codec()
    }
    fn context_tokens(&self) -> usize {
        crate::policy::Policy::context_tokens(self.policy.as_ref()).unwrap_or(8192)
    }
    async fn complete(
        &self,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<EngineGeneration, PolicyError> {
        let engine_error = |e: BatcherError| PolicyError::Engine(e.to_string());
        let pending = self.batcher.submit(prompt, opts).map_err(engine_error)?;
        // A request abandoned by its client still finishes in the batch (bounded by its
        // max_tokens); its result is then dropped.
        tokio::task::spawn_blocking(move || pending.wait())
            .await
            .map_err(|e| PolicyError::Engine(format!("generation task failed: {e}")))?
            .map_err(engine_error)
    }
}

/// Replays recorded assistant turns, chosen by how many assistant turns the prompt
/// already holds, after a fixed latency: a stand-in for a slow remote model in load
/// tests (the real engine is served by [`EngineCompleter`]).
pub struct ReplayCompleter {
    pub turns: Vec<String>,
    pub latency: Duration,
    pub codec: Arc<dyn TextCodec>,
}

#[async_trait::async_trait]
impl Completer for ReplayCompleter {
    fn model_id(&self) -> String {
        "replay".into()
    }
    fn codec(&self) -> Arc<dyn TextCodec> {
        self.codec.clone()
    }
    fn context_tokens(&self) -> usize {
        1 << 20
    }
    async fn complete(
        &self,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<EngineGeneration, PolicyError> {
        tokio::time::sleep(self.latency).await;
        let top = opts.top_logprobs;
        let open = self.codec.encode_control(ChatMl::START);
        let assistant = self.codec.encode_text("assistant\n");
        let mut pattern = open.clone();
        pattern.extend(&assistant);
        let opens = prompt
            .windows(pattern.len().max(1))
            .filter(|w| *w == pattern.as_slice())
            .count();
        let turn = opens
            .saturating_sub(1)
            .min(self.turns.len().saturating_sub(1));
        let text = self.turns.get(turn).cloned().unwrap_or_default();
        let ids = self.codec.encode_text(&text);
        // A recording has no distribution: the one known token is the whole top list.
        let top_logprobs = if top > 0 {
            ids.iter().map(|&id| vec![(id, -0.5)]).collect()
        } else {
            Vec::new()
        };
        Ok(EngineGeneration {
            logprobs: vec![-0.5; ids.len()],
            raw_logprobs: vec![-0.5; ids.len()],
            top_logprobs,
            token_ids: ids,
            text,
            prompt_tokens: prompt.len(),
            finish: EngineFinish::Stop(0),
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
        })
    }
}

struct AppState {
    completer: Arc<dyn Completer>,
    counter: AtomicU64,
}

/// An OpenAI-shaped error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (status, Json(json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}}))).into_response()
}

/// `stop` is a string or a list of strings.
fn stops(v: &Option<Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "stop must be strings".to_string())
            })
            .collect(),
        Some(_) => Err("stop must be a string or a list of strings".into()),
    }
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Value,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<Value>,
    seed: Option<u64>,
    /// Log-probabilities of the sampled tokens, with this many most likely
    /// alternatives per position (0: none).
    logprobs: Option<u32>,
    #[serde(default)]
    return_tokens_as_token_ids: bool,
    #[serde(default)]
    stream: bool,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessageIn>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<Value>,
    seed: Option<u64>,
    #[serde(default)]
    logprobs: bool,
    /// Most likely alternatives per position (needs `logprobs`).
    top_logprobs: Option<u32>,
    #[serde(default)]
    stream: bool,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct ChatMessageIn {
    role: String,
    content: Value,
}

impl AppState {
    fn options(
        &self,
        max_tokens: Option<usize>,
        temperature: Option<f32>,
        top_p: Option<f32>,
        stop: Vec<String>,
        seed: Option<u64>,
    ) -> GenerateOptions {
        // Without a seed each request gets a fresh one (OpenAI semantics: sampling varies).
        let seed = seed.unwrap_or_else(|| {
            rand::random::<u64>() ^ self.counter.fetch_add(1, Ordering::Relaxed)
        });
        GenerateOptions {
            max_tokens: max_tokens.unwrap_or(16),
            sampling: SamplingOptions {
                temperature: temperature.unwrap_or(1.0),
                top_k: 0,
                top_p: top_p.unwrap_or(1.0),
                seed,
            },
            stop,
            stop_at_eos: true,
            top_logprobs: 0,
        }
    }

    fn check_prompt(&self, ids: &[u32], max_tokens: usize) -> Result<(), Box<Response>> {
        let ctx = self.completer.context_tokens();
        if ids.is_empty() {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "the prompt is empty",
            )));
        }
        if ids.len() + max_tokens.min(1) > ctx {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the prompt has {} tokens; the model's context is {ctx}",
                    ids.len()
                ),
            )));
        }
        Ok(())
    }
}

fn finish_fields(g: &EngineGeneration, stop: &[String]) -> (&'static str, Value) {
    match &g.finish {
        EngineFinish::Eos => ("stop", Value::Null),
        EngineFinish::Stop(i) => ("stop", stop.get(*i).map_or(Value::Null, |s| json!(s))),
        EngineFinish::Length | EngineFinish::ContextFull => ("length", Value::Null),
    }
}

fn usage(g: &EngineGeneration) -> Value {
    json!({"prompt_tokens": g.prompt_tokens, "completion_tokens": g.token_ids.len(), "total_tokens": g.prompt_tokens + g.token_ids.len()})
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    Json(json!({"object": "list", "data": [{"id": st.completer.model_id(), "object": "model", "created": 0, "owned_by": "ssr"}]})).into_response()
}

async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Json<CompletionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if req.stream {
        return error(
            StatusCode::BAD_REQUEST,
            "stream=true is not supported by this server",
        );
    }
    if req.n.is_some_and(|n| n != 1) {
        return error(StatusCode::BAD_REQUEST, "only n=1 is supported");
    }
    let codec = st.completer.codec();
    // A string, a list of token ids, or a one-element list of either.
    let prompt = match &req.prompt {
        Value::Array(a) if a.len() == 1 && !a[0].is_number() => a[0].clone(),
        other => other.clone(),
    };
    let ids: Vec<u32> = match &prompt {
        Value::String(s) => codec_encode_template_text(codec.as_ref(), s),
        Value::Array(a) => match a
            .iter()
            .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<Vec<_>>>()
        {
            Some(ids) => ids,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "prompt must be a string or a list of token ids",
                );
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "prompt must be a string or a list of token ids",
            );
        }
    };
    let stop = match stops(&req.stop) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let top = match req.logprobs.map(|n| top_count(n, "logprobs")).transpose() {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let mut opts = st.options(
        req.max_tokens,
        req.temperature,
        req.top_p,
        stop.clone(),
        req.seed,
    );
    opts.top_logprobs = top.unwrap_or(0);
    if let Err(r) = st.check_prompt(&ids, opts.max_tokens) {
        return *r;
    }
    let g = match st.completer.complete(ids, opts).await {
        Ok(g) => g,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (finish, stop_reason) = finish_fields(&g, &stop);
    let logprobs =
        top.map(|n| completion_logprobs(codec.as_ref(), &g, req.return_tokens_as_token_ids, n));
    let id = st.counter.fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": unix_now(),
        "model": st.completer.model_id(),
        "choices": [{"index": 0, "text": g.text, "finish_reason": finish, "stop_reason": stop_reason, "logprobs": logprobs}],
        "usage": usage(&g),
    }))
    .into_response()
}

/// A text prompt may contain the template's control strings: they become control
/// tokens, as a client rendering its own template expects.
fn codec_encode_template_text(codec: &dyn TextCodec, text: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut rest = text;
    loop {
        let next = [ChatMl::START, ChatMl::END]
            .iter()
            .filter_map(|c| rest.find(c).map(|i| (i, *c)))
            .min();
        match next {
            Some((i, c)) => {
                ids.extend(codec.encode_text(&rest[..i]));
                ids.extend(codec.encode_control(c));
                rest = &rest[i + c.len()..];
            }
            None => {
                ids.extend(codec.encode_text(rest));
                return ids;
            }
        }
    }
}

/// The request's messages: `system`/`developer`, `user`/`tool` (tool observations are
/// user turns, as SmolLM2 was trained) and `assistant`, each a string or text parts.
fn chat_messages(input: &[ChatMessageIn]) -> Result<Vec<Message>, Box<Response>> {
    let mut messages = Vec::new();
    for m in input {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" | "tool" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown message role `{other}`"),
                )));
            }
        };
        // Content is a string or a list of `{"type": "text", "text": …}` parts.
        let content = match &m.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            Value::Null => String::new(),
            _ => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "message content must be a string or text parts",
                )));
            }
        };
        messages.push(Message::new(role, content));
    }
    Ok(messages)
}

async fn chat(
    State(st): State<Arc<AppState>>,
    body: Result<Json<ChatRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if req.stream {
        return error(
            StatusCode::BAD_REQUEST,
            "stream=true is not supported by this server",
        );
    }
    if req.n.is_some_and(|n| n != 1) {
        return error(StatusCode::BAD_REQUEST, "only n=1 is supported");
    }
    let messages = match chat_messages(&req.messages) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages must not be empty");
    }
    let codec = st.completer.codec();
    // The model's own template, as the CLI's `--chat` renders it (SmolLM2's adds its
    // default system turn to a conversation without one).
    let pieces = match codec.template().pieces(&messages, true) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let ids = encode_pieces(Some(codec.as_ref()), &pieces).1;
    let stop = match stops(&req.stop) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let top = match req.top_logprobs.map(|n| top_count(n, "top_logprobs")) {
        Some(Err(r)) => return *r,
        Some(Ok(n)) if !req.logprobs => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("top_logprobs ({n}) needs logprobs: true"),
            );
        }
        Some(Ok(n)) => n,
        None => 0,
    };
    let mut opts = st.options(
        req.max_completion_tokens.or(req.max_tokens).or(Some(512)),
        req.temperature,
        req.top_p,
        stop.clone(),
        req.seed,
    );
    opts.top_logprobs = top;
    if let Err(r) = st.check_prompt(&ids, opts.max_tokens) {
        return *r;
    }
    let g = match st.completer.complete(ids, opts).await {
        Ok(g) => g,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (finish, stop_reason) = finish_fields(&g, &stop);
    let logprobs = req.logprobs.then(|| chat_logprobs(codec.as_ref(), &g, top));
    let id = st.counter.fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": st.completer.model_id(),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": finish, "stop_reason": stop_reason, "logprobs": logprobs}],
        "usage": usage(&g),
    }))
    .into_response()
}

/// The router. `completions: false` serves chat only, like servers that have dropped
/// the legacy endpoint (the client's fallback path is tested against it).
pub fn router(completer: Arc<dyn Completer>, completions_endpoint: bool) -> Router {
    let state = Arc::new(AppState {
        completer,
        counter: AtomicU64::new(0),
    });
    let mut r = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat));
    if completions_endpoint {
        r = r.route("/v1/completions", post(completions));
    }
    r.with_state(state)
}

/// A bound server, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, completer: Arc<dyn Completer>) -> std::io::Result<Self> {
        Self::bind_with(addr, completer, true).await
    }

    /// [`Server::bind`], choosing whether `/v1/completions` exists.
    pub async fn bind_with(
        addr: SocketAddr,
        completer: Arc<dyn Completer>,
        completions_endpoint: bool,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            router: router(completer, completions_endpoint),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is requested, then finishes in-flight requests.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await
    }
}
