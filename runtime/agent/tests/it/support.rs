//! Test doubles and fixtures: a byte-level codec (next to tests with the real
//! tokenizer in `tokens.rs`), tools that answer from a table, the model file.

use serde_json::json;
use ssr_agent::chat::{ChatMl, TextCodec};
use ssr_agent::toolcall::ToolCall;
use ssr_agent::tools::{ToolResult, ToolSpec, Tools};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bytes are ids 0..=255; `<|im_start|>` is 256, `<|im_end|>` 257.
pub struct ByteCodec;

impl TextCodec for ByteCodec {
    fn encode_text(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn encode_control(&self, control: &str) -> Vec<u32> {
        match control {
            ChatMl::START => vec![256],
            ChatMl::END => vec![257],
            other => self.encode_text(other),
        }
    }
    fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for id in ids {
            match id {
                256 => out.extend_from_slice(ChatMl::START.as_bytes()),
                257 => out.extend_from_slice(ChatMl::END.as_bytes()),
                b => out.push(*b as u8),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    fn end_of_message(&self) -> Option<u32> {
        Some(257)
    }
}

/// `bash` echoes its command back (or sleeps for `sleep N`, until interrupted);
/// `submit` submits.
#[derive(Default)]
pub struct EchoTools {
    pub calls: Mutex<Vec<ToolCall>>,
    /// Set by [`Tools::interrupt`]: a `sleep` in progress ends.
    pub interrupted: AtomicBool,
}

#[async_trait::async_trait]
impl Tools for EchoTools {
    fn specs(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "bash".into(),
                description: "Runs a bash command.".into(),
                parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
            },
            ToolSpec {
                name: "submit".into(),
                description: "Submits.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        ]
    }

    async fn call(&self, call: &ToolCall, _timeout: Duration) -> ToolResult {
        self.calls.lock().unwrap().push(call.clone());
        match call.name.as_str() {
            "submit" => ToolResult {
                output: "submitted".into(),
                is_error: false,
                submitted: true,
            },
            _ => {
                let cmd = call.arguments["command"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Some(secs) = cmd.strip_prefix("sleep ") {
                    let end = tokio::time::Instant::now()
                        + Duration::from_secs(secs.trim().parse().unwrap_or(1));
                    while tokio::time::Instant::now() < end
                        && !self.interrupted.load(Ordering::SeqCst)
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                if cmd == "fail" {
                    ToolResult::error("exit 1")
                } else {
                    ToolResult::ok(format!("ran: {cmd}"))
                }
            }
        }
    }

    fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }
}

/// The embedded model, when set up (`just setup` or `SSR_MODEL`).
pub fn model_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSR_MODEL") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.models/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.exists().then_some(p)
}

/// A tool host with the standard tools and the custom tools in `tool_dirs`, compiled
/// components cached for the whole test binary.
pub fn tool_host(policy: ssr_toolhost::Policy, tool_dirs: &[PathBuf]) -> ssr_toolhost::ToolHost {
    ssr_toolhost::ToolHost::new(ssr_toolhost::HostConfig {
        policy,
        tool_dirs: tool_dirs.to_vec(),
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent-toolhost-cache")),
        standard_tools: true,
    })
    .expect("the tool host starts (tools-wasm built by ssr-toolhost's build script)")
}

/// The bubblewrap sandbox, or `None` (with a note) where it cannot run.
pub fn bwrap() -> Option<std::sync::Arc<dyn ssr_sandbox::Sandbox>> {
    match ssr_sandbox::BwrapSandbox::new(ssr_sandbox::Environment::default()) {
        Ok(s) => Some(std::sync::Arc::new(s.with_warm_pool(false))),
        Err(e) => {
            eprintln!("skipped: no sandbox backend here ({e})");
            None
        }
    }
}
