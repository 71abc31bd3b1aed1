//! `POST /mcp` (and `{"type":"mcp"}` over `/ws`): JSON-RPC 2.0 `tools/list` and
//! `tools/call` over the WASM tools, as OpenEnv's `MCPToolClient` speaks it.
//!
//! Owns: the JSON-RPC envelope (HTTP 200 always; exactly one of `result` or `error`;
//! the standard codes). `tools/list` describes the tools from each component's own
//! `describe`; `tools/call` acts on the workspace of an open episode, named by
//! `session_id` (OpenEnv's word) or `episode_id`. Does not own: the tools or their
//! grants (the tool host), sessions (`sessions`).

use crate::http::Shared;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};
use ssr_agent::ToolCall;
use std::time::Duration;

/// The longest one `tools/call` may run.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn post(State(s): State<Shared>, body: Bytes) -> axum::Json<Value> {
    let answer = match serde_json::from_slice::<Value>(&body) {
        Ok(req) => dispatch(&s, req, None).await,
        Err(e) => error(Value::Null, -32700, format!("Parse error: {e}")),
    };
    axum::Json(answer)
}

fn error(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Answers one JSON-RPC request. `session`: the episode of the `/ws` connection it
/// came over, used when the request names none.
pub async fn dispatch(s: &Shared, req: Value, session: Option<&str>) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error(id, -32600, "Invalid Request: no `method`".into());
    };
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    let named = params
        .get("session_id")
        .or_else(|| params.get("episode_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| session.map(str::to_string));
    match method {
        "tools/list" => {
            let specs = match &named {
                Some(ep) => s.registry.tools(ep).map(|t| t.specs()),
                None => None,
            }
            .unwrap_or_else(|| s.engine.tool_specs());
            let tools: Vec<Value> = specs
                .into_iter()
                .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.parameters}))
                .collect();
            result(id, json!({"tools": tools}))
        }
        "tools/call" => {
            let Some(ep) = named else {
                return error(
                    id,
                    -32602,
                    "tools/call needs `session_id` (or `episode_id`) of an open episode".into(),
                );
            };
            let Some(tools) = s.registry.tools(&ep) else {
                return error(
                    id,
                    -32602,
                    format!("no open episode `{ep}` with a workspace"),
                );
            };
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return error(id, -32602, "tools/call needs `name`".into());
            };
            let arguments = params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if !arguments.is_object() {
                return error(id, -32602, "`arguments` must be an object".into());
            }
            if !tools.specs().iter().any(|t| t.name == name) {
                return error(id, -32602, format!("unknown tool `{name}`"));
            }
            let call = ToolCall {
                name: name.to_string(),
                arguments,
            };
            let r = tokio::time::timeout(CALL_TIMEOUT, tools.call(&call, CALL_TIMEOUT)).await;
            match r {
                Ok(r) => result(
                    id,
                    json!({"content": [{"type": "text", "text": r.output}], "isError": r.is_error}),
                ),
                Err(_) => error(
                    id,
                    -32000,
                    format!(
                        "the call did not finish within {} s",
                        CALL_TIMEOUT.as_secs()
                    ),
                ),
            }
        }
        other => error(id, -32601, format!("Method not found: `{other}`")),
    }
}
