//! The `openai` policy: any OpenAI-compatible server (vLLM, SGLang, llama.cpp,
//! Ollama, or `ssr serve`).
//!
//! Owns: the wire format of `/v1/completions` (preferred: the prompt is this project's
//! own ChatML rendering or its exact token ids, so ids and logprobs are those of what
//! the model saw) and of `/v1/chat/completions` (the fallback for servers without the
//! completions endpoint; the trajectory then says `endpoint: chat` and
//! `exact_tokens: false`), retries with exponential back-off, a concurrency bound and
//! per-request timeouts, and a server's `finish_reason: "abort"` mapped to
//! [`FinishReason::Abort`] (the agent loop asks again).
//!
//! Which prompts a server takes ([`PromptForm`]) is detected once per server, on the
//! first request that has token ids to send, and said once on stderr: servers like
//! vLLM and `ssr serve` take a `prompt` of token ids (`return_tokens_as_token_ids`:
//! exact tokens); servers like llama-cpp-python's refuse one (HTTP 500, or 400/422 from
//! a validating server) and get the same conversation as ChatML text from then on
//! (`endpoint: completions-text`, `exact_tokens: false`: the server tokenizes, and
//! control-token strings inside content may be read as controls). Does not own: the
//! chat template ([`crate::chat`]).

use super::{FinishReason, GenerateRequest, Generation, Policy, PolicyError, Prompt};
use crate::chat::{TextCodec, encode_pieces};
use crate::policy::embedded::text_of_ids;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

/// How a server takes a completions prompt (detected once per server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptForm {
    /// A `prompt` of token ids: what the model reads is exactly the agent's sequence.
    TokenIds,
    /// The ChatML text of the sequence, tokenized by the server (inexact tokens).
    Text,
}

/// Settings of the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as a bearer token when set (read from the environment by the CLI).
    #[serde(skip)]
    pub api_key: Option<String>,
    pub max_concurrent: usize,
    pub request_timeout_ms: u64,
    /// Attempts per request (first try included) on connection errors, 429 and 5xx.
    pub max_attempts: u32,
    /// First back-off; doubles each retry.
    pub backoff_ms: u64,
    /// The model's context window, when known.
    pub context_tokens: Option<usize>,
    /// Use only `/v1/chat/completions` (servers without the completions endpoint).
    pub chat_only: bool,
    /// A response header carrying the version of the weights that answered (a trainer's
    /// server names its own); recorded on every turn.
    pub policy_version_header: Option<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: "default".into(),
            api_key: None,
            max_concurrent: 64,
            request_timeout_ms: 300_000,
            max_attempts: 5,
            backoff_ms: 200,
            context_tokens: None,
            chat_only: false,
            policy_version_header: None,
        }
    }
}

/// A client of an OpenAI-compatible server.
pub struct OpenAiPolicy {
    config: OpenAiConfig,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    codec: Option<Arc<dyn TextCodec>>,
    /// Set once the server answered that it has no completions endpoint.
    completions_missing: AtomicBool,
    /// Which prompts the server takes, once a request with token ids was answered.
    prompt_form: OnceLock<PromptForm>,
    /// Held by the one request that detects [`Self::prompt_form`]; the others wait for
    /// its answer rather than each probing the server.
    detecting: Mutex<()>,
}

impl OpenAiPolicy {
    /// `codec`: the model's tokenizer, when this machine has it. With it, prompts are
    /// sent as token ids and trajectories are exact.
    pub fn new(
        config: OpenAiConfig,
        codec: Option<Arc<dyn TextCodec>>,
    ) -> Result<Self, PolicyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .pool_max_idle_per_host(config.max_concurrent)
            .build()
            .map_err(|e| PolicyError::Unreachable {
                url: config.base_url.clone(),
                attempts: 0,
                reason: e.to_string(),
            })?;
        Ok(OpenAiPolicy {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            completions_missing: AtomicBool::new(config.chat_only),
            prompt_form: OnceLock::new(),
            detecting: Mutex::new(()),
            config,
            http,
            codec,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }

    /// POSTs with retries. Returns the JSON body of a 2xx answer, and the weights'
    /// version when the server reports it in [`OpenAiConfig::policy_version_header`].
    async fn post(&self, path: &str, body: &Value) -> Result<(Value, Option<String>), PolicyError> {
        let url = self.url(path);
        let mut delay = Duration::from_millis(self.config.backoff_ms);
        let attempts = self.config.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let mut req = self.http.post(&url).json(body);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let version = self
                        .config
                        .policy_version_header
                        .as_deref()
                        .and_then(|h| resp.headers().get(h))
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        let body =
                            serde_json::from_str(&text).map_err(|e| PolicyError::BadResponse {
                                url: url.clone(),
                                reason: e.to_string(),
                            })?;
                        return Ok((body, version));
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    if !retryable || attempt == attempts {
                        return Err(PolicyError::Http {
                            url,
                            status: status.as_u16(),
                            body: clip(&text, 500),
                        });
                    }
                    last = format!("HTTP {status}");
                }
                Err(e) => {
                    last = e.to_string();
                    if attempt == attempts {
                        break;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        Err(PolicyError::Unreachable {
            url,
            attempts,
            reason: last,
        })
    }

    /// What the server was found to take, once detected.
    pub fn prompt_form(&self) -> Option<PromptForm> {
        self.prompt_form.get().copied()
    }

    /// A completion of `request`: token ids when there are ids to send and the server
    /// takes them, else text. The first request with ids detects which.
    async fn completions(&self, request: &GenerateRequest) -> Result<Generation, PolicyError> {
        let (text, ids) = match &request.prompt {
            Prompt::Tokens(ids) => (
                self.codec.as_ref().map(|c| c.decode(ids)),
                Some(ids.clone()),
            ),
            Prompt::Chat(messages) => {
                let template = self
                    .codec
                    .as_ref()
                    .map(|c| c.template())
                    .unwrap_or_default();
                let (text, ids) =
                    encode_pieces(self.codec.as_deref(), &template.pieces(messages, true)?);
                (Some(text), self.codec.is_some().then_some(ids))
            }
        };
        let Some(ids) = ids else {
            return self.complete(request, text_prompt(text)?).await;
        };
        let text_body = || text_prompt(text.clone());
        match self.prompt_form() {
            Some(PromptForm::TokenIds) => self.complete(request, PromptBody::Ids(ids)).await,
            Some(PromptForm::Text) => self.complete(request, text_body()?).await,
            None => self.detect(request, ids, text_body).await,
        }
    }

    /// Sends the first token-id prompt; when the server refuses it and takes the same
    /// conversation as text, text it is from now on. Either way the answer is decided
    /// once and said once. A server failing both ways decides nothing (the next
    /// request tries again) and the failure is the caller's.
    async fn detect(
        &self,
        request: &GenerateRequest,
        ids: Vec<u32>,
        text_body: impl Fn() -> Result<PromptBody, PolicyError>,
    ) -> Result<Generation, PolicyError> {
        let _detecting = self.detecting.lock().await;
        match self.prompt_form() {
            Some(PromptForm::TokenIds) => {
                return self.complete(request, PromptBody::Ids(ids)).await;
            }
            Some(PromptForm::Text) => return self.complete(request, text_body()?).await,
            None => {}
        }
        let refusal = match self.complete(request, PromptBody::Ids(ids)).await {
            Ok(g) => {
                self.decide(PromptForm::TokenIds, "takes token-id prompts: exact tokens");
                return Ok(g);
            }
            // Why these: llama-cpp-python answers 500 to a `prompt` of ids; a server
            // that validates its request says 400 or 422. Anything else (a 5xx after
            // retries, no connection) is not about the prompt's form.
            Err(PolicyError::Http {
                status: status @ (400 | 422 | 500),
                body,
                ..
            }) => format!("HTTP {status}: {}", clip(&body, 200)),
            Err(e) => return Err(e),
        };
        let g = self.complete(request, text_body()?).await?;
        self.decide(
            PromptForm::Text,
            &format!(
                "refuses token-id prompts ({refusal}) and takes text: sending text prompts, trajectories record exact_tokens: false"
            ),
        );
        Ok(g)
    }

    fn decide(&self, form: PromptForm, what: &str) {
        if self.prompt_form.set(form).is_ok() {
            eprintln!("policy server {}: {what}", self.config.base_url);
        }
    }

    async fn complete(
        &self,
        request: &GenerateRequest,
        prompt: PromptBody,
    ) -> Result<Generation, PolicyError> {
        let (prompt, prompt_len, text_prompt) = match prompt {
            PromptBody::Ids(ids) => {
                let n = ids.len();
                (json!(ids), n, false)
            }
            PromptBody::Text(text) => (json!(text), 0, true),
        };
        let s = &request.sampling;
        let body = json!({
            "model": self.config.model,
            "prompt": prompt,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "stop": s.stop,
            "logprobs": 1,
            // vLLM and `ssr serve`: tokens come back as "token_id:N", i.e. exact ids.
            "return_tokens_as_token_ids": true,
        });
        let (v, policy_version) = self.post("completions", &body).await?;
        let url = self.url("completions");
        let choice = v["choices"]
            .get(0)
            .ok_or_else(|| PolicyError::BadResponse {
                url: url.clone(),
                reason: "no choices".into(),
            })?;
        let text = choice["text"].as_str().unwrap_or_default().to_string();
        let tokens = choice["logprobs"]["tokens"].as_array();
        let ids: Option<Vec<u32>> = tokens.and_then(|t| {
            t.iter()
                .map(|tok| {
                    tok.as_str()
                        .and_then(|s| s.strip_prefix("token_id:"))
                        .and_then(|n| n.parse().ok())
                })
                .collect()
        });
        let logprobs: Option<Vec<f32>> = choice["logprobs"]["token_logprobs"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect());
        let finish = finish_of(choice);
        let prompt_tokens = v["usage"]["prompt_tokens"]
            .as_u64()
            .map_or(prompt_len, |n| n as usize);
        let endpoint = if text_prompt {
            "completions-text"
        } else {
            "completions"
        };
        Ok(match (ids, &self.codec) {
            // Exact only when the server read our ids and sent its own back.
            (Some(ids), Some(codec)) if !text_prompt => Generation {
                policy_version: policy_version.clone(),
                text: text_of_ids(codec.as_ref(), &ids),
                logprobs: logprobs.filter(|l| l.len() == ids.len()),
                token_ids: ids,
                finish,
                // The ids hold what the model sampled, stop string included.
                stop_in_text: true,
                prompt_tokens,
                exact_tokens: true,
                endpoint: endpoint.into(),
            },
            (ids, codec) => {
                let token_ids = ids
                    .filter(|_| !text_prompt)
                    .or_else(|| codec.as_ref().map(|c| c.encode_text(&text)))
                    .unwrap_or_default();
                Generation {
                    policy_version: policy_version.clone(),
                    logprobs: logprobs.filter(|l| l.len() == token_ids.len()),
                    token_ids,
                    text,
                    finish,
                    stop_in_text: false,
                    prompt_tokens,
                    exact_tokens: false,
                    endpoint: endpoint.into(),
                }
            }
        })
    }

    async fn chat(&self, request: &GenerateRequest) -> Result<Generation, PolicyError> {
        let messages = match &request.prompt {
            Prompt::Chat(m) => m.clone(),
            Prompt::Tokens(_) => {
                return Err(PolicyError::Unsupported {
                    needs: "a completions endpoint for token-id prompts (the server has only chat completions)".into(),
                });
            }
        };
        let s = &request.sampling;
        let body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "stop": s.stop,
            "logprobs": true,
        });
        let (v, policy_version) = self.post("chat/completions", &body).await?;
        let url = self.url("chat/completions");
        let choice = v["choices"]
            .get(0)
            .ok_or_else(|| PolicyError::BadResponse {
                url,
                reason: "no choices".into(),
            })?;
        let text = choice["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let logprobs: Option<Vec<f32>> = choice["logprobs"]["content"].as_array().and_then(|a| {
            a.iter()
                .map(|x| x["logprob"].as_f64().map(|f| f as f32))
                .collect()
        });
        let token_ids = self
            .codec
            .as_ref()
            .map(|c| c.encode_text(&text))
            .unwrap_or_default();
        Ok(Generation {
            policy_version,
            logprobs: logprobs.filter(|l| l.len() == token_ids.len()),
            token_ids,
            text,
            finish: finish_of(choice),
            stop_in_text: false,
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
            exact_tokens: false,
            endpoint: "chat".into(),
        })
    }
}

/// A completions prompt as sent.
enum PromptBody {
    Ids(Vec<u32>),
    Text(String),
}

/// The text prompt, when there is one (a token-id prompt without a tokenizer here
/// cannot become text).
fn text_prompt(text: Option<String>) -> Result<PromptBody, PolicyError> {
    text.map(PromptBody::Text)
        .ok_or_else(|| PolicyError::Unsupported {
            needs: "a tokenizer to turn a token-id prompt into text".into(),
        })
}

fn finish_of(choice: &Value) -> FinishReason {
    match choice["finish_reason"].as_str() {
        Some("length") => FinishReason::Length,
        // vLLM: the request was aborted (a weight update in flight); ask again.
        Some("abort") => FinishReason::Abort,
        // vLLM says which stop ended it: a string for a stop sequence, else the EOS.
        Some("stop") if choice["stop_reason"].is_string() => FinishReason::Stop,
        Some("stop") => FinishReason::Stop,
        _ => FinishReason::EndOfMessage,
    }
}

fn clip(s: &str, n: usize) -> String {
    crate::budget::truncate_output(s, n)
}

#[async_trait::async_trait]
impl Policy for OpenAiPolicy {
    fn name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn codec(&self) -> Option<Arc<dyn TextCodec>> {
        if self.completions_missing.load(Ordering::Relaxed) {
            None
        } else {
            self.codec.clone()
        }
    }

    fn context_tokens(&self) -> Option<usize> {
        self.config.context_tokens
    }

    async fn generate(&self, request: GenerateRequest) -> Result<Generation, PolicyError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PolicyError::Engine(e.to_string()))?;
        if self.completions_missing.load(Ordering::Relaxed) {
            return self.chat(&request).await;
        }
        match self.completions(&request).await {
            Err(PolicyError::Http {
                status: 404 | 405 | 501,
                ..
            }) => {
                // The server has no completions endpoint: chat from now on (the
                // transcript records `endpoint: chat` and inexact tokens).
                self.completions_missing.store(true, Ordering::Relaxed);
                match &request.prompt {
                    Prompt::Chat(_) => self.chat(&request).await,
                    Prompt::Tokens(_) => Err(PolicyError::Unsupported {
                        needs: "a completions endpoint; the episode restarts in chat mode".into(),
                    }),
                }
            }
            other => other,
        }
    }
}
