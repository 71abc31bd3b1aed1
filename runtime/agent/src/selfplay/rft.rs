//! Rejection-sampling fine-tuning data (`rft = true`): the policy's own solved
//! attempts as supervised demonstrations (the trainer's [`Demo`]), with the turns
//! whose tool call was malformed or failed masked out of the loss, so the policy
//! imitates what worked and not the errors it recovered from (as Nebius trained its
//! SWE agents).
//!
//! Owns: which attempts become demonstrations (solved, scored, with token ids) and
//! the masking rule. Does not own: the record format or the supervised step (the
//! trainer's `sft`), the run directory's file (`rundir`).

use crate::transcript::{Transcript, TurnRecord};
use serde_json::Value;
use ssr_trainer::train::Demo;

/// Whether a turn's action was an error the demonstration must not teach: a call
/// that could not be read, a tool that failed, or one that timed out.
pub fn erroneous(turn: &TurnRecord) -> bool {
    turn.call_error.is_some() || turn.tool_error || turn.tool_timed_out
}

/// The demonstration of a solved attempt's transcript: its token ids, and a loss mask
/// that keeps the sampled tokens of every turn but the erroneous ones. `None` when it
/// cannot be one: no token ids (a chat-only policy), sampled segments that do not
/// line up one to one with the turns, or nothing left to learn once masked.
pub fn demo_of(t: &Transcript, metadata: Value) -> Option<Demo> {
    let sampled = t.segments.iter().filter(|s| s.sampled).count();
    if sampled != t.turns.len() {
        return None;
    }
    let mut turns = t.turns.iter();
    let mut loss_mask = Vec::new();
    for s in &t.segments {
        // Each sampled segment is its turn's generation, in order.
        let keep = s.sampled && turns.next().is_some_and(|turn| !erroneous(turn));
        loss_mask.extend(std::iter::repeat_n(u8::from(keep), s.token_ids.len()));
    }
    let token_ids = t.token_ids();
    if token_ids.is_empty() {
        return None;
    }
    // The first token has no context and is never trained (the format's rule).
    loss_mask[0] = 0;
    loss_mask.contains(&1).then_some(Demo {
        token_ids,
        loss_mask,
        metadata: Some(metadata),
    })
}
