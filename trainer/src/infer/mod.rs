//! The generation engine: a loaded model, its tokenizer, and `generate`.
//!
//! Owns: [`Engine`] (load from GGUF, build from [`Weights`], swap weights after a
//! training step), prompt prefill and token-by-token decode with a KV cache
//! ([`forward`]), sampling ([`sampling`]), stop tokens and stop sequences, and the
//! [`Generation`] record (text, ids, per-token logprobs, timings); continuous batching
//! of several generations ([`batch`]: one pass over the weights per decode step for
//! every active sequence, [`batch_step`]; a thread that feeds it from a queue,
//! [`batcher`]), exact against generating each alone.
//! Does not own: chat prompts (`crate::tokenizer::chat`), the training forward/backward.
//!
//! Precision ([`Precision`]): the f32 [`Weights`] are the master copy (the
//! trainer's) and [`Engine::logits`] always uses them. `generate` by default
//! ([`Precision::Fast`]) runs the prompt through a bf16 copy with the AVX-512 BF16
//! GEMM (compute-bound: twice the arithmetic rate of f32; f32 GEMM on CPUs without
//! it) and generated tokens through a Q8_0 copy (memory-bound: 3.6x fewer bytes
//! than f32). [`Precision::F32`] uses the f32 weights everywhere (bit-for-bit the
//! function the trainer computes, several times slower).
//!
//! `Engine` is `Send + Sync`: `generate` takes `&self` and keeps its KV cache on the
//! stack, so several tasks (e.g. tokio `spawn_blocking`) may share one engine.
//!
//! Device ([`Engine::set_device`], [`Engine::load_on`]): on a CUDA device `generate`
//! runs prefill and decode through the GPU decoder (f32 weights and KV cache on the
//! device, `cuda.rs`), with the same sampling, stops, text and logprobs; generations
//! then take turns on the device. [`Engine::logits`] and the `*_logits` checks stay on
//! the CPU.

pub mod batch;
pub mod batch_step;
pub mod batcher;
#[cfg(feature = "cuda")]
mod cuda;
pub mod forward;
pub mod qweights;
pub mod sampling;
mod sequence;

use crate::device::{ActiveDevice, Device, DeviceError, Resolved};
use crate::gguf::{self, GgufError, GgufFile};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::Weights;
use forward::{Bf16Model, KvCache, LogitsFor, ModelRef, Q8Model, RopeTable};
use sampling::SamplingOptions;
use sequence::Decoding;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Why the engine could not load or generate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("the prompt has {prompt} tokens; the context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("tokenizer has {tokenizer} tokens but the model's vocabulary is {model}")]
    VocabMismatch { tokenizer: usize, model: usize },
    #[error("new weights have a different shape: {0}")]
    ShapeChanged(String),
    /// The device generating failed (CUDA; the CPU path has no device errors).
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Which weight copies `generate` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// bf16 prompt prefill (when the CPU has AVX-512 BF16) and Q8_0 decode.
    #[default]
    Fast,
    /// The f32 master weights throughout.
    F32,
}

/// The kernels an engine actually uses (fast paths fall back when the CPU or the
/// model's shapes do not allow them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Kernels {
    /// `"bf16"` or `"f32"`.
    pub prefill: &'static str,
    /// `"q8_0"` or `"f32"`.
    pub decode: &'static str,
}

/// Settings of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
    /// Stop when one of these strings appears in the output; it is cut from `text`.
    pub stop: Vec<String>,
    /// Stop at end-of-turn / end-of-text tokens (`<|im_end|>`, `<|endoftext|>`, EOS).
    pub stop_at_eos: bool,
    /// Also report, beside each sampled token, the this many most likely tokens and
    /// their log-probabilities (`Generation::top_logprobs`); 0: none.
    pub top_logprobs: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingOptions::default(),
            stop: Vec::new(),
            stop_at_eos: true,
            top_logprobs: 0,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end token was sampled (it is the last of `token_ids`).
    Eos,
    /// A stop sequence appeared (index into `stop`).
    Stop(usize),
    /// `max_tokens` reached.
    Length,
    /// The context window is full.
    ContextFull,
}

/// What one generation produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text (lossy UTF-8), without the end token and cut before a stop sequence.
    pub text: String,
    /// Every sampled token, including an end token or the token that completed a stop
    /// sequence: what the policy actually emitted, for training.
    pub token_ids: Vec<u32>,
    /// Per token: log-probability under the sampling temperature (behaviour policy).
    pub logprobs: Vec<f32>,
    /// Per token: log-probability under the untempered model (T = 1).
    pub raw_logprobs: Vec<f32>,
    /// Per token, when `GenerateOptions::top_logprobs` asked for them: the most likely
    /// tokens at that step and their log-probabilities, as `logprobs` measures them
    /// (`sampling::top_logprobs`); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    pub prompt_tokens: usize,
    pub finish: FinishReason,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl Generation {
    /// Decode speed, tokens per second (the first token comes from prefill).
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.token_ids.len().saturating_sub(1);
        if self.decode_seconds > 0.0 {
            n as f64 / self.decode_seconds
        } else {
            0.0
        }
    }
    pub fn prefill_tokens_per_second(&self) -> f64 {
        if self.prefill_seconds > 0.0 {
            self.prompt_tokens as f64 / self.prefill_seconds
        } else {
            0.0
        }
    }
}

/// A model ready to generate.
pub struct Engine {
    weights: Weights,
    q8: Option<Q8Model>,
    bf16: Option<Bf16Model>,
    rope: RopeTable,
    tokenizer: Tokenizer,
    precision: Precision,
    /// Tokens that end a turn.
    end_ids: Vec<u32>,
    /// Where `generate` runs.
    active: ActiveDevice,
    #[cfg(feature = "cuda")]
    cuda: Option<cuda::CudaDecoder>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.weights.config)
            .field("precision", &self.precision)
            .field("device", &self.active)
            .finish()
    }
}

impl Engine {
    /// Loads a GGUF model and its tokenizer.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let f = GgufFile::open(path)?;
        Self::from_gguf(&f)
    }

    /// Loads a GGUF model and moves generation to `device` ([`Engine::set_device`]).
    pub fn load_on(path: impl AsRef<Path>, device: Device) -> Result<Self, EngineError> {
        let mut e = Self::load(path)?;
        e.set_device(device)?;
        Ok(e)
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Self, EngineError> {
        let config = gguf::config_from_gguf(f)?;
        let tokenizer = Tokenizer::from_gguf(f)?;
        let weights = gguf::weights_from_gguf(f, &config)?;
        Self::from_weights(weights, tokenizer, Precision::default())
    }

    /// An engine over given weights (e.g. the trainer's current policy).
    pub fn from_weights(
        weights: Weights,
        tokenizer: Tokenizer,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        if tokenizer.vocab_size() > weights.config.vocab_size {
            return Err(EngineError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: weights.config.vocab_size,
            });
        }
        let end_ids = [
            Some(tokenizer.eos_id),
            tokenizer.end_of_turn_id(),
            tokenizer.token_id("<|endoftext|>"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut e = Engine {
            rope: RopeTable::new(&weights.config),
            q8: None,
            bf16: None,
            weights,
            tokenizer,
            precision,
            end_ids,
            active: ActiveDevice::Cpu {
                fallback_reason: None,
            },
            #[cfg(feature = "cuda")]
            cuda: None,
        };
        e.rebuild_fast_weights();
        Ok(e)
    }

    /// Moves generation to `device`: `Auto` picks CUDA device 0 when usable, else the
    /// CPU; `Cuda(n)` without a usable GPU is `DeviceError::Cuda` (source
    /// `GpuError::NoGpu`) and leaves the engine as it was.
    pub fn set_device(&mut self, device: Device) -> Result<&ActiveDevice, EngineError> {
        let resolved = crate::device::resolve(device)?;
        let active = resolved.active();
        match resolved {
            Resolved::Cpu { .. } => {
                #[cfg(feature = "cuda")]
                {
                    self.cuda = None;
                }
            }
            #[cfg(feature = "cuda")]
            Resolved::Cuda(gpu) => {
                let err = crate::device::on(&gpu);
                self.cuda =
                    Some(cuda::CudaDecoder::new(gpu, &self.weights, self.precision).map_err(err)?);
            }
        }
        self.active = active;
        Ok(&self.active)
    }

    /// Where `generate` runs.
    pub fn device(&self) -> &ActiveDevice {
        &self.active
    }

    fn rebuild_fast_weights(&mut self) {
        // Widths that are not multiples of 32 fall back to f32 decode; CPUs without
        // AVX-512 BF16 to f32 prefill.
        (self.q8, self.bf16) = match self.precision {
            Precision::Fast => (
                Q8Model::from_weights(&self.weights),
                Bf16Model::from_weights(&self.weights),
            ),
            Precision::F32 => (None, None),
        };
    }

    /// Replaces the weights (after a training step); the shape must not change.
    pub fn set_weights(&mut self, weights: Weights) -> Result<(), EngineError> {
        if weights.config != self.weights.config {
            return Err(EngineError::ShapeChanged(format!(
                "{:?} vs {:?}",
                weights.config, self.weights.config
            )));
        }
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            let err = crate::device::on(c.gpu());
            c.set_weights(&weights).map_err(err)?;
        }
        self.weights = weights;
        self.rebuild_fast_weights();
        Ok(())
    }

    /// Switches between the fast kernels and exact f32 (on the CPU and, when generation
    /// runs there, on the GPU: bf16 or f32). On a GPU error the engine keeps its
    /// previous precision.
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), EngineError> {
        if precision == self.precision {
            return Ok(());
        }
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            let err = crate::device::on(c.gpu());
            c.set_precision(&self.weights, precision).map_err(err)?;
        }
        self.precision = precision;
        self.rebuild_fast_weights();
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The kernels in use after fallbacks.
    pub fn kernels(&self) -> Kernels {
        if self.active.is_cuda() {
            return Kernels {
                prefill: "cuda_f32",
                decode: "cuda_f32",
            };
        }
        Kernels {
            prefill: if self.bf16.is_some() { "bf16" } else { "f32" },
            decode: if self.q8.is_some() { "q8_0" } else { "f32" },
        }
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn config(&self) -> &crate::Config {
        &self.weights.config
    }

    /// The model view: `fast` enables the bf16/Q8_0 copies (when built).
    fn model(&self, fast: bool) -> ModelRef<'_> {
        ModelRef {
            w: &self.weights,
            q8: self.q8.as_ref().filter(|_| fast),
            bf16: self.bf16.as_ref().filter(|_| fast),
            rope: &self.rope,
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let vocab = self.weights.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::TokenOutOfRange { id, vocab });
        }
        let context = self.weights.config.max_seq_len;
        if ids.len() > context {
            return Err(EngineError::PromptTooLong {
                prompt: ids.len(),
                context,
            });
        }
        Ok(())
    }

    /// Logits of every position (`[ids.len(), vocab]`), f32 weights throughout.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_ids(ids)?;
        let mut cache = KvCache::new(&self.weights.config, ids.len());
        Ok(forward::forward(
            self.model(false),
            &mut cache,
            ids,
            LogitsFor::All,
        ))
    }

    /// Logits of every position through the prefill path `generate` uses (bf16 under
    /// [`Precision::Fast`] when available). For tests and checks.
    pub fn prefill_logits(&self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_ids(ids)?;
        let mut cache = KvCache::new(&self.weights.config, ids.len());
        Ok(forward::forward(
            self.model(true),
            &mut cache,
            ids,
            LogitsFor::All,
        ))
    }

    /// Logits of each position when the ids are fed one at a time through the decode
    /// path: what `generate` sees for generated tokens. For tests and checks.
    pub fn decode_logits(&self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_ids(ids)?;
        let mut cache = KvCache::new(&self.weights.config, ids.len());
        let mut out = Vec::new();
        for id in ids {
            out.extend(forward::forward(
                self.model(true),
                &mut cache,
                std::slice::from_ref(id),
                LogitsFor::Last,
            ));
        }
        Ok(out)
    }

    /// Generates a continuation of `prompt_ids`.
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Generation, EngineError> {
        self.generate_streaming(prompt_ids, opts, |_, _| {})
    }

    /// [`Engine::generate`], calling `on_token(id, bytes)` as each token is sampled.
    pub fn generate_streaming(
        &self,
        prompt_ids: &[u32],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(u32, &[u8]),
    ) -> Result<Generation, EngineError> {
        self.check_ids(prompt_ids)?;
        let capacity = self.capacity(prompt_ids, opts);
        let mut seq = Decoding::new(
            &self.tokenizer,
            &self.end_ids,
            prompt_ids.len(),
            opts.clone(),
            capacity,
        );
        if opts.max_tokens == 0 {
            return Ok(seq.finish());
        }
        let mut stepper = self.stepper(capacity)?;
        let t0 = Instant::now();
        let mut logits = stepper.forward_last(prompt_ids)?;
        seq.prefilled(t0.elapsed().as_secs_f64());
        while let Some(next) = seq.accept(&logits, stepper.len(), &mut on_token) {
            logits = stepper.forward_last(&[next])?;
        }
        Ok(seq.finish())
    }

    /// Positions one generation may fill: its prompt and new tokens, at most the context.
    fn capacity(&self, prompt_ids: &[u32], opts: &GenerateOptions) -> usize {
        (prompt_ids.len() + opts.max_tokens).min(self.weights.config.max_seq_len)
    }
}

/// What `generate` runs its forwards through: the CPU fast paths with a cache on the
/// heap, or the device's decoder.
enum Stepper<'a> {
    Cpu {
        model: ModelRef<'a>,
        cache: KvCache,
    },
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaStepper<'a>),
}

impl Engine {
    /// A stepper for one generation of at most `capacity` positions.
    fn stepper(&self, capacity: usize) -> Result<Stepper<'_>, EngineError> {
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.cuda {
            let err = crate::device::on(c.gpu());
            return Ok(Stepper::Cuda(c.stepper().map_err(err)?));
        }
        Ok(Stepper::Cpu {
            model: self.model(true),
            cache: KvCache::new(&self.weights.config, capacity),
        })
    }
}

impl Stepper<'_> {
    /// Runs `ids` after the cached positions; logits of the last one.
    fn forward_last(&mut self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        match self {
            Stepper::Cpu { model, cache } => {
                Ok(forward::forward(*model, cache, ids, LogitsFor::Last))
            }
            #[cfg(feature = "cuda")]
            Stepper::Cuda(s) => {
                let err = crate::device::on(s.gpu());
                s.forward_last(ids).map_err(|e| err(e).into())
            }
        }
    }

    /// The KV cache of a CPU stepper (which the batched decode step can drive).
    fn cpu_cache(&mut self) -> Option<&mut KvCache> {
        match self {
            Stepper::Cpu { cache, .. } => Some(cache),
            #[cfg(feature = "cuda")]
            Stepper::Cuda(_) => None,
        }
    }

    /// Positions processed.
    fn len(&self) -> usize {
        match self {
            Stepper::Cpu { cache, .. } => cache.len(),
            #[cfg(feature = "cuda")]
            Stepper::Cuda(s) => s.len(),
        }
    }
}

/// Threads the engine's parallel loops use (rayon's global pool).
pub fn worker_threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `f` with the engine's parallel loops and GEMMs on one thread (baselines).
pub fn single_threaded<R: Send>(
    f: impl FnOnce() -> R + Send,
) -> Result<R, rayon::ThreadPoolBuildError> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()?
        .install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }
}
