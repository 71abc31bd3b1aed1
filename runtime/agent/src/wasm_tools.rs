//! [`WasmTools`]: the episode's tools as the model uses them in `ssr selfplay`, the
//! WebAssembly components of `ssr-toolhost` (bash shim, editor, search, submit and any
//! custom tool the operator's policy grants), called for one [`Episode`].
//!
//! Owns: turning the host's tool descriptions into the [`ToolSpec`]s of the prompt
//! (name, description and argument schema come from each tool's `describe`), mapping a
//! call and its [`ToolReply`] to the loop's [`ToolResult`], reading the `submit` tool's
//! `{"ssr_submit": ...}` convention, and [`RunEnvSandbox`], which gives the bash shim's
//! commands the same environment (PATH, toolchain mounts, limits) as the game's test
//! runs. Does not own: grants, limits or the tools themselves (the host and the
//! policy file), the sandbox's isolation, or verification.

use crate::toolcall::ToolCall;
use crate::tools::{Submission, ToolResult, ToolSpec, Tools};
use serde_json::Value;
use ssr_sandbox::{ExecOutcome, ExecSpec, Mount, Sandbox, SandboxError};
use ssr_toolhost::{Episode, Role, ToolHost, ToolHostError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One [`ToolHost`] shared by every episode of a run (the host bounds its own calls in
/// flight).
pub struct SharedHost {
    pub host: ToolHost,
}

impl SharedHost {
    pub fn new(host: ToolHost) -> Arc<SharedHost> {
        Arc::new(SharedHost { host })
    }
}

/// The tools of one episode over a [`SharedHost`].
pub struct WasmTools {
    host: Arc<SharedHost>,
    episode: Episode,
    specs: Vec<ToolSpec>,
    /// What the last accepted `submit` call said (its `ssr_submit` object).
    submission: Mutex<Option<Submission>>,
    /// The stop flag of the episode's sandbox ([`RunEnvSandbox::cancel`]), when the
    /// builder gave it: [`Tools::interrupt`] sets it.
    interrupt: Option<ssr_sandbox::Cancel>,
}

/// Why an episode's tools could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WasmToolsError {
    #[error("tool `{tool}` describes its arguments with a schema that is not JSON: {reason}")]
    Schema { tool: String, reason: String },
    #[error("the policy grants the {role} no tool, so the model could not act")]
    NoTools { role: &'static str },
}

/// The tools `role` is granted, as the model sees them, `submit` last (what an
/// episode's prompt lists, and what the environment server's `tools/list` answers).
pub fn specs_for(host: &SharedHost, role: Role) -> Result<Vec<ToolSpec>, WasmToolsError> {
    let mut specs = Vec::new();
    for tool in host.host.tools_for(role) {
        let d = &tool.description;
        let parameters: Value =
            serde_json::from_str(&d.parameters_schema).map_err(|e| WasmToolsError::Schema {
                tool: d.name.clone(),
                reason: e.to_string(),
            })?;
        specs.push(ToolSpec {
            name: d.name.clone(),
            description: d.description.clone(),
            parameters,
        });
    }
    if specs.is_empty() {
        return Err(WasmToolsError::NoTools {
            role: role.as_str(),
        });
    }
    specs.sort_by_key(|s| s.name == "submit");
    Ok(specs)
}

impl WasmTools {
    /// The tools the policy grants `episode.role`, in the host's (name) order, with
    /// `submit` last so the prompt ends on how to finish.
    pub fn new(host: Arc<SharedHost>, episode: Episode) -> Result<Self, WasmToolsError> {
        let specs = specs_for(&host, episode.role)?;
        Ok(WasmTools {
            host,
            episode,
            specs,
            submission: Mutex::new(None),
            interrupt: None,
        })
    }

    /// These tools, with `cancel` (the flag the episode's sandbox watches) as what
    /// [`Tools::interrupt`] sets.
    pub fn interrupted_by(mut self, cancel: ssr_sandbox::Cancel) -> Self {
        self.interrupt = Some(cancel);
        self
    }

    /// The episode these tools act for.
    pub fn episode(&self) -> &Episode {
        &self.episode
    }
}

/// The `ssr_submit` object of a successful `submit` result, if the text is one.
fn submission_of(text: &str) -> Option<Submission> {
    let mut v: Value = serde_json::from_str(text.trim()).ok()?;
    serde_json::from_value(v.get_mut("ssr_submit")?.take()).ok()
}

/// The observation for a host failure (a limit or a trap): the model sees what
/// happened and may try again; the episode goes on.
fn host_error_text(tool: &str, e: &ToolHostError) -> String {
    match e {
        ToolHostError::UnknownTool(_) | ToolHostError::NotGranted { .. } => {
            format!("error: there is no tool `{tool}` here")
        }
        other => format!("error: the tool `{tool}` was stopped: {other}"),
    }
}

#[async_trait::async_trait]
impl Tools for WasmTools {
    fn specs(&self) -> Vec<ToolSpec> {
        self.specs.clone()
    }

    async fn call(&self, call: &ToolCall, _timeout: Duration) -> ToolResult {
        if !self.specs.iter().any(|s| s.name == call.name) {
            return ToolResult::error(format!(
                "error: there is no tool `{}`; the tools are {}",
                call.name,
                self.specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // The per-call wall-clock limit is the policy's (`wall_ms`), enforced by the
        // host; the loop's own timeout around this call is the outer bound.
        let (host, episode) = (self.host.clone(), self.episode.clone());
        let (name, arguments) = (call.name.clone(), call.arguments.to_string());
        // A blocking thread: this closure is a blocking-pool thread, so a standard tool
        // runs right here instead of being handed to another worker thread (~30 µs).
        let reply = tokio::task::spawn_blocking(move || {
            let options = ssr_toolhost::CallOptions::blocking_thread();
            host.host.call(&episode, &name, &arguments, options)
        })
        .await;
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return ToolResult::error(host_error_text(&call.name, &e)),
            Err(e) => return ToolResult::error(format!("error: the tool task failed: {e}")),
        };
        let mut text = reply.text();
        if reply.truncated && !text.ends_with('\n') {
            text.push('\n');
        }
        match &reply.result {
            Ok(out) if call.name == "submit" => match submission_of(out) {
                Some(s) => {
                    if let Ok(mut slot) = self.submission.lock() {
                        *slot = Some(s);
                    }
                    ToolResult {
                        output: text,
                        is_error: false,
                        submitted: true,
                    }
                }
                None => ToolResult::error(format!(
                    "error: submit answered without a submission: {text}"
                )),
            },
            Ok(_) => ToolResult::ok(text),
            Err(_) => ToolResult::error(text),
        }
    }

    fn submission(&self) -> Option<Submission> {
        self.submission.lock().ok().and_then(|s| s.clone())
    }

    fn interrupt(&self) {
        if let Some(c) = &self.interrupt {
            c.cancel();
        }
    }
}

/// A [`Sandbox`] that adds an environment to every command: variables, read-only
/// mounts (toolchains outside the minimal rootfs) and memory/pids limits.
///
/// Why: the tool host runs the bash shim's commands with an empty environment; the
/// game's test runs get `RunEnv`'s PATH and mounts. Without this the model's
/// `python3 -m pytest` would not find the interpreter its own tests run with.
pub struct RunEnvSandbox {
    pub inner: Arc<dyn Sandbox>,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// The episode's stop signal: set, it kills the command running now.
    pub cancel: ssr_sandbox::Cancel,
}

impl Sandbox for RunEnvSandbox {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        let mut spec = spec.clone();
        for (k, v) in &self.env {
            spec.env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for m in &self.mounts {
            if !spec.mounts.iter().any(|x| x.guest == m.guest) {
                spec.mounts.push(m.clone());
            }
        }
        if self.memory_bytes.is_some() {
            spec.limits.memory_bytes = self.memory_bytes;
        }
        if self.pids.is_some() {
            spec.limits.pids = self.pids;
        }
        spec.limits.cancel = self.cancel.clone();
        self.inner.exec(&spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_is_read_from_the_submit_convention() {
        use crate::tools::SolverSubmission;
        let s = submission_of(r#"{"ssr_submit": {"role": "solver", "kind": "workspace_diff"}}"#);
        assert_eq!(s, Some(Submission::Solver(SolverSubmission::WorkspaceDiff)));
        let s = submission_of(
            r#"{"ssr_submit": {"role": "solver", "kind": "patch_file", "path": "fix.diff"}}"#,
        );
        assert_eq!(
            s,
            Some(Submission::Solver(SolverSubmission::PatchFile {
                path: "fix.diff".into()
            }))
        );
        let s = submission_of(
            r#"{"ssr_submit": {"role": "injector", "directory": "ssr_artifact", "files": {}}}"#,
        );
        assert_eq!(
            s,
            Some(Submission::Artifact {
                directory: "ssr_artifact".into()
            })
        );
        assert!(submission_of("Submitted.").is_none());
        assert!(submission_of(r#"{"ssr_submit": 3}"#).is_none());
        assert!(submission_of(r#"{"ssr_submit": {"role": "judge"}}"#).is_none());
    }
}
