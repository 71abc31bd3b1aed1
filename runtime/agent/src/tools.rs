//! The [`Tools`] seam: the agent loop's view of the tools of one episode.
//!
//! Owns: the description of a tool as the prompt shows it, a call's result as the
//! loop sees it (text, error flag, whether it was the submit call). Does not own:
//! executing tools (the WASM tool host implements [`Tools`]), grants or sandboxes.

use crate::toolcall::{ToolCall, ToolShape};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A tool as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

impl ToolSpec {
    /// The argument a plain-text CWM block fills: the first required string property.
    pub fn shape(&self) -> ToolShape {
        let required = self.parameters.get("required").and_then(Value::as_array);
        let props = self.parameters.get("properties");
        let primary_arg = required
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|name| {
                props
                    .and_then(|p| p.get(*name))
                    .and_then(|p| p.get("type"))
                    .and_then(Value::as_str)
                    == Some("string")
            });
        ToolShape {
            name: self.name.clone(),
            primary_arg: primary_arg.map(str::to_string),
        }
    }
}

/// The result of one call as the loop sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// What the model reads (already bounded by the tool; the loop bounds it again).
    pub output: String,
    /// The tool reported an error the model should react to.
    pub is_error: bool,
    /// The call was an accepted `submit`: the episode ends.
    pub submitted: bool,
}

impl ToolResult {
    pub fn ok(output: impl Into<String>) -> Self {
        ToolResult {
            output: output.into(),
            is_error: false,
            submitted: false,
        }
    }
    pub fn error(output: impl Into<String>) -> Self {
        ToolResult {
            output: output.into(),
            is_error: true,
            submitted: false,
        }
    }
}

/// What an accepted `submit` call handed in (the `submit` tool's `ssr_submit` object:
/// SSR_SPEC.md section 2 for the injector, section 5 for the solver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Submission {
    /// The injector's bug artifact, in `directory` (workspace-relative).
    #[serde(rename = "injector")]
    Artifact { directory: String },
    /// The solver's answer.
    #[serde(rename = "solver")]
    Solver(SolverSubmission),
}

/// How the solver handed in its fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SolverSubmission {
    /// A unified diff in the file at `path` (workspace-relative).
    PatchFile { path: String },
    /// Whatever it changed in its workspace.
    WorkspaceDiff,
}

/// The tools of one episode (bound to its workspace and role by whoever built it).
#[async_trait::async_trait]
pub trait Tools: Send + Sync {
    /// The tools offered, in prompt order.
    fn specs(&self) -> Vec<ToolSpec>;
    /// Runs one call. `timeout` is the per-call budget; the loop also enforces it from
    /// outside, so an implementation that overruns is cut off with an error result.
    async fn call(&self, call: &ToolCall, timeout: Duration) -> ToolResult;
    /// What the accepted `submit` call handed in. `None` when nothing was submitted
    /// or the tools carry no details.
    fn submission(&self) -> Option<Submission> {
        None
    }
    /// Stops the command a call is running now, so that call returns soon (the loop
    /// calls it when the episode's time runs out mid-call). Later calls of these tools
    /// may fail at once. The default does nothing: the loop then waits a short grace
    /// for the call and drops it.
    fn interrupt(&self) {}
}
