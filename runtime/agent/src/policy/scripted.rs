//! The `scripted` policy: replays recorded model turns from a JSON file, for tests,
//! demos and reproducing an episode without a model.
//!
//! Format: `{"injector": [[turn, turn, …], …], "solver": [[…], …]}`, where each turn is
//! a string or `{"text": "…", "logprobs": [...]}`. Attempt `a` of a role replays script
//! `a mod len`, turn `t` its `t`-th entry, so concurrent episodes replay
//! deterministically. Does not own: tokenization (a [`TextCodec`] gives the ids).

use super::{FinishReason, GenerateRequest, Generation, Policy, PolicyError};
use crate::chat::TextCodec;
use serde::{Deserialize, Serialize};
use ssr_role::Role;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One recorded turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScriptTurn {
    Text(String),
    Full {
        text: String,
        #[serde(default)]
        logprobs: Option<Vec<f32>>,
    },
}

impl ScriptTurn {
    fn text(&self) -> &str {
        match self {
            ScriptTurn::Text(t) | ScriptTurn::Full { text: t, .. } => t,
        }
    }
}

/// Scripts per role (keyed by the role's spelling, [`Role::as_str`]): a list of
/// episodes, each a list of turns.
pub type Scripts = BTreeMap<String, Vec<Vec<ScriptTurn>>>;

/// Replays [`Scripts`].
pub struct ScriptedPolicy {
    scripts: Scripts,
    codec: Option<Arc<dyn TextCodec>>,
}

impl ScriptedPolicy {
    pub fn new(scripts: Scripts, codec: Option<Arc<dyn TextCodec>>) -> Self {
        ScriptedPolicy { scripts, codec }
    }

    pub fn from_file(path: &Path, codec: Option<Arc<dyn TextCodec>>) -> Result<Self, PolicyError> {
        let err = |reason: String| PolicyError::ScriptFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let scripts: Scripts = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        Ok(ScriptedPolicy::new(scripts, codec))
    }

    /// Number of scripts recorded for a role.
    pub fn script_count(&self, role: Role) -> usize {
        self.scripts.get(role.as_str()).map_or(0, Vec::len)
    }
}

#[async_trait::async_trait]
impl Policy for ScriptedPolicy {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn codec(&self) -> Option<Arc<dyn TextCodec>> {
        self.codec.clone()
    }

    async fn generate(&self, request: GenerateRequest) -> Result<Generation, PolicyError> {
        let role = request.tag.role;
        let scripts = self
            .scripts
            .get(role.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(PolicyError::NoScript { role })?;
        let index = request.tag.attempt as usize % scripts.len();
        let turn =
            scripts[index]
                .get(request.tag.turn as usize)
                .ok_or(PolicyError::ScriptExhausted {
                    role,
                    script: index,
                    turn: request.tag.turn,
                })?;
        let text = turn.text().to_string();
        let (token_ids, exact) = match &self.codec {
            // Recorded turns are text: tokenizing it is the exact sequence the
            // trajectory trains on, since no sampler produced other ids.
            Some(c) => (c.encode_text(&text), true),
            None => (Vec::new(), false),
        };
        let logprobs = match turn {
            ScriptTurn::Full {
                logprobs: Some(l), ..
            } if l.len() == token_ids.len() => Some(l.clone()),
            _ => None,
        };
        Ok(Generation {
            policy_version: None,
            prompt_tokens: match &request.prompt {
                super::Prompt::Tokens(t) => t.len(),
                super::Prompt::Chat(_) => 0,
            },
            text,
            token_ids,
            logprobs,
            finish: FinishReason::Stop,
            stop_in_text: true,
            exact_tokens: exact,
            endpoint: "scripted".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_counted_per_role_under_its_one_spelling() {
        let scripts: Scripts =
            serde_json::from_str(r#"{"solver": [["a"], ["b", "c"]]}"#).expect("a scripts file");
        let policy = ScriptedPolicy::new(scripts, None);
        assert_eq!(policy.script_count(Role::Solver), 2);
        assert_eq!(policy.script_count(Role::Injector), 0);
        let err = PolicyError::NoScript {
            role: Role::Injector,
        };
        assert_eq!(
            err.to_string(),
            "scripted policy: no script for role `injector`"
        );
    }
}
