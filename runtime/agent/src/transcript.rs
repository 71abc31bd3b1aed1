//! The record of one episode: chat messages, the exact token sequence split into
//! segments (prompt text the model read, tokens it sampled), each turn's tool call and
//! observation, why the episode ended, and its statistics.
//!
//! Owns: the invariant that the segments' texts concatenate to the rendered
//! conversation and their ids are the ids the model read and wrote. Does not own: the
//! trainer's trajectory format (see [`crate::trajectory`]).

use crate::chat::{ChatMl, Message, Role};
use crate::policy::FinishReason;
use crate::toolcall::{ToolCall, ToolCallError};
use serde::{Deserialize, Serialize};

/// A run of tokens that is either read by the model (prompt, observations, template
/// glue) or sampled by it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Per-token logprobs of sampled tokens, when the policy gave them.
    pub logprobs: Option<Vec<f32>>,
    /// True for tokens the policy sampled (loss mask 1).
    pub sampled: bool,
}

/// One model turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub turn: u32,
    pub text: String,
    pub finish: FinishReason,
    pub call: Option<ToolCall>,
    pub call_error: Option<ToolCallError>,
    /// The observation shown after the turn (absent for the final turn).
    pub observation: Option<String>,
    pub tool_error: bool,
    pub tool_timed_out: bool,
    pub generate_ms: u64,
    pub tool_ms: u64,
    pub new_tokens: usize,
    /// The version of the weights that sampled the turn, when the server reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// Why an episode ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum EpisodeEnd {
    /// The model called `submit` and the tool accepted it.
    Submitted,
    TurnsExhausted,
    ContextExhausted,
    EpisodeTimeout,
    /// The policy failed (server down, script exhausted): the message says why. An
    /// infrastructure failure, never a reward (`ssr_game::score`).
    PolicyError(String),
    /// Stopped by shutdown; not a finished episode (a resumed run runs it again).
    Cancelled,
}

impl EpisodeEnd {
    /// The model's error, when the episode ended because the policy failed: such an
    /// episode is scored [`ssr_game::AttemptScore::model_failed`].
    pub fn model_failure(&self) -> Option<&str> {
        match self {
            EpisodeEnd::PolicyError(e) => Some(e),
            _ => None,
        }
    }

    /// The kind of end, without its detail.
    pub fn kind(&self) -> EndKind {
        match self {
            EpisodeEnd::Submitted => EndKind::Submitted,
            EpisodeEnd::TurnsExhausted => EndKind::TurnsExhausted,
            EpisodeEnd::ContextExhausted => EndKind::ContextExhausted,
            EpisodeEnd::EpisodeTimeout => EndKind::EpisodeTimeout,
            EpisodeEnd::PolicyError(_) => EndKind::PolicyError,
            EpisodeEnd::Cancelled => EndKind::Cancelled,
        }
    }
}

/// The kind of an [`EpisodeEnd`] (its `kind` tag): what the resume index records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    Submitted,
    TurnsExhausted,
    ContextExhausted,
    EpisodeTimeout,
    PolicyError,
    Cancelled,
}

/// Counters of one episode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeStats {
    /// Generations the server aborted (`finish_reason: "abort"`) and the loop asked
    /// again; none of their tokens is in the sequence.
    #[serde(default)]
    pub aborted_generations: u32,
    pub turns: u32,
    pub malformed_calls: u32,
    pub tool_errors: u32,
    pub tool_timeouts: u32,
    /// Tokens in the whole sequence (prompt, turns, observations).
    pub total_tokens: usize,
    /// Tokens the policy sampled.
    pub sampled_tokens: usize,
    pub generate_ms: u64,
    pub tool_ms: u64,
    pub wall_ms: u64,
}

/// The whole record of one episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub episode_id: String,
    pub role: ssr_role::Role,
    pub attempt: u32,
    pub policy: String,
    /// `embedded`, `completions`, `chat` or `scripted` (the last turn's interface).
    pub endpoint: String,
    /// All ids are the ids the model read and sampled (false for chat-only servers).
    pub exact_tokens: bool,
    pub messages: Vec<Message>,
    pub segments: Vec<Segment>,
    pub turns: Vec<TurnRecord>,
    pub end: EpisodeEnd,
    pub stats: EpisodeStats,
    /// The sampling temperature and top-p the turns were sampled at (absent in
    /// transcripts written before they were recorded). The trajectory carries them, so
    /// training recomputes log-probs at the temperature that produced them.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
}

impl Transcript {
    /// The conversation as ChatML text: what the segments must concatenate to when
    /// the model's template is ChatML, as SmolLM2's is for a conversation that starts
    /// with a system message (an episode's always does). A conversation whose last
    /// message is not the assistant's has a pending generation prompt.
    pub fn rendered(&self) -> String {
        let pending = self
            .messages
            .last()
            .is_some_and(|m| m.role != Role::Assistant);
        ChatMl.render(&self.messages, pending)
    }

    /// The concatenated token ids.
    pub fn token_ids(&self) -> Vec<u32> {
        self.segments
            .iter()
            .flat_map(|s| s.token_ids.iter().copied())
            .collect()
    }

    /// 1 for sampled tokens, 0 for read ones.
    pub fn loss_mask(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| std::iter::repeat_n(u8::from(s.sampled), s.token_ids.len()))
            .collect()
    }

    /// Per-token logprobs (0 for read tokens), or `None` when any sampled segment
    /// lacks them.
    pub fn logprobs(&self) -> Option<Vec<f32>> {
        let mut out = Vec::new();
        for s in &self.segments {
            match (&s.logprobs, s.sampled) {
                (Some(l), true) if l.len() == s.token_ids.len() => out.extend_from_slice(l),
                (_, true) if !s.token_ids.is_empty() => return None,
                _ => out.extend(std::iter::repeat_n(0.0, s.token_ids.len())),
            }
        }
        Some(out)
    }

    /// The episode ran to a real end (not stopped by shutdown).
    pub fn finished(&self) -> bool {
        self.end != EpisodeEnd::Cancelled
    }
}
