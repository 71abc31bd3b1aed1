//! Native episode tools over a [`Sandbox`]: `bash` (one command in the episode's
//! sandbox over its workspace, oracle paths read-only) and a role-aware `submit`.
//!
//! Why this exists next to the WASM tool host: it needs nothing but the sandbox, so
//! episodes run wherever bwrap runs, and it is the smallest honest tool set for
//! scripted and load tests. The WASM host (`ssr-toolhost`) adds the editor and search
//! tools with per-tool grants; both implement [`Tools`].
//!
//! Owns: mapping a call to an [`ExecSpec`], output formatting and bounds, the
//! injector's artifact presence check on submit. Does not own: isolation (the
//! sandbox) or verification (the game).

use crate::budget::truncate_output;
use crate::toolcall::ToolCall;
use crate::tools::{ToolResult, ToolSpec, Tools};
use serde_json::json;
use ssr_sandbox::{Command, ExecSpec, Limits, Sandbox};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which role the tools serve (decides what `submit` checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolRole {
    /// `submit` requires the five artifact files in `ssr_artifact/`.
    Injector,
    /// `submit` accepts the working tree as the answer.
    Solver,
}

/// The directory, relative to the workspace, where the injector writes its artifact.
pub const ARTIFACT_DIR: &str = "ssr_artifact";
/// Files the injector must write (either spelling of SSR_SPEC.md section 2 counts).
pub const ARTIFACT_FILES: [(&str, &str); 5] = [
    ("test_script.sh", "test_script.sh"),
    ("test_files.txt", "test_files.txt"),
    ("test_parser.py", "parse_test_output.py"),
    ("bug_inject.diff", "bug_patch.diff"),
    ("test_weaken.diff", "test_patch.diff"),
];

/// `bash` + `submit` over one workspace.
pub struct SandboxTools {
    pub sandbox: Arc<dyn Sandbox>,
    pub workspace: PathBuf,
    pub role: ToolRole,
    /// Workspace-relative paths mounted read-only (the solver's oracle files).
    pub read_only_paths: Vec<PathBuf>,
    /// Extra environment (PATH, HOME, …) for every command.
    pub env: BTreeMap<String, String>,
    /// Extra read-only mounts (toolchains).
    pub mounts: Vec<ssr_sandbox::Mount>,
    /// Bytes of output kept per call.
    pub output_bytes: usize,
    pub memory_bytes: Option<u64>,
}

impl SandboxTools {
    fn bash(&self, command: &str, timeout: Duration) -> ToolResult {
        let mut spec = ExecSpec::new(Command::Script(command.to_string()), &self.workspace);
        spec.read_only_paths = self.read_only_paths.clone();
        spec.env = self.env.clone();
        spec.mounts = self.mounts.clone();
        spec.limits = Limits {
            timeout,
            idle_timeout: None,
            memory_bytes: self.memory_bytes,
            pids: Some(256),
            output_bytes: self.output_bytes,
            file_size_bytes: Some(256 << 20),
        };
        match self.sandbox.exec(&spec) {
            Ok(out) => {
                let mut text = String::new();
                text.push_str(&out.stdout);
                if !out.stderr.is_empty() {
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&out.stderr);
                }
                let status = match (out.exit_code, out.timed_out, out.signal) {
                    (_, true, _) => format!("[timed out after {} s]", timeout.as_secs()),
                    (Some(c), _, _) => format!("[exit code {c}]"),
                    (None, _, Some(s)) => format!("[killed by signal {s}]"),
                    _ => "[ended]".into(),
                };
                let body = truncate_output(&text, self.output_bytes);
                let result = format!(
                    "{body}{}{status}",
                    if body.is_empty() || body.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    }
                );
                if out.success() {
                    ToolResult::ok(result)
                } else {
                    ToolResult::error(result)
                }
            }
            Err(e) => ToolResult::error(format!("the command could not be run: {e}")),
        }
    }

    fn submit(&self) -> ToolResult {
        match self.role {
            ToolRole::Solver => ToolResult {
                output: "Submitted: your changes to the working tree are your answer.".into(),
                is_error: false,
                submitted: true,
            },
            ToolRole::Injector => {
                let dir = self.workspace.join(ARTIFACT_DIR);
                let missing: Vec<&str> = ARTIFACT_FILES
                    .iter()
                    .filter(|(a, b)| !dir.join(a).is_file() && !dir.join(b).is_file())
                    .map(|(a, _)| *a)
                    .collect();
                if missing.is_empty() {
                    ToolResult {
                        output: "Submitted: the artifact will be verified.".into(),
                        is_error: false,
                        submitted: true,
                    }
                } else {
                    ToolResult::error(format!(
                        "not submitted: {ARTIFACT_DIR}/ lacks {}",
                        missing.join(", ")
                    ))
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Tools for SandboxTools {
    fn specs(&self) -> Vec<ToolSpec> {
        let submit = match self.role {
            ToolRole::Injector => format!(
                "Submits the bug artifact in `{ARTIFACT_DIR}/` for verification. Ends the episode."
            ),
            ToolRole::Solver => {
                "Submits your changes to the working tree as the fix. Ends the episode.".to_string()
            }
        };
        vec![
            ToolSpec {
                name: "bash".into(),
                description:
                    "Runs one bash command in the repository (no network). Output is cut when long."
                        .into(),
                parameters: json!({"type": "object", "properties": {"command": {"type": "string", "description": "the command"}}, "required": ["command"]}),
            },
            ToolSpec {
                name: "submit".into(),
                description: submit,
                parameters: json!({"type": "object", "properties": {}}),
            },
        ]
    }

    async fn call(&self, call: &ToolCall, timeout: Duration) -> ToolResult {
        match call.name.as_str() {
            "bash" => {
                let Some(cmd) = call.arguments.get("command").and_then(|c| c.as_str()) else {
                    return ToolResult::error("bash needs a string argument `command`");
                };
                let (cmd, this) = (cmd.to_string(), self.clone_for_call());
                // The sandbox call blocks; keep it off the async workers.
                match tokio::task::spawn_blocking(move || this.bash(&cmd, timeout)).await {
                    Ok(r) => r,
                    Err(e) => ToolResult::error(format!("the command task failed: {e}")),
                }
            }
            "submit" => self.submit(),
            other => ToolResult::error(format!("unknown tool `{other}`")),
        }
    }
}

impl SandboxTools {
    fn clone_for_call(&self) -> SandboxTools {
        SandboxTools {
            sandbox: self.sandbox.clone(),
            workspace: self.workspace.clone(),
            role: self.role,
            read_only_paths: self.read_only_paths.clone(),
            env: self.env.clone(),
            mounts: self.mounts.clone(),
            output_bytes: self.output_bytes,
            memory_bytes: self.memory_bytes,
        }
    }
}
