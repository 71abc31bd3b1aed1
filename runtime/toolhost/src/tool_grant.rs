//! A role's grant for one loaded tool, computed and compiled once when the tool is
//! loaded: the effective grant (the policy's offer met with what the tool asks), its
//! `deny` patterns as compiled regexes, and its configuration as the text the guest
//! reads. A call only looks it up.
//!
//! Owns: [`ToolGrants`] and [`ToolGrant`]. Does not own: the policy's rules of
//! combination (`policy`), what a grant lets a guest do (`grants`, `exec`), or the
//! per-call WASI context (`call_setup`).

use crate::error::ToolHostError;
use crate::policy::{CallLimits, EffectiveGrant, Policy, Role, ToolGrantSpec};
use regex::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One role's grant for one tool.
#[derive(Clone, Debug)]
pub(crate) struct ToolGrant {
    pub effective: EffectiveGrant,
    /// `effective.deny`, compiled.
    pub deny: Vec<Regex>,
    /// `effective.config` as JSON text (`SSR_TOOL_CONFIG`).
    pub config: String,
}

/// A tool's grants for every role the policy gives it to.
#[derive(Clone, Debug, Default)]
pub(crate) struct ToolGrants(BTreeMap<Role, ToolGrant>);

impl ToolGrants {
    /// Compiles the grants of tool `name` (asking for `asked`, within `asked_limits`)
    /// for every role of `policy`.
    pub fn compile(
        policy: &Policy,
        name: &str,
        asked: &ToolGrantSpec,
        asked_limits: Option<CallLimits>,
    ) -> Result<ToolGrants, ToolHostError> {
        let mut grants = BTreeMap::new();
        for role in policy.roles.keys() {
            let Some(effective) = policy.grant(*role, name, asked, asked_limits) else {
                continue;
            };
            // The policy's patterns were checked when it was read; a failure here is a
            // policy built in code.
            let deny = effective
                .deny
                .iter()
                .map(|p| Regex::new(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ToolHostError::Policy {
                    path: PathBuf::from("(policy)"),
                    reason: format!("roles.{}.tools.{name}.deny: {e}", role.as_str()),
                })?;
            let config = effective.config.to_string();
            grants.insert(
                *role,
                ToolGrant {
                    effective,
                    deny,
                    config,
                },
            );
        }
        Ok(ToolGrants(grants))
    }

    /// `role`'s grant, or `None` when the policy gives the tool no grant for it.
    pub fn get(&self, role: Role) -> Option<&ToolGrant> {
        self.0.get(&role)
    }
}
