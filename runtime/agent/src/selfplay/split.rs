//! The held-out split in a self-play round: bugs the split holds out (`ssr-game`'s
//! [`SplitJudge`]: a held-out function or line changed, a held-out commit reverted)
//! are taken out of the round before any solver attempt, whoever made them, so they
//! are neither solved for training nor trained on; the round counts them.
//!
//! Owns: the filter and its conservative rule: a bug whose patch cannot be read
//! against the repository is held out too (a leak costs the evaluation, a lost
//! training bug costs one bug). Does not own: the split's rules (`ssr_game::split`).

use ssr_game::Bug;
use ssr_game::split::SplitJudge;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Removes the bugs `judge` holds out from `bugs`; gives their ids, sorted.
pub fn hold_out(judge: Option<&SplitJudge>, bugs: &mut BTreeMap<String, Arc<Bug>>) -> Vec<String> {
    let Some(judge) = judge else {
        return Vec::new();
    };
    let held: Vec<String> = bugs
        .iter()
        .filter(|(_, bug)| !matches!(judge.judge_bug(bug), Ok(m) if !m.held_out))
        .map(|(id, _)| id.clone())
        .collect();
    for id in &held {
        bugs.remove(id);
    }
    held
}
