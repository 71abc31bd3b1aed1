//! From a finished [`Transcript`] and its reward to the trainer's
//! [`ssr_trainer::trajectory::Trajectory`] record.
//!
//! Owns: the mapping (ids, loss mask from sampled segments, logprobs aligned to ids,
//! role, group, metadata saying whether ids and logprobs are exact). Does not own:
//! the record format or its validation (the trainer), rewards (`ssr-game`).

use crate::transcript::Transcript;
use serde_json::{Value, json};
use ssr_trainer::trajectory::Trajectory;

/// Why a transcript cannot become a training record.
#[derive(Debug, thiserror::Error)]
pub enum TrajectoryBuildError {
    #[error("episode {episode}: no token ids (the policy had no tokenizer)")]
    NoTokens { episode: String },
    #[error("episode {episode}: {source}")]
    Invalid {
        episode: String,
        #[source]
        source: ssr_trainer::trajectory::InvalidTrajectory,
    },
}

/// The metadata key saying whether a record's logprobs are the policy's own (`true`)
/// or zeros written in place of unknown ones (`false`).
const LOGPROBS_KNOWN: &str = "logprobs_known";

/// What this crate writes into a record's free-form metadata, read back typed (the
/// trainer carries metadata without interpreting it; the agent owns its keys).
pub trait TrajectoryMeta {
    /// Whether the record's logprobs are the policy's own. A record without the flag
    /// (written by another tool) counts as known; only an explicit `false` does not.
    fn logprobs_known(&self) -> bool;
}

impl TrajectoryMeta for Trajectory {
    fn logprobs_known(&self) -> bool {
        self.metadata.get(LOGPROBS_KNOWN) != Some(&Value::Bool(false))
    }
}

/// Builds the record. Logprobs the policy did not give (scripted turns, servers
/// without logprobs) are written as 0 and flagged `logprobs_known: false` in the
/// metadata ([`TrajectoryMeta::logprobs_known`]), so the trainer can recompute them
/// from the current weights.
pub fn to_trajectory(
    t: &Transcript,
    reward: f32,
    group_id: &str,
    extra: Value,
) -> Result<Trajectory, TrajectoryBuildError> {
    let token_ids = t.token_ids();
    if token_ids.is_empty() {
        return Err(TrajectoryBuildError::NoTokens {
            episode: t.episode_id.clone(),
        });
    }
    let loss_mask = t.loss_mask();
    let (logprobs, known) = match t.logprobs() {
        Some(l) => (l, true),
        None => (vec![0.0; token_ids.len()], false),
    };
    let mut metadata = json!({
        "episode": t.episode_id,
        "attempt": t.attempt,
        "policy": t.policy,
        "endpoint": t.endpoint,
        "exact_tokens": t.exact_tokens,
        LOGPROBS_KNOWN: known,
        "turns": t.stats.turns,
        "end": t.end,
    });
    if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), extra) {
        m.extend(extra);
    }
    let traj = Trajectory {
        role: t.role,
        group_id: group_id.to_string(),
        token_ids,
        loss_mask,
        logprobs,
        reward,
        advantage: None,
        // What the episode sampled at; `None` for transcripts older than the record,
        // where `ssr train` falls back to its `--temperature`.
        temperature: t.temperature,
        top_p: t.top_p,
        metadata,
    };
    traj.validate()
        .map_err(|source| TrajectoryBuildError::Invalid {
            episode: t.episode_id.clone(),
            source,
        })?;
    Ok(traj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssr_trainer::trajectory::Role;

    fn record(metadata: Value) -> Trajectory {
        Trajectory {
            role: Role::Solver,
            group_id: "g".into(),
            token_ids: vec![1, 2],
            loss_mask: vec![0, 1],
            logprobs: vec![0.0, -0.5],
            reward: 1.0,
            advantage: None,
            temperature: None,
            top_p: None,
            metadata,
        }
    }

    #[test]
    fn only_an_explicit_false_flag_marks_logprobs_unknown() {
        assert!(!record(json!({"logprobs_known": false})).logprobs_known());
        assert!(record(json!({"logprobs_known": true})).logprobs_known());
        // Records written by other tools carry no flag: their logprobs are taken.
        assert!(record(json!({})).logprobs_known());
        assert!(record(json!({"episode": "e1"})).logprobs_known());
    }
}
