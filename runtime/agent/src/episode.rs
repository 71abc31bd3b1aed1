//! The agent loop: prompt → generate → parse one tool call → run it → observe, until
//! the model submits or a budget ends the episode.
//!
//! Owns: turn order, the one-call-per-turn rule, error observations for malformed
//! calls, the budget line of every observation, the per-call wall-clock limit,
//! building the exact token sequence as the conversation grows (ids are appended,
//! never re-tokenized), and asking again for a turn the server aborted
//! ([`FinishReason::Abort`]: a weight update in flight), a bounded number of times,
//! the aborted generation left out of the sequence, and the episode's wall-clock budget
//! (checked before each turn, and cutting a generation or a tool call still running at
//! the deadline: the tools stop the call's command). Does not own: prompts' wording
//! ([`crate::prompts`]), tools or models (behind [`Tools`] and [`Policy`]).

use crate::budget::{Budgets, truncate_output};
use crate::chat::{Message, Piece, Role, Template, TemplateError, TextCodec, encode_pieces};
use crate::policy::{
    FinishReason, GenerateRequest, Generation, Policy, Prompt, RequestTag, Sampling,
};
use crate::shutdown::Shutdown;
use crate::toolcall::{ToolCallSyntax, parse_tool_call};
use crate::tools::{ToolResult, Tools};
use crate::transcript::{EpisodeEnd, EpisodeStats, Segment, Transcript, TurnRecord};
use serde::{Deserialize, Serialize};
use ssr_role::Role as GameRole;
use std::sync::Arc;
use std::time::Instant;

/// How long a cancelled episode waits for its running tool call to stop.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Below this many free context tokens a turn is not started.
const MIN_TURN_TOKENS: usize = 8;
/// Times a turn is asked again after the server aborted it, then the episode ends in
/// a policy error. With [`ABORT_BACKOFF_MS`] doubling up to [`ABORT_BACKOFF_MAX_MS`]
/// that waits about 50 s in all: why so long, a weight update of a large model on the
/// trainer's server takes seconds to tens of seconds; revisit if trainers report
/// longer pauses.
const MAX_ABORT_RETRIES: u32 = 10;
const ABORT_BACKOFF_MS: u64 = 200;
const ABORT_BACKOFF_MAX_MS: u64 = 10_000;

/// Everything that defines one episode except the policy and the tools.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpisodeSpec {
    pub episode_id: String,
    pub role: GameRole,
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
    let mut run = EpisodeRun::start(policy, tools, spec, shutdown);
    let mut end = EpisodeEnd::TurnsExhausted;
    for turn in 0..spec.budgets.max_turns {
        if let Some(e) = run.turn(turn).await {
            end = e;
            break;
        }
    }
    run.finish(end)
}

/// One episode in progress: the conversation, the exact sequence, the turns so far.
struct EpisodeRun<'a> {
    policy: &'a dyn Policy,
    tools: &'a dyn Tools,
    spec: &'a EpisodeSpec,
    shutdown: &'a Shutdown,
    started: Instant,
    /// The model's chat template (through its codec), ChatML without one.
    template: Template,
    /// Why the conversation could not be rendered, once it could not: the episode
    /// ends before its next turn.
    render_error: Option<String>,
    codec: Option<Arc<dyn TextCodec>>,
    /// Context tokens the episode may fill (the policy's window or the budget).
    context: usize,
    shapes: Vec<crate::toolcall::ToolShape>,
    messages: Vec<Message>,
    ledger: Ledger,
    turns: Vec<TurnRecord>,
    stats: EpisodeStats,
    endpoint: String,
    exact: bool,
    /// Prompt plus sampled tokens the policy reported last (without a codec, the
    /// best count of the context used).
    prompt_tokens_seen: usize,
}

impl<'a> EpisodeRun<'a> {
    fn start(
        policy: &'a dyn Policy,
        tools: &'a dyn Tools,
        spec: &'a EpisodeSpec,
        shutdown: &'a Shutdown,
    ) -> Self {
        let codec = policy.codec();
        let template = codec.as_ref().map(|c| c.template()).unwrap_or_default();
        let context = policy
            .context_tokens()
            .map_or(spec.budgets.context_tokens, |c| {
                c.min(spec.budgets.context_tokens)
            });
        let messages = vec![
            Message::new(Role::System, &spec.system),
            Message::new(Role::User, &spec.task),
        ];
        let mut ledger = Ledger {
            codec: codec.clone(),
            segments: Vec::new(),
            len: 0,
        };
        let opening = template.pieces(&messages, true);
        if let Ok(pieces) = &opening {
            ledger.push_read(pieces);
        }
        EpisodeRun {
            policy,
            tools,
            spec,
            shutdown,
            started: Instant::now(),
            template,
            render_error: opening.err().map(|e| rendering_failed(&e)),
            exact: codec.is_some(),
            codec,
            context,
            shapes: tools.specs().iter().map(|s| s.shape()).collect(),
            messages,
            ledger,
            turns: Vec::new(),
            stats: EpisodeStats::default(),
            endpoint: policy.name(),
            prompt_tokens_seen: 0,
        }
    }

    /// Why the episode cannot start another turn, if it cannot; else the room left.
    fn room(&self) -> Result<usize, EpisodeEnd> {
        let budgets = &self.spec.budgets;
        if self.shutdown.is_requested() {
            return Err(EpisodeEnd::Cancelled);
        }
        if let Some(e) = &self.render_error {
            return Err(EpisodeEnd::PolicyError(e.clone()));
        }
        if budgets.episode_timeout_ms > 0
            && self.started.elapsed().as_millis() as u64 >= budgets.episode_timeout_ms
        {
            return Err(EpisodeEnd::EpisodeTimeout);
        }
        let used = if self.codec.is_some() {
            self.ledger.len
        } else {
            self.prompt_tokens_seen.max(self.ledger.len)
        };
        let room = self.context.saturating_sub(used);
        if room < MIN_TURN_TOKENS {
            return Err(EpisodeEnd::ContextExhausted);
        }
        Ok(room)
    }

    fn request(&self, turn: u32, room: usize) -> GenerateRequest {
        let spec = self.spec;
        let mut sampling = spec.sampling.clone();
        sampling.max_tokens = spec.budgets.max_new_tokens.min(room);
        sampling.stop = spec.syntax.stop_sequences();
        sampling.seed =
            spec.sampling.seed ^ (u64::from(turn) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let prompt = if self.codec.is_some() {
            Prompt::Tokens(self.ledger.ids())
        } else {
            Prompt::Chat(self.messages.clone())
        };
        GenerateRequest {
            prompt,
            sampling,
            tag: RequestTag {
                role: spec.role,
                attempt: spec.attempt,
                turn,
                episode_id: spec.episode_id.clone(),
            },
        }
    }

    /// One turn: generate, record the sampled tokens, run the call, observe. `Some`
    /// when the episode ends with it.
    async fn turn(&mut self, turn: u32) -> Option<EpisodeEnd> {
        let room = match self.room() {
            Ok(r) => r,
            Err(end) => return Some(end),
        };
        let t0 = Instant::now();
        let generated = self.generate(turn, room).await;
        let generate_ms = t0.elapsed().as_millis() as u64;
        self.stats.generate_ms += generate_ms;
        let generation = match generated {
            Ok(g) => g,
            Err(end) => return Some(end),
        };
        let close = self.sampled(&generation);
        let stopped_at_close = generation.finish == FinishReason::Stop && !generation.stop_in_text;
        let parsed = parse_tool_call(
            self.spec.syntax,
            &generation.text,
            &self.shapes,
            stopped_at_close,
        );
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
            policy_version: generation.policy_version.clone(),
        };
        self.stats.turns = turn + 1;
        let result = match parsed {
            Ok(call) => match self.call(call, &mut record).await {
                Ok(r) => r,
                Err(end) => return Some(self.last_turn(record, &close, end)),
            },
            Err(e) => {
                self.stats.malformed_calls += 1;
                let text = format!("error: {e}");
                record.call_error = Some(e);
                ToolResult::error(text)
            }
        };
        if result.is_error && record.call.is_some() {
            self.stats.tool_errors += 1;
            record.tool_error = true;
        }
        if result.submitted {
            return Some(self.last_turn(record, &close, EpisodeEnd::Submitted));
        }
        if turn + 1 == self.spec.budgets.max_turns {
            return Some(self.last_turn(record, &close, EpisodeEnd::TurnsExhausted));
        }
        self.observe(turn, &result, record, close);
        None
    }

    /// The turn's generation. One the server aborted is dropped (nothing of it enters
    /// the sequence) and asked again after a back-off, at most [`MAX_ABORT_RETRIES`]
    /// times; the budgets and shutdown are checked before each new try.
    async fn generate(&mut self, turn: u32, room: usize) -> Result<Generation, EpisodeEnd> {
        let mut backoff = std::time::Duration::from_millis(ABORT_BACKOFF_MS);
        for retry in 0..=MAX_ABORT_RETRIES {
            if retry > 0 {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = self.shutdown.requested() => return Err(EpisodeEnd::Cancelled),
                }
                backoff = (backoff * 2).min(std::time::Duration::from_millis(ABORT_BACKOFF_MAX_MS));
                self.room()?;
            }
            let generated = tokio::select! {
                g = self.policy.generate(self.request(turn, room)) => g,
                () = self.shutdown.requested() => return Err(EpisodeEnd::Cancelled),
                // A generation (or, over `/ws`, a client) still busy at the deadline.
                () = until(self.deadline()) => return Err(EpisodeEnd::EpisodeTimeout),
            };
            match generated {
                Ok(g) if g.finish == FinishReason::Abort => self.stats.aborted_generations += 1,
                Ok(g) => return Ok(g),
                Err(e) => return Err(EpisodeEnd::PolicyError(e.to_string())),
            }
        }
        Err(EpisodeEnd::PolicyError(format!(
            "the server aborted turn {turn} {} times in a row",
            MAX_ABORT_RETRIES + 1
        )))
    }

    /// Records what the policy sampled; returns the template's close of the turn.
    fn sampled(&mut self, generation: &Generation) -> Vec<Piece> {
        self.endpoint = generation.endpoint.clone();
        self.exact &= generation.exact_tokens;
        self.prompt_tokens_seen = generation.prompt_tokens + generation.token_ids.len();
        // The end-of-message token's text, when the sampled ids end with it.
        let sampled_end = self.codec.as_ref().and_then(|c| {
            let eom = c.end_of_message()?;
            (generation.token_ids.last() == Some(&eom)).then(|| c.decode(&[eom]))
        });
        let mut sampled_text = generation.text.clone();
        if let Some(end) = &sampled_end {
            sampled_text.push_str(end);
        }
        self.stats.sampled_tokens += generation.token_ids.len();
        self.ledger.push_sampled(
            sampled_text,
            generation.token_ids.clone(),
            generation.logprobs.clone(),
        );
        self.messages
            .push(Message::new(Role::Assistant, &generation.text));
        let close = self
            .template
            .assistant_close(&self.messages, sampled_end.as_deref());
        self.rendered(close)
    }

    /// The pieces, or none with the episode marked to end (see `render_error`).
    fn rendered(&mut self, pieces: Result<Vec<Piece>, TemplateError>) -> Vec<Piece> {
        pieces.unwrap_or_else(|e| {
            self.render_error
                .get_or_insert_with(|| rendering_failed(&e));
            Vec::new()
        })
    }

    /// Runs one tool call under the per-call limit and the episode's deadline; the
    /// episode's end instead of a result when shutdown or the deadline stopped it.
    async fn call(
        &mut self,
        call: crate::toolcall::ToolCall,
        record: &mut TurnRecord,
    ) -> Result<ToolResult, EpisodeEnd> {
        let t1 = Instant::now();
        let timeout = self.spec.budgets.call_timeout();
        let deadline = self.deadline();
        let outcome = {
            let running = tokio::time::timeout(timeout, self.tools.call(&call, timeout));
            tokio::pin!(running);
            tokio::select! {
                r = &mut running => Ok(r),
                () = self.shutdown.requested() => {
                    // The world's sandbox kills the call's command on the same signal;
                    // wait for the call to return so a cancelled episode leaves nothing
                    // running.
                    let _ = tokio::time::timeout(CANCEL_GRACE, running).await;
                    Err(EpisodeEnd::Cancelled)
                }
                () = until(deadline) => {
                    // The episode's time ran out mid-call (a `sleep 600` under a long
                    // per-call limit): the tools stop the command, and the call is
                    // awaited so a timed-out episode leaves nothing running either.
                    self.tools.interrupt();
                    let _ = tokio::time::timeout(CANCEL_GRACE, running).await;
                    Err(EpisodeEnd::EpisodeTimeout)
                }
            }
        };
        record.tool_ms = t1.elapsed().as_millis() as u64;
        self.stats.tool_ms += record.tool_ms;
        record.call = Some(call);
        match outcome {
            Ok(Ok(r)) => Ok(r),
            Err(EpisodeEnd::EpisodeTimeout) => {
                record.tool_timed_out = true;
                self.stats.tool_timeouts += 1;
                Err(EpisodeEnd::EpisodeTimeout)
            }
            Err(end) => Err(end),
            Ok(Err(_)) => {
                record.tool_timed_out = true;
                self.stats.tool_timeouts += 1;
                Ok(ToolResult::error(format!(
                    "error: the tool call did not finish within {} s and was stopped",
                    timeout.as_secs()
                )))
            }
        }
    }

    /// When the episode's wall-clock budget runs out, if it has one.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        let ms = self.spec.budgets.episode_timeout_ms;
        (ms > 0).then(|| {
            tokio::time::Instant::from_std(self.started) + std::time::Duration::from_millis(ms)
        })
    }

    /// Closes the episode's last turn.
    fn last_turn(&mut self, record: TurnRecord, close: &[Piece], end: EpisodeEnd) -> EpisodeEnd {
        self.turns.push(record);
        self.ledger.push_read(close);
        end
    }

    /// What reading observation `m` appends after the assistant turn's `close`: the
    /// observation's turn and the next generation prompt.
    fn observation_pieces(
        &self,
        close: &[Piece],
        m: &Message,
    ) -> Result<Vec<Piece>, TemplateError> {
        let mut grown = self.messages.clone();
        grown.push(m.clone());
        let turn = self.template.extension(&grown, self.messages.len(), true)?;
        Ok([close, &turn].concat())
    }

    /// Shows the call's result to the model, with the budget line.
    fn observe(
        &mut self,
        turn: u32,
        result: &ToolResult,
        mut record: TurnRecord,
        close: Vec<Piece>,
    ) {
        let budgets = &self.spec.budgets;
        // The budget line reports what is left once this observation is read.
        let body = truncate_output(&result.output, budgets.output_bytes);
        let probe = self.observation_pieces(&close, &Message::new(Role::User, &body));
        let probe = self.rendered(probe);
        let probe = self.ledger.count(&probe);
        // The line itself costs about 16 tokens.
        let line = budgets.remaining_line(turn + 1, self.ledger.len + probe + 16);
        let observation = format!("{body}\n{line}");
        let obs_message = Message::new(Role::User, &observation);
        let pieces = self.observation_pieces(&close, &obs_message);
        let pieces = self.rendered(pieces);
        self.ledger.push_read(&pieces);
        self.messages.push(obs_message);
        record.observation = Some(observation);
        self.turns.push(record);
    }

    fn finish(mut self, end: EpisodeEnd) -> Transcript {
        self.stats.total_tokens = self.ledger.len;
        self.stats.wall_ms = self.started.elapsed().as_millis() as u64;
        Transcript {
            episode_id: self.spec.episode_id.clone(),
            role: self.spec.role,
            attempt: self.spec.attempt,
            policy: self.policy.name(),
            endpoint: self.endpoint,
            exact_tokens: self.exact,
            messages: self.messages,
            segments: self.ledger.segments,
            turns: self.turns,
            end,
            stats: self.stats,
            temperature: Some(self.spec.sampling.temperature),
            top_p: Some(self.spec.sampling.top_p),
        }
    }
}

/// Completes at `deadline`; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The episode's end when its conversation cannot be rendered.
fn rendering_failed(e: &TemplateError) -> String {
    format!("the chat template cannot render this conversation: {e}")
}
