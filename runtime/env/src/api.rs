//! The wire types of the episode API (`/v1/episodes`, `/v1/rounds`, `/v1/tasks`,
//! `/health`) and of `ssr episode`, which reads and writes the same JSON.
//!
//! Owns: every field name a trainer sees, and the meaning of `status`. The per-turn
//! field names are those of Harbor's `rollout_details` (`prompt_token_ids`,
//! `completion_token_ids`, `logprobs`), so a SkyRL or verl adapter is a field copy.
//! Does not own: how an episode is played (`engine`) or served (`http`, `ws`).

use serde::{Deserialize, Serialize};
use ssr_agent::chat::Message;
use ssr_agent::policy::scripted::Scripts;
use ssr_role::Role;

/// `POST /v1/episodes`: play one episode against the model the request names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeRequest {
    pub role: Option<Role>,
    /// A repository name the operator gave at start-up (never a path).
    pub repo: String,
    /// The bug a solver episode attempts (an id from `GET /v1/tasks`).
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub seed: u64,
    /// A client-chosen id; a duplicate of a running or stored one is refused (409).
    #[serde(default)]
    pub episode_id: Option<String>,
    /// The model: an OpenAI-compatible server.
    #[serde(default)]
    pub llm: Option<LlmSpec>,
    /// Instead of a model: recorded turns (the `scripted` policy's format), for tests,
    /// demos and reproducing an episode.
    #[serde(default)]
    pub script: Option<Scripts>,
    #[serde(default)]
    pub limits: Limits,
}

/// The model of one episode or round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// Up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    #[serde(default)]
    pub model: Option<String>,
    /// The name of an environment variable of the server holding the API key (only
    /// names ending in `API_KEY` or `TOKEN` are read).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub sampling: SamplingSpec,
    /// A response header of the model server that carries the weights' version (for
    /// example `x-policy-version`); recorded on every turn as `policy_version`.
    #[serde(default)]
    pub policy_version_header: Option<String>,
    /// The model's context window, when the server does not say it.
    #[serde(default)]
    pub context_tokens: Option<usize>,
}

/// Sampling settings of a request; unset ones keep the server's defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSpec {
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// New tokens per model turn.
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

/// Budgets of one episode; unset ones keep the server's defaults for the role.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub max_context_tokens: Option<usize>,
    #[serde(default)]
    pub tool_timeout_s: Option<f64>,
    #[serde(default)]
    pub episode_timeout_s: Option<f64>,
}

/// How an episode ended, as a trainer needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The episode ended by submitting; `reward` is its score.
    Ok,
    /// A budget (turns, context, time) ended it; `reward` is its score (a solver's
    /// workspace is still evaluated).
    Truncated,
    /// The model's server answered, but not with anything usable; no reward.
    AgentError,
    /// The sandbox, the engine or the model could not run; no reward, no trajectory
    /// to train on.
    InfraError,
    /// `DELETE /v1/episodes/{id}` (or the client going away) stopped it.
    Cancelled,
}

impl Status {
    /// Whether the episode has a reward a trainer may use.
    pub fn scored(self) -> bool {
        matches!(self, Status::Ok | Status::Truncated)
    }
}

/// One model turn of an episode, with the exact tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Everything the model read before this turn (all earlier turns included).
    pub prompt_token_ids: Vec<u32>,
    pub completion_token_ids: Vec<u32>,
    pub logprobs: Option<Vec<f32>>,
    /// `stop`, `length` or `end_of_message`.
    pub finish_reason: String,
    /// True when the ids are those the model sampled and read; false when they were
    /// recomputed from text (a server that takes or gives no token ids).
    pub exact_tokens: bool,
    pub policy_version: Option<String>,
}

/// Model time and environment time of an episode, apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub llm_s: f64,
    pub env_s: f64,
}

/// The answer to `POST /v1/episodes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpisodeResult {
    pub episode_id: String,
    pub status: Status,
    /// The reward under `SSR_SPEC.md` (solver ±1; an injector alone gets its validity
    /// reward); `null` unless `status` is `ok` or `truncated`.
    pub reward: Option<f64>,
    pub messages: Vec<Message>,
    pub turns: Vec<Turn>,
    /// The solver's `patch` and its evaluation, or the injector's `bug_id`, its
    /// verdict and its verification report.
    pub result: serde_json::Value,
    pub timing: Timing,
    /// Why the episode had no reward (`agent_error`, `infra_error`, `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EpisodeResult {
    /// An episode that ended without a reward (`infra_error`, `cancelled`, …) and
    /// without anything to train on.
    pub fn failed(episode_id: &str, status: Status, error: String) -> EpisodeResult {
        EpisodeResult {
            episode_id: episode_id.into(),
            status,
            reward: None,
            messages: Vec::new(),
            turns: Vec::new(),
            result: serde_json::json!({}),
            timing: Timing::default(),
            error: Some(error),
        }
    }
}

/// `POST /v1/rounds`: one self-play round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRequest {
    pub repo: String,
    /// Solver attempts on the injector's bug (SSR_SPEC.md's G).
    #[serde(rename = "G", alias = "g", default = "default_g")]
    pub g: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub round_id: Option<String>,
    #[serde(default)]
    pub llm: Option<LlmSpec>,
    #[serde(default)]
    pub script: Option<Scripts>,
    #[serde(default)]
    pub limits: Limits,
}

fn default_g() -> u32 {
    8
}

/// One trajectory of a round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundTrajectory {
    /// Trajectories with one group id are compared with each other (the injector's
    /// group, and one group per bug for its solvers).
    pub group_id: String,
    pub role: Role,
    #[serde(flatten)]
    pub episode: EpisodeResult,
}

/// The answer to `POST /v1/rounds`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundResult {
    pub round_id: String,
    /// The injector's bug and its verdict (`valid` false when rejected); `null` when
    /// the injector episode did not finish.
    pub bug: Option<serde_json::Value>,
    /// Scored solver attempts that solved it, and all scored attempts.
    pub solved: usize,
    pub attempts: usize,
    pub trajectories: Vec<RoundTrajectory>,
}

/// `POST /v1/tasks`: make procedural bugs into the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeTasks {
    pub repo: String,
    /// `history` or `removal`; unset tries both.
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub seed: u64,
}

fn one() -> u32 {
    1
}

/// A task a solver episode can attempt: a valid bug of the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub repo: String,
    pub role: Role,
    /// `model`, `procedural` or `higher_order`.
    pub source: String,
    pub order: u8,
    /// The tests the bug breaks (the solver's task names them).
    pub fail_to_pass: Vec<String>,
    pub pass_to_pass: usize,
}

/// `GET /health` (OpenEnv's word for a server that answers).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub slots: usize,
    pub slots_free: usize,
    pub episodes_running: usize,
}

/// Every error answer: a machine code and a sentence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}
