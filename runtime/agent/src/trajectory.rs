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

/// Builds the record. Logprobs the policy did not give (scripted turns, servers
/// without logprobs) are written as 0 and flagged `logprobs_known: false` in the
/// metadata, so the trainer can recompute them from the current weights.
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
        "logprobs_known": known,
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
