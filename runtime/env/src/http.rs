//! The HTTP side of `ssr env serve`: routes, the bearer token, and long answers.
//!
//! Owns: request parsing into typed errors (malformed JSON is a 400 with a code, never
//! a panic), the token check on every route, and how a long episode is answered: the
//! status and `X-Episode-Id` go out at once, then a space every second while the
//! episode runs, then the JSON result (leading whitespace is valid JSON). The
//! heartbeat is also how a vanished client is noticed: the write fails, the answer is
//! dropped, and its guard cancels the episode. Does not own: playing (`engine`),
//! capacity (`sessions`), the WebSocket protocol (`ws`), MCP (`mcp`).

use crate::api::{EpisodeRequest, EpisodeResult, Health, MakeTasks, RoundRequest, Status};
use crate::engine::{Engine, Players, check_name};
use crate::error::ApiError;
use crate::sessions::{Registry, Running, WatchedArena};
use crate::{mcp, ws};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long `DELETE` waits for a cancelled episode to be gone.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// The heartbeat of a long answer.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What every handler shares.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
    /// Checked on every route when set (required off loopback).
    pub token: Option<String>,
    /// The longest an episode or round may run before it is cancelled.
    pub max_episode: Duration,
}

pub type Shared = Arc<AppState>;

/// Every route of the server.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metadata", get(ws::metadata))
        .route("/schema", get(ws::schema))
        .route("/v1/tasks", get(list_tasks).post(make_tasks))
        .route("/v1/episodes", post(post_episode))
        .route("/v1/episodes/{id}", delete(delete_episode))
        .route("/v1/rounds", post(post_round))
        .route("/ws", get(ws::upgrade))
        .route("/mcp", post(mcp::post))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// The bearer token, or HTTP Basic with the token as password (what OpenEnv's client
/// sends when the token is in its URL's userinfo).
async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    if authorized(req.headers(), token) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return constant_time_eq(bearer.trim().as_bytes(), token.as_bytes());
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = decode_base64(basic.trim()).unwrap_or_default();
        let password = decoded.split(|&b| b == b':').nth(1).unwrap_or_default();
        return constant_time_eq(password, token.as_bytes());
    }
    false
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 (with or without padding); `None` on any other byte.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A JSON body, or a 400 saying what is wrong with it.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed request: {e}")))
}

async fn health(State(s): State<Shared>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "healthy".into(),
        slots: s.registry.slots(),
        slots_free: s.registry.slots_free(),
        episodes_running: s.registry.running(),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksQuery {
    repo: String,
    role: Option<String>,
}

async fn list_tasks(
    State(s): State<Shared>,
    Query(q): Query<TasksQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    match q.role.as_deref() {
        None | Some("solver") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "role `{other}`: tasks are bugs for solvers (an injector's task is a repository)"
            )));
        }
    }
    Ok(axum::Json(json!({"tasks": s.engine.tasks(&q.repo)?})))
}

async fn make_tasks(State(s): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let req: MakeTasks = parse(&body)?;
    s.engine.repo(&req.repo)?;
    let running = s.registry.begin(&format!("tasks-{}", new_id()), 1)?;
    let engine = s.engine.clone();
    Ok(long_answer(&s, running, None, async move {
        match engine.make_tasks(&req).await {
            Ok(verdicts) => {
                let valid: Vec<&str> = verdicts
                    .iter()
                    .filter(|v| v.valid)
                    .map(|v| v.bug_id.as_str())
                    .collect();
                json!({"verdicts": verdicts, "task_ids": valid})
            }
            Err(e) => json!(e.body()),
        }
    }))
}

/// A fresh episode id.
pub fn new_id() -> String {
    format!("e-{}", hex::encode(rand::random::<[u8; 8]>()))
}

async fn post_episode(State(s): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let req: EpisodeRequest = parse(&body)?;
    s.engine.check_episode(&req, true)?;
    let policy = s.engine.policy(req.llm.as_ref(), req.script.as_ref())?;
    let id = req.episode_id.clone().unwrap_or_else(new_id);
    let running = s.registry.begin(&id, 1)?;
    let repo = s.engine.repo(&req.repo)?;
    let players = Players {
        policy,
        arena: Arc::new(WatchedArena {
            inner: repo.arena.clone(),
            registry: s.registry.clone(),
            episode_id: id.clone(),
        }),
    };
    let (engine, shutdown, eid) = (s.engine.clone(), running.shutdown.clone(), id.clone());
    Ok(long_answer(&s, running, Some(&id), async move {
        let result = match engine.episode(&req, &eid, players, shutdown).await {
            Ok(r) => r,
            Err(e) => EpisodeResult::failed(&eid, Status::InfraError, e.to_string()),
        };
        json!(result)
    }))
}

async fn delete_episode(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_name("episode id", &id)?;
    let gone = s.registry.cancel(&id, CANCEL_WAIT).await?;
    if !gone {
        return Err(ApiError::Infra(format!(
            "episode `{id}` did not stop within {} s",
            CANCEL_WAIT.as_secs()
        )));
    }
    Ok(axum::Json(json!({"episode_id": id, "status": "cancelled"})))
}

async fn post_round(State(s): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let req: RoundRequest = parse(&body)?;
    s.engine.check_round(&req)?;
    let id = req.round_id.clone().unwrap_or_else(new_id);
    check_name("round id", &id)?;
    let width = (req.g as usize).min(s.engine.defaults.max_concurrent_episodes.max(1));
    let running = s.registry.begin(&id, width)?;
    let (engine, shutdown, rid) = (s.engine.clone(), running.shutdown.clone(), id.clone());
    Ok(long_answer(&s, running, Some(&id), async move {
        match engine.round(&req, &rid, shutdown).await {
            Ok(r) => json!(r),
            Err(e) => json!({"round_id": rid, "error": e.body()}),
        }
    }))
}

/// Answers with the status and headers now, a heartbeat while `work` runs (in a task
/// of its own that holds `running`, so the slot is freed when the work ends, not when
/// the answer is dropped), then `work`'s JSON. The work is cancelled if the client
/// goes away or the server's deadline passes.
fn long_answer(
    s: &AppState,
    running: Running,
    id: Option<&str>,
    work: impl Future<Output = Value> + Send + 'static,
) -> Response {
    let guard = running.cancel_guard();
    let max = s.max_episode;
    let (tx, rx) = tokio::sync::oneshot::channel::<Value>();
    tokio::spawn(async move {
        let value = running.finish_by(max, work).await;
        drop(running);
        let _ = tx.send(value);
    });
    let body = futures_util::stream::unfold((Some(rx), Some(guard)), |(rx, guard)| async move {
        let mut rx = rx?;
        let mut guard = guard?;
        tokio::select! {
            v = &mut rx => {
                guard.disarm();
                let text = match v {
                    Ok(v) => v.to_string(),
                    Err(_) => json!(ApiError::Infra("the episode task failed".into()).body()).to_string(),
                };
                Some((Ok::<_, std::io::Error>(Bytes::from(text)), (None, None)))
            }
            () = tokio::time::sleep(HEARTBEAT) => Some((Ok(Bytes::from_static(b" ")), (Some(rx), Some(guard)))),
        }
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = id.and_then(|i| HeaderValue::from_str(i).ok()) {
        headers.insert("x-episode-id", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_with_the_token_as_password_is_accepted() {
        let mut h = HeaderMap::new();
        // base64("ssr:s3cret")
        h.insert(
            header::AUTHORIZATION,
            "Basic c3NyOnMzY3JldA==".parse().unwrap(),
        );
        assert!(authorized(&h, "s3cret"));
        assert!(!authorized(&h, "other"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
    }

    #[test]
    fn malformed_json_is_a_bad_request_with_a_code() {
        let e = parse::<EpisodeRequest>(b"{not json").unwrap_err();
        assert_eq!(e.code(), "BAD_REQUEST");
        let e = parse::<EpisodeRequest>(br#"{"repo":"x","role":"solver","bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
