//! Custom tools: the `tool.toml` manifest and the discovery of tools folders.
//!
//! A custom tool is a directory holding a `tool.toml` and the component it names. The
//! manifest says what the tool asks for; the policy decides what each role gets (see
//! [`crate::policy::Policy::grant`]), so a manifest can never widen a grant.

use crate::error::ToolHostError;
use crate::policy::{CallLimits, ExtraDir, LimitsPatch, RepoAccess, ToolGrantSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a manifest asks for.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestGrants {
    #[serde(default)]
    pub repo: RepoAccess,
    #[serde(default)]
    pub state: bool,
    #[serde(default)]
    pub exec: bool,
    #[serde(default)]
    pub extra: Vec<ExtraDir>,
}

/// A parsed `tool.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must equal the name the component's `describe` returns.
    pub name: String,
    /// The component file, relative to the manifest's directory.
    pub component: PathBuf,
    /// A line for `ssr tools list` (the model sees the component's own description).
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub grants: ManifestGrants,
    #[serde(default)]
    pub limits: LimitsPatch,
}

impl Manifest {
    pub fn from_file(path: &Path) -> Result<Manifest, ToolHostError> {
        let err = |reason: String| ToolHostError::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let m: Manifest = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        if m.name.is_empty()
            || !m
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(err(format!(
                "name `{}` must be lowercase letters, digits, `_` or `-`",
                m.name
            )));
        }
        Ok(m)
    }

    /// The grant request in the policy's terms.
    pub fn asked(&self) -> ToolGrantSpec {
        ToolGrantSpec {
            repo: self.grants.repo,
            state: self.grants.state,
            exec: self.grants.exec,
            extra: self.grants.extra.clone(),
            ..Default::default()
        }
    }

    /// The manifest's limits: a ceiling below the policy's.
    pub fn limits(&self) -> CallLimits {
        self.limits.apply(CallLimits {
            cpu_ms: u64::MAX,
            memory_bytes: u64::MAX,
            output_bytes: u64::MAX,
            wall_ms: u64::MAX,
            host_calls: u64::MAX,
            table_entries: u64::MAX,
        })
    }
}

/// Every `tool.toml` in `dir` itself or one level below it, sorted.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, ToolHostError> {
    let mut found = Vec::new();
    let direct = dir.join("tool.toml");
    if direct.is_file() {
        found.push(direct);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ToolHostError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let candidate = entry.path().join("tool.toml");
        if entry.path().is_dir() && candidate.is_file() {
            found.push(candidate);
        }
    }
    found.sort();
    Ok(found)
}
