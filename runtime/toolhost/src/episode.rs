//! The runtime's side of a call and what comes back: the [`Episode`] (role, repository,
//! oracle files, sandbox) built by the runtime, never by the model, the [`ToolReply`],
//! and how a host is set up ([`HostConfig`]).
//!
//! Does not own running calls (`registry`, `call`).

use crate::ToolError;
use crate::cache::ComponentCache;
use crate::policy::{Policy, Role};
use ssr_sandbox::Sandbox;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a host is set up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub policy: Policy,
    /// Folders scanned for custom tools (`tool.toml` in the folder or one level below).
    pub tool_dirs: Vec<PathBuf>,
    /// Where compiled components are cached; `None` compiles in memory every start.
    pub cache_dir: Option<PathBuf>,
    /// Load the four standard tools (bash, editor, search, submit).
    pub standard_tools: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            policy: Policy::default(),
            tool_dirs: Vec::new(),
            cache_dir: ComponentCache::default_dir(),
            standard_tools: true,
        }
    }
}

/// Where a tool came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolOrigin {
    /// Built into this binary (or found in the tools-wasm build folder).
    Standard,
    /// Loaded from a manifest in a tools folder.
    Custom { manifest: PathBuf },
}

/// The runtime's side of a call: which role, which repository, which files are the
/// episode's oracle, where commands run. Built by the runtime, never by the model.
#[derive(Clone)]
pub struct Episode {
    pub role: Role,
    /// The episode's repository on the host.
    pub repo: PathBuf,
    /// Per-episode scratch root; each tool granted `state` gets `<state_dir>/<tool>`
    /// at `/state`. `None`: no tool gets state (the editor's undo says so).
    pub state_dir: Option<PathBuf>,
    /// Repository-relative files that stay read-only (the oracle's `test_files.txt`),
    /// on top of the role's protected globs.
    pub oracle_files: Vec<String>,
    /// Where the bash shim's commands run; `None`: exec is refused.
    pub sandbox: Option<Arc<dyn Sandbox>>,
    /// Where the repository appears in the sandbox (and in the model's paths).
    pub workspace_guest: PathBuf,
}

impl std::fmt::Debug for Episode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Episode")
            .field("role", &self.role)
            .field("repo", &self.repo)
            .field("state_dir", &self.state_dir)
            .field("oracle_files", &self.oracle_files)
            .field("sandbox", &self.sandbox.as_ref().map(|s| s.name()))
            .finish()
    }
}

impl Episode {
    pub fn new(role: Role, repo: impl Into<PathBuf>) -> Self {
        Episode {
            role,
            repo: repo.into(),
            state_dir: None,
            oracle_files: Vec::new(),
            sandbox: None,
            workspace_guest: PathBuf::from("/repo"),
        }
    }
}

/// What a call returned.
#[derive(Clone, Debug)]
pub struct ToolReply {
    /// The text for the model, or the tool's typed error.
    pub result: Result<String, ToolError>,
    /// The result text was cut to the output limit.
    pub truncated: bool,
    /// The guest's stdout and stderr (capped), for logs, never for the model.
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ToolReply {
    /// The observation text: the result, or the error as `kind: message`.
    pub fn text(&self) -> String {
        match &self.result {
            Ok(t) => t.clone(),
            Err(e) => format!("error ({}): {}", e.kind(), e.message()),
        }
    }
}
