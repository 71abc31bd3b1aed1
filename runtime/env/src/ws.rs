//! OpenEnv's protocol (`GET /ws`, `/metadata`, `/schema`) for trainers that sample
//! themselves: one connection is one episode workspace, and the client is the policy.
//!
//! How it reuses the agent loop unchanged: the episode runs on the engine like any
//! other, with a [`ClientPolicy`] whose `generate` hands the conversation to this
//! connection and waits for the client's next `step`. So a step is parsed, budgeted,
//! run and observed exactly as in self-play, and the last step carries the reward the
//! engine gives (a solver's ±1, an injector's validity reward).
//!
//! Wire rules, from OpenEnv's client (`openenv-core`): strictly one reply frame per
//! request frame; `reward` and `done` beside the observation, never in it; errors as
//! `{"type":"error","data":{"message","code"}}`, after which the session goes on; over
//! capacity, the first request is answered `CAPACITY_REACHED` and the socket closed.
//! While a step runs the socket is still read, so pings are answered and a client that
//! goes away is noticed at once: its episode is cancelled and its sandbox removed.

use crate::api::{EpisodeRequest, EpisodeResult, Limits};
use crate::engine::Players;
use crate::error::ApiError;
use crate::http::{Shared, new_id};
use crate::sessions::{Running, WatchedArena};
use async_trait::async_trait;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use ssr_agent::chat::{Message, TextCodec};
use ssr_agent::policy::{FinishReason, GenerateRequest, Generation, Policy, PolicyError, Prompt};
use ssr_agent::{ToolCallSyntax, ToolSpec};
use ssr_role::Role;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long closing a session waits for its episode to be gone.
const END_WAIT: Duration = Duration::from_secs(30);

/// What the episode asks of the client: its next assistant turn.
struct TurnNeeded {
    messages: Vec<Message>,
    turn: u32,
    max_tokens: usize,
    reply: oneshot::Sender<String>,
}

/// The policy of a `/ws` episode: the client on the other end of the socket.
struct ClientPolicy {
    turns: mpsc::Sender<TurnNeeded>,
    close_tag: &'static str,
}

#[async_trait]
impl Policy for ClientPolicy {
    fn name(&self) -> String {
        "openenv-client".into()
    }

    fn codec(&self) -> Option<Arc<dyn TextCodec>> {
        None
    }

    async fn generate(&self, request: GenerateRequest) -> Result<Generation, PolicyError> {
        let gone = || PolicyError::Unreachable {
            url: "ws client".into(),
            attempts: 1,
            reason: "the client closed the session".into(),
        };
        let Prompt::Chat(messages) = request.prompt else {
            return Err(PolicyError::Unsupported {
                needs: "chat messages (the client samples from text)".into(),
            });
        };
        let prompt_tokens = messages.iter().map(|m| m.content.len()).sum::<usize>() / 4;
        let (reply, answer) = oneshot::channel();
        self.turns
            .send(TurnNeeded {
                messages,
                turn: request.tag.turn,
                max_tokens: request.sampling.max_tokens,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        let text = answer.await.map_err(|_| gone())?;
        Ok(Generation {
            policy_version: None,
            stop_in_text: text.contains(self.close_tag),
            text,
            token_ids: Vec::new(),
            logprobs: None,
            // A client may drop the stop string as OpenAI servers do: an unclosed
            // final call is then complete.
            finish: FinishReason::Stop,
            prompt_tokens,
            exact_tokens: false,
            endpoint: "openenv".into(),
        })
    }
}

/// `reset`'s data: the episode to open.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    role: Option<Role>,
    repo: String,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    episode_id: Option<String>,
    #[serde(default)]
    limits: Limits,
}

/// The episode a connection has open.
struct Live {
    id: String,
    req: EpisodeRequest,
    turns: mpsc::Receiver<TurnNeeded>,
    result: oneshot::Receiver<EpisodeResult>,
    /// The reply to the turn the client is asked for now.
    pending: Option<oneshot::Sender<String>>,
    cancel: crate::sessions::CancelGuard,
    finished: tokio::sync::watch::Receiver<bool>,
    steps: u32,
    done: bool,
    max_turns: u32,
}

/// What the episode did next.
enum Event {
    Turn(TurnNeeded),
    Finished(EpisodeResult),
    ClientGone,
}

pub async fn upgrade(State(s): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 << 20)
        .on_upgrade(move |socket| session(s, socket))
}

fn frame(kind: &str, data: Value) -> WsMessage {
    WsMessage::Text(json!({"type": kind, "data": data}).to_string().into())
}

fn error_frame(code: &str, message: impl Into<String>) -> WsMessage {
    frame("error", json!({"code": code, "message": message.into()}))
}

/// One connection, to its end.
async fn session(s: Shared, mut socket: WebSocket) {
    let mut live: Option<Live> = None;
    let mut backlog: VecDeque<WsMessage> = VecDeque::new();
    loop {
        let msg = match backlog.pop_front() {
            Some(m) => m,
            None => match socket.recv().await {
                Some(Ok(m)) => m,
                _ => break,
            },
        };
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Close(_) => break,
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            WsMessage::Binary(_) => {
                if send(
                    &mut socket,
                    error_frame("INVALID_JSON", "binary frames are not read; send JSON text"),
                )
                .await
                .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let reply = match serde_json::from_str::<Value>(&text) {
            Err(e) => Reply::Frame(error_frame("INVALID_JSON", format!("not JSON: {e}"))),
            Ok(v) => handle(&s, &mut socket, &mut live, &mut backlog, v).await,
        };
        match reply {
            Reply::Frame(f) => {
                if send(&mut socket, f).await.is_err() {
                    break;
                }
            }
            Reply::Close(f) => {
                let _ = send(&mut socket, f).await;
                let _ = socket
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: 1013,
                        reason: "try again later".into(),
                    })))
                    .await;
                break;
            }
            Reply::Closed => {
                let _ = socket
                    .send(WsMessage::Close(Some(CloseFrame {
                        code: 1000,
                        reason: "closed".into(),
                    })))
                    .await;
                break;
            }
            Reply::End => break,
        }
    }
    if let Some(l) = live.take() {
        end(l).await;
    }
}

async fn send(socket: &mut WebSocket, m: WsMessage) -> Result<(), axum::Error> {
    socket.send(m).await
}

/// Cancels a session's episode and waits until it is gone (sandbox killed, workspace
/// removed).
async fn end(l: Live) {
    let Live {
        mut finished,
        cancel,
        pending,
        turns,
        ..
    } = l;
    drop(pending);
    drop(turns);
    drop(cancel);
    let _ = tokio::time::timeout(END_WAIT, finished.wait_for(|f| *f)).await;
}

enum Reply {
    Frame(WsMessage),
    /// Answer, then close the socket (over capacity).
    Close(WsMessage),
    /// The client asked to close: no answer, a close frame.
    Closed,
    /// The client went away mid-step.
    End,
}

async fn handle(
    s: &Shared,
    socket: &mut WebSocket,
    live: &mut Option<Live>,
    backlog: &mut VecDeque<WsMessage>,
    v: Value,
) -> Reply {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let data = v.get("data").cloned().unwrap_or_else(|| json!({}));
    match kind {
        "reset" => {
            if let Some(l) = live.take() {
                end(l).await;
            }
            match start(s, data) {
                Ok(l) => {
                    *live = Some(l);
                    advance(s, socket, live, backlog).await
                }
                Err(e @ ApiError::CapacityReached(_)) => {
                    Reply::Close(error_frame(e.code(), e.to_string()))
                }
                Err(e) => Reply::Frame(error_frame(validation_code(&e), e.to_string())),
            }
        }
        "step" => step(s, socket, live, backlog, data).await,
        "state" => Reply::Frame(frame("state", state(live.as_ref()))),
        "close" => Reply::Closed,
        "mcp" => {
            let session = live.as_ref().map(|l| l.id.clone());
            Reply::Frame(frame(
                "mcp",
                crate::mcp::dispatch(s, data, session.as_deref()).await,
            ))
        }
        other => Reply::Frame(error_frame(
            "UNKNOWN_TYPE",
            format!("unknown message type `{other}`: use reset, step, state, close or mcp"),
        )),
    }
}

fn validation_code(e: &ApiError) -> &'static str {
    match e {
        ApiError::Infra(_) => "EXECUTION_ERROR",
        _ => "VALIDATION_ERROR",
    }
}

/// Opens the episode `reset` asks for: checks it, takes a slot, starts it.
fn start(s: &Shared, data: Value) -> Result<Live, ApiError> {
    let r: Reset =
        serde_json::from_value(data).map_err(|e| ApiError::BadRequest(format!("reset: {e}")))?;
    let req = EpisodeRequest {
        role: r.role,
        repo: r.repo,
        task_id: r.task_id,
        seed: r.seed,
        episode_id: r.episode_id,
        llm: None,
        script: None,
        limits: r.limits,
    };
    s.engine.check_episode(&req, false)?;
    let id = req.episode_id.clone().unwrap_or_else(new_id);
    let running: Running = s.registry.begin(&id, 1)?;
    let (turns_tx, turns) = mpsc::channel(1);
    let close_tag = match s.engine.syntax() {
        ToolCallSyntax::Cwm => "</tool>",
        ToolCallSyntax::Json => "</tool_call>",
    };
    let repo = s.engine.repo(&req.repo)?;
    let players = Players {
        policy: Arc::new(ClientPolicy {
            turns: turns_tx,
            close_tag,
        }),
        arena: Arc::new(WatchedArena {
            inner: repo.arena.clone(),
            registry: s.registry.clone(),
            episode_id: id.clone(),
        }),
    };
    let (result_tx, result) = oneshot::channel();
    let finished = running.finished();
    let cancel = running.cancel_guard();
    let max_turns = s.engine.budgets(&req).max_turns;
    let (engine, run_req, eid, max) = (s.engine.clone(), req.clone(), id.clone(), s.max_episode);
    tokio::spawn(async move {
        let shutdown = running.shutdown.clone();
        let work = engine.episode(&run_req, &eid, players, shutdown);
        let r = running.finish_by(max, work).await;
        let r = r.unwrap_or_else(|e| {
            EpisodeResult::failed(&eid, crate::api::Status::InfraError, e.to_string())
        });
        drop(running);
        let _ = result_tx.send(r);
    });
    Ok(Live {
        id,
        req,
        turns,
        result,
        pending: None,
        cancel,
        finished,
        steps: 0,
        done: false,
        max_turns,
    })
}

/// Applies one `step`: a raw assistant text, a direct tool call, or a tool listing.
async fn step(
    s: &Shared,
    socket: &mut WebSocket,
    live: &mut Option<Live>,
    backlog: &mut VecDeque<WsMessage>,
    data: Value,
) -> Reply {
    let Some(l) = live.as_mut() else {
        return Reply::Frame(error_frame(
            "SESSION_ERROR",
            "no episode is open: send reset first",
        ));
    };
    if l.done {
        return Reply::Frame(error_frame(
            "EXECUTION_ERROR",
            "the episode is over: send reset to open another",
        ));
    }
    let text = match data.get("type").and_then(Value::as_str) {
        Some("list_tools") => {
            let tools = tool_list(s, &l.id);
            return Reply::Frame(frame(
                "observation",
                json!({"observation": {"tools": tools}, "reward": null, "done": false}),
            ));
        }
        Some("call_tool") => {
            let name = data
                .get("tool_name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = data.get("arguments").cloned().unwrap_or_else(|| json!({}));
            call_text(s.engine.syntax(), name, &args)
        }
        _ => match data.get("text").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => {
                return Reply::Frame(error_frame(
                    "VALIDATION_ERROR",
                    "a step is {\"text\": <assistant text>}, {\"type\":\"call_tool\",\"tool_name\":..,\"arguments\":{..}} or {\"type\":\"list_tools\"}",
                ));
            }
        },
    };
    let Some(reply) = l.pending.take() else {
        return Reply::Frame(error_frame(
            "SESSION_ERROR",
            "the episode is not waiting for a step",
        ));
    };
    l.steps += 1;
    let _ = reply.send(text);
    advance(s, socket, live, backlog).await
}

/// The text of a direct tool call in the episode's syntax (parsed like a model's).
fn call_text(syntax: ToolCallSyntax, name: &str, args: &Value) -> String {
    match syntax {
        ToolCallSyntax::Cwm => format!("<tool: {name}>\n{args}\n</tool>"),
        ToolCallSyntax::Json => format!(
            "<tool_call>{}</tool_call>",
            json!({"name": name, "arguments": args})
        ),
    }
}

/// Waits for the episode's next turn or its end, reading the socket meanwhile; the
/// reply frame to the request that moved it.
async fn advance(
    s: &Shared,
    socket: &mut WebSocket,
    live: &mut Option<Live>,
    backlog: &mut VecDeque<WsMessage>,
) -> Reply {
    let Some(l) = live.as_mut() else {
        return Reply::End;
    };
    match next_event(l, socket, backlog).await {
        Event::ClientGone => Reply::End,
        Event::Turn(t) => {
            let observation = json!({
                "episode_id": l.id,
                "role": l.req.role,
                "repo": l.req.repo,
                "task_id": l.req.task_id,
                "messages": t.messages,
                "tools": function_tools(s, &l.id),
                "turn": t.turn,
                "turns_left": l.max_turns.saturating_sub(t.turn),
                "max_tokens": t.max_tokens,
            });
            l.pending = Some(t.reply);
            Reply::Frame(frame(
                "observation",
                json!({"observation": observation, "reward": null, "done": false}),
            ))
        }
        Event::Finished(r) => {
            l.done = true;
            let observation = json!({
                "episode_id": l.id,
                "role": l.req.role,
                "repo": l.req.repo,
                "task_id": l.req.task_id,
                "messages": r.messages,
                "status": r.status,
                "result": r.result,
                "error": r.error,
                "turns_left": 0,
            });
            Reply::Frame(frame(
                "observation",
                json!({"observation": observation, "reward": r.reward, "done": true}),
            ))
        }
    }
}

async fn next_event(
    l: &mut Live,
    socket: &mut WebSocket,
    backlog: &mut VecDeque<WsMessage>,
) -> Event {
    loop {
        tokio::select! {
            biased;
            t = l.turns.recv() => match t {
                Some(t) => return Event::Turn(t),
                // The episode ended: its policy is gone; the result follows.
                None => {
                    return match (&mut l.result).await {
                        Ok(r) => Event::Finished(r),
                        Err(_) => Event::ClientGone,
                    };
                }
            },
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return Event::ClientGone,
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(other)) => backlog.push_back(other),
            },
        }
    }
}

fn state(live: Option<&Live>) -> Value {
    match live {
        None => json!({"episode_id": null, "step_count": 0}),
        Some(l) => json!({
            "episode_id": l.id,
            "step_count": l.steps,
            "role": l.req.role,
            "repo": l.req.repo,
            "task_id": l.req.task_id,
            "done": l.done,
        }),
    }
}

fn specs(s: &Shared, id: &str) -> Vec<ToolSpec> {
    s.registry.tools(id).map(|t| t.specs()).unwrap_or_default()
}

/// The tools as OpenAI function schemas (what a chat template takes).
fn function_tools(s: &Shared, id: &str) -> Vec<Value> {
    specs(s, id)
        .into_iter()
        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
        .collect()
}

/// The tools as MCP lists them (what OpenEnv's `MCPToolClient` reads).
fn tool_list(s: &Shared, id: &str) -> Vec<Value> {
    specs(s, id)
        .into_iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect()
}

/// `GET /metadata` (OpenEnv's `EnvironmentMetadata`).
pub async fn metadata(State(s): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({
        "name": "ssr",
        "description": "Self-play SWE-RL: a solver fixes a bug in a sandboxed repository (or an injector makes one); tests decide the reward",
        "version": env!("CARGO_PKG_VERSION"),
        "readme_content": null,
        "author": null,
        "documentation_url": null,
        "repos": s.engine.repos.keys().collect::<Vec<_>>(),
    }))
}

/// `GET /schema`: JSON Schemas of the step action, the observation and the state.
pub async fn schema() -> axum::Json<Value> {
    axum::Json(json!({
        "action": {
            "oneOf": [
                {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "description": "raw assistant text holding one tool call"}}},
                {"type": "object", "required": ["type", "tool_name"], "properties": {"type": {"const": "call_tool"}, "tool_name": {"type": "string"}, "arguments": {"type": "object"}}},
                {"type": "object", "required": ["type"], "properties": {"type": {"const": "list_tools"}}}
            ]
        },
        "observation": {
            "type": "object",
            "properties": {
                "episode_id": {"type": "string"},
                "role": {"enum": ["solver", "injector"]},
                "messages": {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}}}},
                "tools": {"type": "array"},
                "turns_left": {"type": "integer"},
                "max_tokens": {"type": "integer"},
                "status": {"enum": ["ok", "truncated", "agent_error", "infra_error", "cancelled"]},
                "result": {"type": "object"}
            }
        },
        "state": {
            "type": "object",
            "properties": {"episode_id": {"type": ["string", "null"]}, "step_count": {"type": "integer"}, "done": {"type": "boolean"}}
        },
        "reset": {
            "type": "object",
            "required": ["role", "repo"],
            "properties": {"role": {"enum": ["solver", "injector"]}, "repo": {"type": "string"}, "task_id": {"type": "string"}, "seed": {"type": "integer"}, "episode_id": {"type": "string"}, "limits": {"type": "object"}}
        }
    }))
}
