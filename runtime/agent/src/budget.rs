//! Episode budgets: turns, context tokens, new tokens per turn, time and output per
//! tool call (SSR_SPEC.md section 9), and the line every observation ends with.
//!
//! Owns: the limits and their defaults. Does not own: enforcing tool limits inside a
//! tool (the tool host does); the agent loop enforces turns, tokens and the wall-clock
//! limit around each call.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits of one episode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Budgets {
    /// Model turns (one tool call each) before the episode ends unsubmitted.
    pub max_turns: u32,
    /// The context window: prompt plus every turn and observation, in tokens.
    pub context_tokens: usize,
    /// New tokens one model turn may generate.
    pub max_new_tokens: usize,
    /// Wall-clock limit of one tool call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Bytes of tool output kept per call; the rest is cut with a marker.
    pub output_bytes: usize,
    /// Wall-clock limit of the whole episode, in milliseconds (0 = none).
    pub episode_timeout_ms: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::cwm()
    }
}

impl Budgets {
    /// The CWM/SSR defaults for large models: 128 turns, 120 s per call, 32 KiB output,
    /// a 131,072-token context.
    pub fn cwm() -> Self {
        Budgets {
            max_turns: 128,
            context_tokens: 131_072,
            max_new_tokens: 4096,
            call_timeout_ms: 120_000,
            output_bytes: 32 * 1024,
            episode_timeout_ms: 0,
        }
    }

    /// Budgets for the embedded 135M model: its 8,192-token context, short turns and
    /// small observations so a few turns fit.
    pub fn embedded() -> Self {
        Budgets {
            max_turns: 12,
            context_tokens: 8192,
            max_new_tokens: 256,
            call_timeout_ms: 30_000,
            output_bytes: 2048,
            episode_timeout_ms: 0,
        }
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// The sentence appended to every observation.
    pub fn remaining_line(&self, turns_used: u32, tokens_used: usize) -> String {
        format!(
            "[{} turns left, {} tokens left]",
            self.max_turns.saturating_sub(turns_used),
            self.context_tokens.saturating_sub(tokens_used)
        )
    }
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary, keeping the head
/// and the tail (errors usually sit at the end of a log) with a marker between.
pub fn truncate_output(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let marker = format!(
        "\n[... {} bytes cut ...]\n",
        text.len().saturating_sub(max_bytes)
    );
    let keep = max_bytes.saturating_sub(marker.len());
    let head_len = floor_char_boundary(text, keep / 2);
    let tail_start = ceil_char_boundary(text, text.len() - (keep - head_len));
    format!("{}{}{}", &text[..head_len], marker, &text[tail_start..])
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_bounded_and_keeps_both_ends() {
        let text = format!("HEAD{}TAIL", "é".repeat(5000));
        let out = truncate_output(&text, 200);
        assert!(out.len() <= 200, "{}", out.len());
        assert!(out.starts_with("HEAD") && out.ends_with("TAIL"));
        assert!(out.contains("bytes cut"));
        assert_eq!(truncate_output("short", 200), "short");
    }

    #[test]
    fn remaining_line_counts_down() {
        let b = Budgets::embedded();
        assert_eq!(
            b.remaining_line(2, 1000),
            "[10 turns left, 7192 tokens left]"
        );
    }
}
