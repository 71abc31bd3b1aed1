//! The host's typed errors: why a tool could not be loaded, called or finished.
//!
//! A tool's own expected failures are not here: they are [`crate::ToolError`] values
//! returned inside [`crate::ToolReply`]. These are the host's failures and the limits
//! that stopped a guest (traps).

use ssr_role::Role;
use std::path::PathBuf;

/// Which per-call limit stopped a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Guest execution time (epoch interruption), host-call time excluded.
    Cpu,
    /// Linear memory, tables or instances beyond the store's limits.
    Memory,
    /// Wall-clock time of the whole call, host calls included.
    WallClock,
    /// More host calls (workspace writes, execs) than allowed.
    HostCalls,
    /// More live WASI resources (open files, streams) than allowed.
    ResourceTable,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::Cpu => "CPU time",
            LimitKind::Memory => "memory",
            LimitKind::WallClock => "wall-clock time",
            LimitKind::HostCalls => "host calls",
            LimitKind::ResourceTable => "resource table",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolHostError {
    #[error("no tool named `{0}` is loaded")]
    UnknownTool(String),
    #[error("the policy does not grant tool `{tool}` to role `{role}`")]
    NotGranted { tool: String, role: Role },
    #[error("`{path}` is not a valid WebAssembly component: {reason}")]
    InvalidComponent { path: PathBuf, reason: String },
    #[error("`{path}` breaks the tool contract: {reason}")]
    Contract { path: PathBuf, reason: String },
    #[error("tool manifest `{path}`: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("policy file `{path}`: {reason}")]
    Policy { path: PathBuf, reason: String },
    #[error("two tools are named `{name}` ({first} and {second})")]
    DuplicateTool {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "the standard tool `{0}` was not built into this binary and is not in the tools folder; run `just tools` (needs `rustup target add wasm32-wasip2`) and rebuild"
    )]
    StandardToolMissing(String),
    #[error("component cache at `{path}`: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the workspace `{path}` cannot be granted: {reason}")]
    Grant { path: PathBuf, reason: String },
    #[error("tool `{tool}` was stopped: {limit} limit reached ({detail})")]
    Limit {
        tool: String,
        limit: LimitKind,
        detail: String,
    },
    #[error("tool `{tool}` trapped: {message}")]
    Trap { tool: String, message: String },
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("I/O error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ToolHostError {
    /// The limit that stopped the guest, when a limit did.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            ToolHostError::Limit { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    /// The store answered another invocation than was made (a `describe` for a
    /// `call` or the reverse): a host fault, never the guest's doing.
    pub(crate) fn wrong_answer(component: &std::path::Path) -> ToolHostError {
        ToolHostError::Engine(format!(
            "{}: the call answered a different invocation than was made",
            component.display()
        ))
    }
}
