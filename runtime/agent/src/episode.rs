//! The agent loop: prompt → generate → parse one tool call → run it → observe, until
//! the model submits or a budget ends the episode.
//!
//! Owns: turn order, the one-call-per-turn rule, error observations for malformed
//! calls, the budget line of every observation, the per-call wall-clock limit, and
//! building the exact token sequence as the conversation grows (ids are appended,
//! never re-tokenized). Does not own: prompts' wording ([`crate::prompts`]), tools or
//! models (behind [`Tools`] and [`Policy`]).

use crate::budget::{Budgets, truncate_output};
use crate::chat::{ChatMl, Message, Piece, Role, TextCodec, encode_pieces};
use crate::policy::{FinishReason, GenerateRequest, Policy, Prompt, RequestTag, Sampling};
use crate::shutdown::Shutdown;
use crate::toolcall::{ToolCallSyntax, parse_tool_call};
use crate::tools::{ToolResult, Tools};
use crate::transcript::{EpisodeEnd, EpisodeStats, Segment, Transcript, TurnRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Below this many free context tokens a turn is not started.
const MIN_TURN_TOKENS: usize = 8;

/// Everything that defines one episode except the policy and the tools.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpisodeSpec {
    pub episode_id: String,
    /// `injector` or `solver`.
    pub role: String,
    pub attempt: u32,
    pub system: String,
    pub task: String,
    pub budgets: Budgets,
    pub syntax: ToolCallSyntax,
    /// Sampling settings; `max_tokens` and `stop` are set per turn from the budgets
    /// and the syntax, `seed` is mixed with the turn number.
    pub sampling: Sampling,
}

/// The exact sequence under construction.
struct Ledger {
    codec: Option<Arc<dyn TextCodec>>,
    segments: Vec<Segment>,
    len: usize,
}

impl Ledger {
    fn push_read(&mut self, pieces: &[Piece]) {
        let (text, ids) = encode_pieces(self.codec.as_deref(), pieces);
        self.len += ids.len();
        self.segments.push(Segment {
            text,
            token_ids: ids,
            logprobs: None,
            sampled: false,
        });
    }

    fn push_sampled(&mut self, text: String, ids: Vec<u32>, logprobs: Option<Vec<f32>>) {
        self.len += ids.len();
        self.segments.push(Segment {
            text,
            token_ids: ids,
            logprobs,
            sampled: true,
        });
    }

    fn ids(&self) -> Vec<u32> {
        self.segments
            .iter()
            .flat_map(|s| s.token_ids.iter().copied())
            .collect()
    }

    fn count(&self, pieces: &[Piece]) -> usize {
        let (text, ids) = encode_pieces(self.codec.as_deref(), pieces);
        match &self.codec {
            Some(_) => ids.len(),
            // Without a tokenizer, about four bytes per token.
            None => text.len().div_ceil(4),
        }
    }
}

/// Runs one episode to its end. Never panics on model output; every failure is in
/// the transcript's [`EpisodeEnd`] or its turns.
pub async fn run_episode(
    policy: &dyn Policy,
    tools: &dyn Tools,
    spec: &EpisodeSpec,
    shutdown: &Shutdown,
) -> Transcript {
    let started = Instant::now();
    let template = ChatMl;
    let codec = policy.codec();
    let budgets = &spec.budgets;
    let context = policy
        .context_tokens()
        .map_or(budgets.context_tokens, |c| c.min(budgets.context_tokens));
    let shapes: Vec<_> = tools.specs().iter().map(|s| s.shape()).collect();
    let mut messages = vec![
        Message::new(Role::System, &spec.system),
        Message::new(Role::User, &spec.task),
    ];
    let mut ledger = Ledger {
        codec: codec.clone(),
        segments: Vec::new(),
        len: 0,
    };
    ledger.push_read(&template.pieces(&messages, true));
    let mut turns = Vec::new();
    let mut stats = EpisodeStats::default();
    let mut endpoint = policy.name();
    let mut exact = codec.is_some();
    let mut prompt_tokens_seen = 0usize;

    let end = 'episode: {
        for turn in 0..budgets.max_turns {
            if shutdown.is_requested() {
                break 'episode EpisodeEnd::Cancelled;
            }
            if budgets.episode_timeout_ms > 0
                && started.elapsed().as_millis() as u64 >= budgets.episode_timeout_ms
            {
                break 'episode EpisodeEnd::EpisodeTimeout;
            }
            let used = if codec.is_some() {
                ledger.len
            } else {
                prompt_tokens_seen.max(ledger.len)
            };
            let room = context.saturating_sub(used);
            if room < MIN_TURN_TOKENS {
                break 'episode EpisodeEnd::ContextExhausted;
            }
            let mut sampling = spec.sampling.clone();
            sampling.max_tokens = budgets.max_new_tokens.min(room);
            sampling.stop = spec.syntax.stop_sequences();
            sampling.seed =
                spec.sampling.seed ^ (u64::from(turn) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let prompt = if codec.is_some() {
                Prompt::Tokens(ledger.ids())
            } else {
                Prompt::Chat(messages.clone())
            };
            let request = GenerateRequest {
                prompt,
                sampling,
                tag: RequestTag {
                    role: spec.role.clone(),
                    attempt: spec.attempt,
                    turn,
                    episode_id: spec.episode_id.clone(),
                },
            };
            let t0 = Instant::now();
            let generated = tokio::select! {
                g = policy.generate(request) => g,
                () = shutdown.requested() => break 'episode EpisodeEnd::Cancelled,
            };
            let generate_ms = t0.elapsed().as_millis() as u64;
            stats.generate_ms += generate_ms;
            let generation = match generated {
                Ok(g) => g,
                Err(e) => break 'episode EpisodeEnd::PolicyError(e.to_string()),
            };
            endpoint = generation.endpoint.clone();
            exact &= generation.exact_tokens;
            prompt_tokens_seen = generation.prompt_tokens + generation.token_ids.len();
            let ended_with_eom = codec
                .as_ref()
                .and_then(|c| c.end_of_message())
                .is_some_and(|eom| generation.token_ids.last() == Some(&eom));
            let mut sampled_text = generation.text.clone();
            if ended_with_eom {
                sampled_text.push_str(ChatMl::END);
            }
            stats.sampled_tokens += generation.token_ids.len();
            ledger.push_sampled(
                sampled_text,
                generation.token_ids.clone(),
                generation.logprobs.clone(),
            );
            messages.push(Message::new(Role::Assistant, &generation.text));
            let close = template.assistant_close(ended_with_eom);

            let stopped_at_close =
                generation.finish == FinishReason::Stop && !generation.stop_in_text;
            let parsed = parse_tool_call(spec.syntax, &generation.text, &shapes, stopped_at_close);
            let mut record = TurnRecord {
                turn,
                text: generation.text.clone(),
                finish: generation.finish,
                call: None,
                call_error: None,
                observation: None,
                tool_error: false,
                tool_timed_out: false,
                generate_ms,
                tool_ms: 0,
                new_tokens: generation.token_ids.len(),
            };
            stats.turns = turn + 1;
            let result = match parsed {
                Ok(call) => {
                    let t1 = Instant::now();
                    let timeout = budgets.call_timeout();
                    let outcome = tokio::select! {
                        r = tokio::time::timeout(timeout, tools.call(&call, timeout)) => Some(r),
                        () = shutdown.requested() => None,
                    };
                    record.tool_ms = t1.elapsed().as_millis() as u64;
                    stats.tool_ms += record.tool_ms;
                    record.call = Some(call);
                    match outcome {
                        None => {
                            turns.push(record);
                            ledger.push_read(&close);
                            break 'episode EpisodeEnd::Cancelled;
                        }
                        Some(Ok(r)) => r,
                        Some(Err(_)) => {
                            record.tool_timed_out = true;
                            stats.tool_timeouts += 1;
                            ToolResult::error(format!(
                                "error: the tool call did not finish within {} s and was stopped",
                                timeout.as_secs()
                            ))
                        }
                    }
                }
                Err(e) => {
                    stats.malformed_calls += 1;
                    let text = format!("error: {e}");
                    record.call_error = Some(e);
                    ToolResult::error(text)
                }
            };
            if result.is_error && record.call.is_some() {
                stats.tool_errors += 1;
                record.tool_error = true;
            }
            if result.submitted {
                turns.push(record);
                ledger.push_read(&close);
                break 'episode EpisodeEnd::Submitted;
            }
            if turn + 1 == budgets.max_turns {
                turns.push(record);
                ledger.push_read(&close);
                break 'episode EpisodeEnd::TurnsExhausted;
            }
            // The budget line reports what is left once this observation is read.
            let body = truncate_output(&result.output, budgets.output_bytes);
            let observation_pieces = |m: &Message| {
                let mut p = close.clone();
                p.extend(template.message(m));
                p.extend(template.assistant_open());
                p
            };
            let probe = ledger.count(&observation_pieces(&Message::new(Role::User, &body)));
            // The line itself costs about 16 tokens.
            let line = budgets.remaining_line(turn + 1, ledger.len + probe + 16);
            let observation = format!("{body}\n{line}");
            let obs_message = Message::new(Role::User, &observation);
            ledger.push_read(&observation_pieces(&obs_message));
            messages.push(obs_message);
            record.observation = Some(observation);
            turns.push(record);
        }
        EpisodeEnd::TurnsExhausted
    };
    stats.total_tokens = ledger.len;
    stats.wall_ms = started.elapsed().as_millis() as u64;
    Transcript {
        episode_id: spec.episode_id.clone(),
        role: spec.role.clone(),
        attempt: spec.attempt,
        policy: policy.name(),
        endpoint,
        exact_tokens: exact,
        messages,
        segments: ledger.segments,
        turns,
        end,
        stats,
    }
}
