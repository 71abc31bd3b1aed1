//! The operator's policy file (TOML): per role and tool, what a tool may touch and how
//! long, how much memory and how much output one call may use.
//!
//! Owns parsing, defaults ([`DEFAULT_POLICY`]) and resolving the effective grant of a
//! tool for a role, which for a custom tool is the intersection of what its manifest
//! asks for and what the policy allows. Does not own enforcement (see `grants` and
//! `call`). Nothing the model writes reaches this module: grants come only from this
//! file, the tool manifests and the runtime's episode context.

use crate::error::ToolHostError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The two roles of the self-play game (owned by `ssr-role`, shared by every crate).
pub use ssr_role::Role;

/// How a tool may reach the episode's repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoAccess {
    /// Not preopened at all.
    #[default]
    None,
    /// Preopened read-only at guest path `.`.
    Ro,
    /// Preopened read-only at `.`; writes through the host's `workspace` import,
    /// checked against the protected globs and the episode's oracle files.
    Rw,
}

/// Per-call limits. Every field is a ceiling; the smaller of the policy's and the
/// manifest's value applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLimits {
    /// Guest execution time in milliseconds (epoch interruption; time spent in host
    /// calls such as `exec` is not counted).
    pub cpu_ms: u64,
    /// Linear memory of the instance, in bytes.
    pub memory_bytes: u64,
    /// Bytes of result text kept; the rest is cut with a visible marker. Also the
    /// cap of the guest's captured stdout and stderr.
    pub output_bytes: u64,
    /// Wall-clock time of the whole call, host calls included, in milliseconds.
    pub wall_ms: u64,
    /// Host calls (WASI and `ssr:tool` imports) one call may make.
    pub host_calls: u64,
    /// Live WASI resources (open files, directory streams, pollables) at once.
    pub table_entries: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            cpu_ms: 10_000,
            memory_bytes: 256 << 20,
            output_bytes: 64 << 10,
            wall_ms: 150_000,
            host_calls: 1_000_000,
            table_entries: 1_024,
        }
    }
}

impl CallLimits {
    /// The field-wise minimum of two sets of limits.
    pub fn min(self, other: CallLimits) -> CallLimits {
        CallLimits {
            cpu_ms: self.cpu_ms.min(other.cpu_ms),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            output_bytes: self.output_bytes.min(other.output_bytes),
            wall_ms: self.wall_ms.min(other.wall_ms),
            host_calls: self.host_calls.min(other.host_calls),
            table_entries: self.table_entries.min(other.table_entries),
        }
    }
}

/// Limits as written in the file: any subset of the fields, the rest inherited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    pub cpu_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub wall_ms: Option<u64>,
    pub host_calls: Option<u64>,
    pub table_entries: Option<u64>,
}

impl LimitsPatch {
    pub fn apply(&self, base: CallLimits) -> CallLimits {
        CallLimits {
            cpu_ms: self.cpu_ms.unwrap_or(base.cpu_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            output_bytes: self.output_bytes.unwrap_or(base.output_bytes),
            wall_ms: self.wall_ms.unwrap_or(base.wall_ms),
            host_calls: self.host_calls.unwrap_or(base.host_calls),
            table_entries: self.table_entries.unwrap_or(base.table_entries),
        }
    }
}

/// An extra host directory preopened for a tool (for example documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraDir {
    /// Absolute host path.
    pub host: std::path::PathBuf,
    /// Absolute guest path (not `.` and not `/state`).
    pub guest: String,
    /// Only `ro` or `rw`; `rw` extra directories are written through WASI directly,
    /// without protected globs (they are not the repository).
    pub mode: RepoAccess,
}

/// What one tool gets in one role, as written in the policy file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolGrantSpec {
    /// Repository access (default `none`).
    #[serde(default)]
    pub repo: RepoAccess,
    /// A private per-episode scratch directory at guest path `/state`.
    #[serde(default)]
    pub state: bool,
    /// The `exec` import (commands in the episode's sandbox).
    #[serde(default)]
    pub exec: bool,
    /// Regular expressions; a command matching any of them is refused (`exec` only).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Extra host directories.
    #[serde(default)]
    pub extra: Vec<ExtraDir>,
    /// Limit overrides for this tool.
    #[serde(default)]
    pub limits: LimitsPatch,
    /// Free-form configuration handed to the guest as `SSR_TOOL_CONFIG` (JSON).
    #[serde(default)]
    pub config: toml::Table,
}

/// One role's section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Globs (relative to the repository root) of files that stay read-only inside a
    /// read-write repository grant, for every tool and in the bash sandbox. The
    /// episode's oracle files are added at run time.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Limit overrides for every tool of this role.
    #[serde(default)]
    pub limits: LimitsPatch,
    /// The ceiling for custom tools not named in `tools`.
    #[serde(default)]
    pub custom: Option<ToolGrantSpec>,
    /// Tools this role may use, by name. A tool not listed (and not covered by
    /// `custom`) is not granted.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolGrantSpec>,
}

/// The whole policy file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Limits of every call unless a role or tool narrows or widens them.
    #[serde(default)]
    pub limits: LimitsPatch,
    /// Wall-clock ceiling of one `exec` (milliseconds); also bounded by the call's
    /// remaining wall-clock time.
    #[serde(default = "default_exec_timeout_ms")]
    pub exec_timeout_ms: u64,
    #[serde(default)]
    pub roles: BTreeMap<Role, RolePolicy>,
}

fn default_exec_timeout_ms() -> u64 {
    120_000
}

/// The built-in policy: both roles get the four standard tools; the injector may write
/// the whole repository, the solver all of it except test infrastructure (SSR_SPEC.md
/// section 4) and the episode's oracle files; `search` and `submit` only read.
pub const DEFAULT_POLICY: &str = include_str!("default_policy.toml");

impl Default for Policy {
    fn default() -> Self {
        // The embedded file is covered by a unit test; a parse failure here is a build
        // defect, not an input error.
        toml::from_str(DEFAULT_POLICY).expect("the embedded default policy parses")
    }
}

/// The effective grant of one tool in one role, after intersecting the policy with the
/// tool's manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveGrant {
    pub repo: RepoAccess,
    pub state: bool,
    pub exec: bool,
    pub deny: Vec<String>,
    pub extra: Vec<ExtraDir>,
    pub limits: CallLimits,
    pub config: serde_json::Value,
    pub protected: Vec<String>,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, ToolHostError> {
        let text = std::fs::read_to_string(path).map_err(|e| ToolHostError::Policy {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Policy::from_toml(&text).map_err(|reason| ToolHostError::Policy {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and validates policy text.
    pub fn from_toml(text: &str) -> Result<Policy, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| e.to_string())?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        for (role, rp) in &self.roles {
            for glob in &rp.protected {
                globset::Glob::new(glob)
                    .map_err(|e| format!("roles.{}.protected: `{glob}`: {e}", role.as_str()))?;
            }
            let grants = rp.tools.iter().map(|(n, g)| (n.as_str(), g));
            for (name, grant) in grants.chain(rp.custom.iter().map(|g| ("custom", g))) {
                for pattern in &grant.deny {
                    regex::Regex::new(pattern).map_err(|e| {
                        format!(
                            "roles.{}.tools.{name}.deny: `{pattern}`: {e}",
                            role.as_str()
                        )
                    })?;
                }
                for extra in &grant.extra {
                    if !extra.host.is_absolute() || !extra.guest.starts_with('/') {
                        return Err(format!(
                            "roles.{}.tools.{name}.extra: host and guest paths must be absolute",
                            role.as_str()
                        ));
                    }
                    if extra.guest == "/state" || extra.mode == RepoAccess::None {
                        return Err(format!(
                            "roles.{}.tools.{name}.extra: `{}` must not be /state and needs mode ro or rw",
                            role.as_str(),
                            extra.guest
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The grant of `tool` for `role`, or `None` when the role may not use it.
    /// `asked` is the tool manifest's request: the result never exceeds it.
    pub fn grant(
        &self,
        role: Role,
        tool: &str,
        asked: &ToolGrantSpec,
        asked_limits: Option<CallLimits>,
    ) -> Option<EffectiveGrant> {
        let rp = self.roles.get(&role)?;
        let spec = rp.tools.get(tool).or(rp.custom.as_ref())?;
        let base = rp.limits.apply(self.limits.apply(CallLimits::default()));
        let mut limits = spec.limits.apply(base);
        if let Some(asked_limits) = asked_limits {
            limits = limits.min(asked_limits);
        }
        let config = serde_json::to_value(&spec.config).unwrap_or_else(|_| serde_json::json!({}));
        Some(EffectiveGrant {
            repo: spec.repo.min(asked.repo),
            state: spec.state && asked.state,
            exec: spec.exec && asked.exec,
            deny: spec.deny.clone(),
            extra: spec
                .extra
                .iter()
                .filter(|e| asked.extra.iter().any(|a| a.guest == e.guest))
                .map(|e| ExtraDir {
                    mode: e.mode.min(
                        asked
                            .extra
                            .iter()
                            .find(|a| a.guest == e.guest)
                            .map_or(RepoAccess::None, |a| a.mode),
                    ),
                    ..e.clone()
                })
                .collect(),
            limits,
            config,
            protected: rp.protected.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses_and_validates() {
        let p = Policy::from_toml(DEFAULT_POLICY).unwrap();
        let all = ToolGrantSpec {
            repo: RepoAccess::Rw,
            state: true,
            exec: true,
            ..Default::default()
        };
        let solver_editor = p.grant(Role::Solver, "editor", &all, None).unwrap();
        assert_eq!(solver_editor.repo, RepoAccess::Rw);
        assert!(
            solver_editor
                .protected
                .iter()
                .any(|g| g.ends_with("conftest.py"))
        );
        let search = p.grant(Role::Solver, "search", &all, None).unwrap();
        assert_eq!(search.repo, RepoAccess::Ro);
        assert!(!search.exec);
        let injector_editor = p.grant(Role::Injector, "editor", &all, None).unwrap();
        assert!(injector_editor.protected.is_empty());
    }

    #[test]
    fn grant_never_exceeds_the_manifest() {
        let p = Policy::default();
        let asked = ToolGrantSpec {
            repo: RepoAccess::Ro,
            ..Default::default()
        };
        let g = p.grant(Role::Injector, "editor", &asked, None).unwrap();
        assert_eq!(g.repo, RepoAccess::Ro);
        assert!(!g.state && !g.exec);
    }

    #[test]
    fn bad_deny_pattern_is_refused() {
        let text = "[roles.solver.tools.bash]\nexec = true\ndeny = [\"(\"]\n";
        assert!(Policy::from_toml(text).unwrap_err().contains("deny"));
    }
}
