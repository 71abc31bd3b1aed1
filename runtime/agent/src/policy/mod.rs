//! The [`Policy`] trait: what the agent loop asks of a model, and what comes back.
//!
//! Owns: the request (prompt as token ids or chat messages, sampling settings, which
//! episode asks) and the [`Generation`] (text, token ids, logprobs, why it stopped,
//! whether the ids are exact). Implementations: [`scripted`] (recorded turns),
//! [`openai`] (any OpenAI-compatible server), [`embedded`] (the trainer's engine
//! in-process). Does not own: the model's numerics.

pub mod embedded;
pub mod openai;
pub mod scripted;

use crate::chat::{Message, TextCodec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the model is asked to continue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    /// The exact token sequence (rendered conversation + generation prompt).
    Tokens(Vec<u32>),
    /// Chat messages; the policy applies its template (or the server's).
    Chat(Vec<Message>),
}

/// Sampling settings of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: usize,
    /// Generation ends after any of these strings.
    pub stop: Vec<String>,
    /// Seed of this generation (derived from the run seed, the episode and the turn).
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 256,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

/// Which episode and turn a request belongs to (for scripted replay and logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTag {
    pub role: ssr_role::Role,
    /// Attempt index within its group (solver attempt on a bug, injection rollout).
    pub attempt: u32,
    /// 0-based model turn within the episode.
    pub turn: u32,
    pub episode_id: String,
}

/// One request to a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: Sampling,
    pub tag: RequestTag,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted its end-of-message token.
    EndOfMessage,
    /// A stop string was produced (included in `text` when `stop_in_text`).
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The server stopped the generation before its end (vLLM's `"abort"`: a weight
    /// update in flight on the trainer's server). Not an answer: the agent loop
    /// discards it and asks again.
    Abort,
}

/// What a policy produced for one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text, without a final end-of-message token.
    pub text: String,
    /// The sampled token ids, including a final end-of-message token when sampled.
    pub token_ids: Vec<u32>,
    /// Log-probability of each sampled token under the sampling policy, when known.
    pub logprobs: Option<Vec<f32>>,
    pub finish: FinishReason,
    /// Whether a stop string that ended generation is part of `text`/`token_ids`
    /// (the embedded engine keeps it; OpenAI-compatible servers drop it).
    pub stop_in_text: bool,
    /// Tokens of the prompt as the policy counted them.
    pub prompt_tokens: usize,
    /// True when `token_ids` are the ids the model sampled; false when they were
    /// recomputed by tokenizing `text` (a server without token ids).
    pub exact_tokens: bool,
    /// Which interface produced it: `embedded`, `completions` (token-id prompt),
    /// `completions-text` (a server that refuses token-id prompts), `chat`, `scripted`.
    pub endpoint: String,
    /// The version of the weights that answered, when the server reports it (a
    /// trainer's server names a response header: `policy_version_header`).
    #[serde(default)]
    pub policy_version: Option<String>,
}

/// Why a policy could not produce a generation.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("scripted policy: no script for role `{role}`")]
    NoScript { role: ssr_role::Role },
    #[error("scripted policy: script {script} of role `{role}` has no turn {turn}")]
    ScriptExhausted {
        role: ssr_role::Role,
        script: usize,
        turn: u32,
    },
    #[error("cannot read the script {path}: {reason}")]
    ScriptFile { path: String, reason: String },
    #[error("policy server {url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("policy server {url} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("policy server {url} sent an unexpected response: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("the prompt ({prompt_tokens} tokens) leaves no room in the {context}-token context")]
    ContextFull {
        prompt_tokens: usize,
        context: usize,
    },
    #[error("this policy needs {needs}")]
    Unsupported { needs: String },
    #[error("embedded engine: {0}")]
    Engine(String),
    #[error("rendering the conversation: {0}")]
    Template(#[from] crate::chat::TemplateError),
}

/// A model that continues prompts. One set of weights plays both roles.
#[async_trait::async_trait]
pub trait Policy: Send + Sync {
    /// Name for logs and run metadata.
    fn name(&self) -> String;
    /// The tokenizer matching the model's ids, when the policy has one: the agent then
    /// sends [`Prompt::Tokens`] and trajectories hold exact ids.
    fn codec(&self) -> Option<Arc<dyn TextCodec>>;
    /// The model's context window in tokens, when known.
    fn context_tokens(&self) -> Option<usize> {
        None
    }
    /// Generates one turn.
    async fn generate(&self, request: GenerateRequest) -> Result<Generation, PolicyError>;
}

/// Cuts a generation at the first stop string, keeping the stop string. Returns the
/// cut text and whether a stop string was found.
pub fn cut_at_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|i| i + s.len()))
        .min()
}
