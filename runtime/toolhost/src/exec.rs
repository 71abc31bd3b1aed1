//! The host side of the `exec` import: the role's command policy, then one command in
//! the episode's [`Sandbox`] with the protected files mounted read-only and a timeout
//! bounded by the call's remaining wall-clock time.
//!
//! Does not own the sandbox (any [`Sandbox`] backend works) or the presentation of the
//! output (the bash guest formats it).

use crate::ToolError;
use crate::bindings::ssr::tool::exec::ExecResult;
use crate::grants::Protected;
use regex::Regex;
use ssr_sandbox::{Command, ExecSpec, Sandbox};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries visited when listing protected files for the sandbox's read-only mounts.
const PROTECTED_WALK_LIMIT: usize = 200_000;

/// Where and how one call's commands run.
#[derive(Clone)]
pub struct ExecGrant {
    pub sandbox: Arc<dyn Sandbox>,
    /// The host directory of the episode's repository.
    pub workspace: PathBuf,
    /// Where the repository appears inside the sandbox.
    pub workspace_guest: PathBuf,
    /// Commands matching any of these are refused.
    pub deny: Vec<Regex>,
    /// Files mounted read-only over the writable workspace.
    pub protected: Protected,
    /// Ceiling of one command's timeout.
    pub max_timeout: Duration,
    /// Bytes of stdout and of stderr kept each.
    pub output_bytes: usize,
    /// Variables set for every command.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for ExecGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecGrant")
            .field("sandbox", &self.sandbox.name())
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

/// A sandbox failure (not a command failure): a host fault, so the call traps.
#[derive(Debug, thiserror::Error)]
#[error("sandbox `{backend}` could not run the command: {message}")]
pub struct SandboxFault {
    pub backend: &'static str,
    pub message: String,
}

impl ExecGrant {
    /// Runs `command`; `deadline` is the call's wall-clock deadline, which the command's
    /// timeout never passes.
    pub fn run(
        &self,
        command: &str,
        timeout_ms: u32,
        deadline: Instant,
    ) -> Result<Result<ExecResult, ToolError>, SandboxFault> {
        if let Some(rule) = self.deny.iter().find(|r| r.is_match(command)) {
            return Ok(Err(ToolError::PermissionDenied(format!(
                "the operator's policy refuses this command (it matches `{}`)",
                rule.as_str()
            ))));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)))
            .min(self.max_timeout)
            .min(remaining);
        if timeout.is_zero() {
            return Ok(Err(ToolError::Failed(
                "no time is left in this tool call to run a command".into(),
            )));
        }
        let mut spec = ExecSpec::new(Command::Script(command.to_string()), &self.workspace);
        spec.workspace_guest = self.workspace_guest.clone();
        spec.read_only_paths = self
            .protected
            .existing_files(&self.workspace, PROTECTED_WALK_LIMIT);
        spec.env = self.env.clone();
        spec.limits.timeout = timeout;
        spec.limits.output_bytes = self.output_bytes;
        let outcome = self.sandbox.exec(&spec).map_err(|e| SandboxFault {
            backend: self.sandbox.name(),
            message: e.to_string(),
        })?;
        Ok(Ok(ExecResult {
            exit_code: outcome.exit_code,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            truncated: outcome.truncated,
            timed_out: outcome.timed_out,
        }))
    }
}
