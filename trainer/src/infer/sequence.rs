//! One sequence being generated: its sampler, what it has emitted so far, and the rules
//! that end it (an end token, a stop string, `max_tokens`, a full context).
//!
//! Owns: turning one step's logits into the next token, deciding whether the sequence
//! ends, and the [`Generation`] record it builds. Both `Engine::generate` (one sequence)
//! and `infer::batch` (several) go through it, so a sequence ends at the same token
//! whichever way it was decoded. Does not own: forward passes.

use super::sampling::{Sampler, top_logprobs};
use super::{FinishReason, GenerateOptions, Generation};
use crate::tokenizer::Tokenizer;
use std::time::Instant;

/// The state of one generation between forward steps.
pub(super) struct Decoding<'e> {
    tokenizer: &'e Tokenizer,
    end_ids: &'e [u32],
    opts: GenerateOptions,
    /// Positions the sequence may fill (prompt plus new tokens, at most the context).
    capacity: usize,
    sampler: Sampler,
    out: Generation,
    /// The output's bytes, to find stop strings across token boundaries.
    bytes: Vec<u8>,
    /// Where a stop string starts: the text is cut there.
    cut: Option<usize>,
    /// When the first token was sampled (end of prefill).
    decode_start: Option<Instant>,
}

impl<'e> Decoding<'e> {
    pub(super) fn new(
        tokenizer: &'e Tokenizer,
        end_ids: &'e [u32],
        prompt_tokens: usize,
        opts: GenerateOptions,
        capacity: usize,
    ) -> Self {
        Decoding {
            tokenizer,
            end_ids,
            sampler: Sampler::new(opts.sampling.clone()),
            opts,
            capacity,
            out: Generation {
                text: String::new(),
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                raw_logprobs: Vec::new(),
                top_logprobs: Vec::new(),
                prompt_tokens,
                finish: FinishReason::Length,
                prefill_seconds: 0.0,
                decode_seconds: 0.0,
            },
            bytes: Vec::new(),
            cut: None,
            decode_start: None,
        }
    }

    /// Records the prefill's duration; decode time counts from now.
    pub(super) fn prefilled(&mut self, seconds: f64) {
        self.out.prefill_seconds = seconds;
        self.decode_start = Some(Instant::now());
    }

    /// Samples the next token from `logits` (`[vocab]`); `positions` is how many
    /// positions the sequence's cache holds. Returns the token to feed next, or `None`
    /// when the sequence has ended.
    pub(super) fn accept(
        &mut self,
        logits: &[f32],
        positions: usize,
        on_token: &mut impl FnMut(u32, &[u8]),
    ) -> Option<u32> {
        let choice = self.sampler.sample(logits);
        let out = &mut self.out;
        out.token_ids.push(choice.token);
        out.logprobs.push(choice.logprob);
        out.raw_logprobs.push(choice.raw_logprob);
        if self.opts.top_logprobs > 0 {
            let t = self.opts.sampling.temperature;
            out.top_logprobs
                .push(top_logprobs(logits, t, self.opts.top_logprobs));
        }
        if self.opts.stop_at_eos && self.end_ids.contains(&choice.token) {
            out.finish = FinishReason::Eos;
            on_token(choice.token, &[]);
            return None;
        }
        let piece = self.tokenizer.token_bytes(choice.token);
        let before = self.bytes.len();
        self.bytes.extend_from_slice(piece);
        on_token(choice.token, piece);
        if let Some((i, at)) = find_stop(&self.bytes, before, &self.opts.stop) {
            out.finish = FinishReason::Stop(i);
            self.cut = Some(at);
            return None;
        }
        if out.token_ids.len() >= self.opts.max_tokens {
            out.finish = FinishReason::Length;
            return None;
        }
        if positions >= self.capacity {
            out.finish = FinishReason::ContextFull;
            return None;
        }
        Some(choice.token)
    }

    /// The finished record.
    pub(super) fn finish(mut self) -> Generation {
        self.out.decode_seconds = self.decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.bytes.truncate(self.cut.unwrap_or(self.bytes.len()));
        self.out.text = String::from_utf8_lossy(&self.bytes).into_owned();
        self.out
    }
}

/// The first stop string that ends within the bytes added from `new_from` on (it may
/// start earlier): `(index, byte offset where it starts)`.
fn find_stop(bytes: &[u8], new_from: usize, stops: &[String]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in stops.iter().enumerate() {
        let s = s.as_bytes();
        if s.is_empty() {
            continue;
        }
        let from = new_from.saturating_sub(s.len() - 1);
        if let Some(p) = bytes[from..].windows(s.len()).position(|w| w == s) {
            let at = from + p;
            if best.is_none_or(|(_, b)| at < b) {
                best = Some((i, at));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_found_across_token_boundary() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop(b"abcEN", 3, &stops), None);
        assert_eq!(find_stop(b"abcEND", 5, &stops), Some((0, 3)));
        assert_eq!(find_stop(b"x\n\nEND", 2, &stops), Some((1, 1)));
    }
}
