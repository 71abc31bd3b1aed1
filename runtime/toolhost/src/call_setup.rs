//! What one call gets: its WASI context (environment, preopened repository, state and
//! extra directories, bounded stdout and stderr), its workspace write checks and its
//! `exec` grant, built from the episode and the tool's compiled grant.
//!
//! Owns: turning a grant into a [`CallSetup`]. Does not own: the grant's computation
//! (`tool_grant`, `policy`), the write checks themselves (`grants`, `exec`), or running
//! the call (`call`).

use crate::call::CallSetup;
use crate::episode::Episode;
use crate::error::ToolHostError;
use crate::exec::ExecGrant;
use crate::grants::{Protected, WorkspaceGrant};
use crate::output::BoundedOutput;
use crate::policy::RepoAccess;
use crate::tool_grant::ToolGrant;
use std::collections::BTreeMap;
use std::time::Duration;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Guest path of the per-tool scratch directory.
pub const STATE_GUEST_DIR: &str = "/state";

/// Builds the setup of one call of `tool` for `episode`. `role_protected` is the
/// role's protected set compiled once (`None` compiles the grant's globs now);
/// `exec_timeout` is the policy's ceiling of one command.
pub(crate) fn call_setup(
    episode: &Episode,
    tool: &str,
    grant: &ToolGrant,
    role_protected: Option<&Protected>,
    exec_timeout: Duration,
) -> Result<CallSetup, ToolHostError> {
    let grant_err = |reason: String| ToolHostError::Grant {
        path: episode.repo.clone(),
        reason,
    };
    let g = &grant.effective;
    let output_cap = usize::try_from(g.limits.output_bytes).unwrap_or(usize::MAX);
    let stdout = BoundedOutput::new(output_cap);
    let stderr = BoundedOutput::new(output_cap);
    let mut b = WasiCtxBuilder::new();
    // Before any preopen: each preopen copies the flag when it is created.
    b.allow_blocking_current_thread(true);
    b.stdout(stdout.clone()).stderr(stderr.clone());
    b.env("SSR_ROLE", episode.role.as_str());
    b.env("SSR_WORKSPACE", episode.workspace_guest.to_string_lossy());
    b.env("SSR_TOOL_CONFIG", &grant.config);
    let protected = match role_protected {
        Some(p) => p.with_exact(&episode.oracle_files),
        None => Protected::new(&g.protected, &episode.oracle_files).map_err(grant_err)?,
    };
    let mut workspace = None;
    if g.repo != RepoAccess::None {
        // No `is_dir` first: the preopen opens with O_DIRECTORY and fails the same way,
        // for one system call less.
        b.preopened_dir(&episode.repo, ".", FsPerms::ReadOnly)
            .map_err(|e| grant_err(format!("not a directory that can be opened: {e:#}")))?;
        workspace = Some(WorkspaceGrant::new(
            &episode.repo,
            g.repo == RepoAccess::Rw,
            protected.clone(),
        ));
    }
    if g.state
        && let Some(root) = &episode.state_dir
    {
        let dir = root.join(tool);
        // Open first and create only when missing: one system call on every call
        // after the episode's first, where `create_dir_all` costs two.
        if b.preopened_dir(&dir, STATE_GUEST_DIR, FsPerms::ReadWrite)
            .is_err()
        {
            std::fs::create_dir_all(&dir).map_err(|source| ToolHostError::Io {
                path: dir.clone(),
                source,
            })?;
            b.preopened_dir(&dir, STATE_GUEST_DIR, FsPerms::ReadWrite)
                .map_err(|e| grant_err(format!("{e:#}")))?;
        }
        b.env("SSR_STATE_DIR", STATE_GUEST_DIR);
    }
    for extra in &g.extra {
        let perms = if extra.mode == RepoAccess::Rw {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&extra.host, &extra.guest, perms)
            .map_err(|e| grant_err(format!("extra `{}`: {e:#}", extra.host.display())))?;
    }
    let exec = match (&episode.sandbox, g.exec) {
        (Some(sandbox), true) => Some(ExecGrant {
            sandbox: sandbox.clone(),
            workspace: episode.repo.clone(),
            workspace_guest: episode.workspace_guest.clone(),
            // Compiled at load; cloning a `Regex` shares it.
            deny: grant.deny.clone(),
            protected,
            max_timeout: exec_timeout,
            output_bytes: output_cap,
            env: BTreeMap::new(),
        }),
        _ => None,
    };
    Ok(CallSetup {
        wasi: b.build(),
        workspace,
        exec,
        limits: g.limits,
        stdout,
        stderr,
    })
}
