//! Continuous batching: several generations decode together, one pass over the weights
//! per step serving every active sequence; sequences join (after their own prefill)
//! and leave (when they end) between steps.
//!
//! Owns: [`DecodeBatch`] (the active sequences, their caches and decoding states, the
//! join / step / leave cycle) and [`Engine::generate_batch`]. Does not own: the batched
//! forward (`infer::batch_step`), stopping rules and sampling (`infer::sequence`), nor
//! a thread or queue that feeds it (`infer::batcher`).
//!
//! Exactness: each sequence samples with its own options and RNG stream from logits that
//! are bit-for-bit those of a lone generation (`batch_step`), so at any temperature a
//! batched sequence emits the same tokens and log-probabilities as `Engine::generate`
//! with the same options (test `engine::batched_generation_matches_generation_alone`).
//!
//! Why prefill runs at join, alone: a prompt is hundreds of tokens through the
//! compute-bound GEMM, a decode step one token per sequence through the memory-bound
//! Q8_0 kernel; mixing them in one step would make every decode row wait for the GEMM.
//! The active sequences pause for the newcomer's prefill (chunked prefill, as vLLM
//! does, would bound that pause; revisit when prompts grow long).
//!
//! On a CUDA device each sequence steps through its own GPU decoder in turn (no shared
//! pass yet): same results, no batching speed-up.

use super::batch_step::decode_step;
use super::forward::KvCache;
use super::sequence::Decoding;
use super::{Engine, EngineError, GenerateOptions, Generation, Stepper};
use std::time::Instant;

/// One sequence of the batch.
struct Slot<'e, K> {
    /// The caller's name for the sequence, handed back with its result.
    key: K,
    stepper: Stepper<'e>,
    seq: Decoding<'e>,
    /// The token to feed at the next step.
    next: u32,
}

/// The sequences decoding together over one engine.
pub struct DecodeBatch<'e, K> {
    engine: &'e Engine,
    slots: Vec<Slot<'e, K>>,
}

/// A finished sequence: its key and its generation (or why it failed).
pub type Finished<K> = (K, Result<Generation, EngineError>);

impl<'e, K> DecodeBatch<'e, K> {
    pub fn new(engine: &'e Engine) -> Self {
        DecodeBatch {
            engine,
            slots: Vec::new(),
        }
    }

    /// Sequences decoding.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a sequence: checks and prefills its prompt and samples its first token.
    /// A sequence that is over at once (an end token first, `max_tokens` of 0 or 1) or
    /// that is refused comes straight back; otherwise it decodes from the next step on.
    pub fn join(&mut self, key: K, prompt: &[u32], opts: &GenerateOptions) -> Option<Finished<K>> {
        let e = self.engine;
        if let Err(err) = e.check_ids(prompt) {
            return Some((key, Err(err)));
        }
        let capacity = e.capacity(prompt, opts);
        let mut seq = Decoding::new(
            &e.tokenizer,
            &e.end_ids,
            prompt.len(),
            opts.clone(),
            capacity,
        );
        if opts.max_tokens == 0 {
            return Some((key, Ok(seq.finish())));
        }
        let prefill = || -> Result<_, EngineError> {
            let mut stepper = e.stepper(capacity)?;
            let t0 = Instant::now();
            let logits = stepper.forward_last(prompt)?;
            Ok((stepper, logits, t0.elapsed().as_secs_f64()))
        };
        let (stepper, logits, seconds) = match prefill() {
            Ok(p) => p,
            Err(err) => return Some((key, Err(err))),
        };
        seq.prefilled(seconds);
        match seq.accept(&logits, stepper.len(), &mut |_, _| {}) {
            Some(next) => {
                self.slots.push(Slot {
                    key,
                    stepper,
                    seq,
                    next,
                });
                None
            }
            None => Some((key, Ok(seq.finish()))),
        }
    }

    /// One decode step of every active sequence; returns those that ended, in the
    /// order they had joined.
    pub fn step(&mut self) -> Vec<Finished<K>> {
        if self.slots.is_empty() {
            return Vec::new();
        }
        let vocab = self.engine.config().vocab_size;
        let tokens: Vec<u32> = self.slots.iter().map(|s| s.next).collect();
        let caches: Option<Vec<&mut KvCache>> = self
            .slots
            .iter_mut()
            .map(|s| s.stepper.cpu_cache())
            .collect();
        // Per slot: the logits of its step, or why its step failed.
        let logits: Vec<Result<Vec<f32>, EngineError>> = match caches {
            Some(mut caches) => {
                let all = decode_step(self.engine.model(true), &mut caches, &tokens);
                all.chunks_exact(vocab).map(|l| Ok(l.to_vec())).collect()
            }
            None => self
                .slots
                .iter_mut()
                .map(|s| s.stepper.forward_last(&[s.next]))
                .collect(),
        };
        let mut finished = Vec::new();
        let mut kept = Vec::with_capacity(self.slots.len());
        for (mut slot, logits) in self.slots.drain(..).zip(logits) {
            let logits = match logits {
                Ok(l) => l,
                Err(err) => {
                    finished.push((slot.key, Err(err)));
                    continue;
                }
            };
            match slot.seq.accept(&logits, slot.stepper.len(), &mut |_, _| {}) {
                Some(next) => {
                    slot.next = next;
                    kept.push(slot);
                }
                None => finished.push((slot.key, Ok(slot.seq.finish()))),
            }
        }
        self.slots = kept;
        finished
    }
}

impl Engine {
    /// Generates every request, decoding them together ([`DecodeBatch`]); results in the
    /// order of `requests`. Each result equals what [`Engine::generate`] returns for
    /// the same request alone (timings aside).
    pub fn generate_batch(
        &self,
        requests: &[(&[u32], &GenerateOptions)],
    ) -> Vec<Result<Generation, EngineError>> {
        let mut results: Vec<Option<Result<Generation, EngineError>>> =
            requests.iter().map(|_| None).collect();
        let mut batch = DecodeBatch::new(self);
        for (i, (prompt, opts)) in requests.iter().enumerate() {
            if let Some((i, r)) = batch.join(i, prompt, opts) {
                results[i] = Some(r);
            }
        }
        while !batch.is_empty() {
            for (i, r) in batch.step() {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every request joined the batch and left it"))
            .collect()
    }
}
