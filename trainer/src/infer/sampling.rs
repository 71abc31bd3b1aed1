//! Choosing the next token from logits: greedy, temperature, top-k, top-p, with a
//! seeded ChaCha RNG; and the log-probabilities reported for each choice.
//!
//! Owns the sampling distribution. Does not own the forward pass or stopping rules.
//!
//! Reported log-probabilities (both under the *full* vocabulary, before top-k/top-p
//! truncation, which is what a trainer recomputes from its own logits):
//! - `logprob`: `log softmax(logits / T)[token]`, the behaviour policy at temperature
//!   `T` (for greedy, `T` is taken as 1). RL importance ratios use this.
//! - `raw_logprob`: `log softmax(logits)[token]`, the untempered model.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`; 1 disables.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// One sampled token and its log-probabilities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub token: u32,
    pub logprob: f32,
    pub raw_logprob: f32,
}

/// A sampler with its own RNG stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    opts: SamplingOptions,
    rng: ChaCha8Rng,
    /// Scratch: (probability, token) of the candidates.
    cand: Vec<(f32, u32)>,
}

/// `log sum exp(scale * logits)`, computed stably.
fn log_sum_exp(logits: &[f32], scale: f32) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * scale;
    let sum: f64 = logits
        .iter()
        .map(|&l| ((l * scale - max) as f64).exp())
        .sum();
    max + sum.ln() as f32
}

impl Sampler {
    pub fn new(opts: SamplingOptions) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        Sampler {
            opts,
            rng,
            cand: Vec::new(),
        }
    }

    pub fn options(&self) -> &SamplingOptions {
        &self.opts
    }

    /// Picks a token from `logits` (`[vocab]`).
    pub fn sample(&mut self, logits: &[f32]) -> Choice {
        let raw_lse = log_sum_exp(logits, 1.0);
        let t = self.opts.temperature;
        if t <= 0.0 || !t.is_finite() {
            let token = argmax(logits);
            let lp = logits[token as usize] - raw_lse;
            return Choice {
                token,
                logprob: lp,
                raw_logprob: lp,
            };
        }
        let inv_t = 1.0 / t;
        let lse = log_sum_exp(logits, inv_t);
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (((l * inv_t - lse) as f64).exp() as f32, i as u32)),
        );
        // Most likely first; ties by token id so the order (and the draw) is deterministic.
        let by_prob = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k = if self.opts.top_k > 0 {
            self.opts.top_k.min(cand.len())
        } else {
            cand.len()
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, by_prob);
            cand.truncate(k);
        }
        if self.opts.top_p < 1.0 {
            cand.sort_unstable_by(by_prob);
            let mut acc = 0.0f32;
            let mut keep = cand.len();
            for (i, (p, _)) in cand.iter().enumerate() {
                acc += p;
                if acc >= self.opts.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        let total: f32 = cand.iter().map(|c| c.0).sum();
        let mut r = self.rng.gen_range(0.0..total.max(f32::MIN_POSITIVE));
        let mut token = cand.last().map_or(0, |c| c.1);
        for &(p, id) in cand.iter() {
            if r < p {
                token = id;
                break;
            }
            r -= p;
        }
        let l = logits[token as usize];
        Choice {
            token,
            logprob: l * inv_t - lse,
            raw_logprob: l - raw_lse,
        }
    }
}

/// The `k` most likely tokens of `logits` and their log-probabilities under the
/// distribution `logprob` reports (`log softmax(logits / T)` over the full vocabulary;
/// `T` taken as 1 for greedy): most likely first, ties by token id. What a server's
/// `top_logprobs` shows beside each sampled token.
pub fn top_logprobs(logits: &[f32], temperature: f32, k: usize) -> Vec<(u32, f32)> {
    if k == 0 || logits.is_empty() {
        return Vec::new();
    }
    let scale = if temperature <= 0.0 || !temperature.is_finite() {
        1.0
    } else {
        1.0 / temperature
    };
    let lse = log_sum_exp(logits, scale);
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(ids.len());
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_logit);
        ids.truncate(k);
    }
    ids.sort_unstable_by(by_logit);
    ids.into_iter()
        .map(|id| (id, logits[id as usize] * scale - lse))
        .collect()
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_with_exact_logprob() {
        let mut s = Sampler::new(SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        });
        let c = s.sample(&[0.0, 2.0, 1.0]);
        assert_eq!(c.token, 1);
        let want = 2.0 - (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((c.logprob - want).abs() < 1e-6 && c.raw_logprob == c.logprob);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_is_reproducible() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7919) % 13) as f32 * 0.3).collect();
        let mut s = Sampler::new(SamplingOptions {
            temperature: 0.7,
            top_k: 1,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits).token, argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(SamplingOptions {
                temperature: 1.0,
                seed,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&logits).token).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p = [0.5, 0.3, 0.2 split over many]: top_p 0.75 keeps tokens 0 and 1 only.
        let mut logits = vec![0.5f32.ln(), 0.3f32.ln()];
        logits.extend(std::iter::repeat_n((0.2f32 / 20.0).ln(), 20));
        let mut s = Sampler::new(SamplingOptions {
            temperature: 1.0,
            top_p: 0.75,
            seed: 9,
            ..Default::default()
        });
        let mut seen = [0usize; 2];
        for _ in 0..400 {
            let c = s.sample(&logits);
            assert!(c.token < 2, "token {} outside the nucleus", c.token);
            seen[c.token as usize] += 1;
            assert!(
                (c.logprob - logits[c.token as usize]).abs() < 1e-5,
                "logprob is the untruncated one"
            );
        }
        // 0.5/(0.8) = 62.5% expected for token 0.
        assert!((200..300).contains(&seen[0]), "{seen:?}");
    }

    #[test]
    fn tempered_logprob_uses_the_temperature() {
        let logits = [1.0f32, 3.0];
        let mut s = Sampler::new(SamplingOptions {
            temperature: 2.0,
            top_k: 1,
            ..Default::default()
        });
        let c = s.sample(&logits);
        let want = 1.5 - (0.5f32.exp() + 1.5f32.exp()).ln();
        assert!((c.logprob - want).abs() < 1e-6);
        assert!((c.raw_logprob - (3.0 - (1.0f32.exp() + 3.0f32.exp()).ln())).abs() < 1e-6);
    }

    #[test]
    fn top_logprobs_are_the_most_likely_tokens_under_the_sampling_temperature() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let mut s = Sampler::new(SamplingOptions {
            temperature: 0.5,
            seed: 3,
            ..SamplingOptions::default()
        });
        let choice = s.sample(&logits);
        let top = top_logprobs(&logits, 0.5, 3);
        // Ties by id; the sampled token's entry equals its reported logprob.
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
        if let Some(t) = top.iter().find(|t| t.0 == choice.token) {
            assert!((t.1 - choice.logprob).abs() < 1e-6);
        }
        let lse = log_sum_exp(&logits, 2.0);
        assert!((top[2].1 - (4.0 - lse)).abs() < 1e-6);
        // Greedy reports T = 1, as `logprob` does; k past the vocabulary is the vocabulary.
        let all = top_logprobs(&logits, 0.0, 99);
        assert_eq!(all.len(), 5);
        let total: f32 = all.iter().map(|t| t.1.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(top_logprobs(&logits, 1.0, 0).is_empty());
        assert!(top_logprobs(&[], 1.0, 4).is_empty());
    }
}
