//! Generation on the GPU with a device KV cache: prefill and one-token decode steps
//! through the same kernels as training (attention with a query offset over the cache),
//! logits copied to the host and sampled by the engine's `Sampler`.
//!
//! CPU twin: `crate::infer::Engine` (f32 decode path): same model, same sampler, same
//! per-token logprobs. Precision: [`GpuPrecision::Bf16`] by default (bf16 weight copies
//! and GEMM operands, the LM head included, with f32 accumulation; f32 residual stream and
//! KV cache), [`GpuPrecision::F32`] for the exact reference (`precision.rs`). Does not own: the tokenizer, stop strings or chat templates (the
//! engine's); callers pass token ids and end ids and decode text themselves.

use std::time::Instant;

use cudarc::driver::CudaSlice;

use super::context::Gpu;
use super::error::GpuError;
use super::model::DeviceWeights;
use super::model_ops::AttnShape;
use super::nvtx::Range;
use super::precision::GpuPrecision;
use crate::infer::sampling::{Sampler, SamplingOptions};
use crate::weights::Weights;

/// Weights and KV cache on the device for one generation stream.
pub struct GpuDecoder {
    w: DeviceWeights,
    k_cache: Vec<CudaSlice<f32>>,
    v_cache: Vec<CudaSlice<f32>>,
    len: usize,
    capacity: usize,
}

impl std::fmt::Debug for GpuDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDecoder")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// What `GpuDecoder::generate` produced (the engine's `Generation` minus text).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuGeneration {
    pub token_ids: Vec<u32>,
    /// Log-probability under the sampling temperature (behaviour policy).
    pub logprobs: Vec<f32>,
    /// Log-probability under the untempered model.
    pub raw_logprobs: Vec<f32>,
    /// An end id was sampled (it is the last token).
    pub ended: bool,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl GpuDecoder {
    /// Uploads `weights` in the default precision (bf16) and allocates a cache of
    /// `capacity` positions.
    pub fn new(gpu: &Gpu, weights: &Weights, capacity: usize) -> Result<Self, GpuError> {
        Self::with_precision(gpu, weights, capacity, GpuPrecision::default())
    }

    /// [`GpuDecoder::new`] in the given precision.
    pub fn with_precision(
        gpu: &Gpu,
        weights: &Weights,
        capacity: usize,
        precision: GpuPrecision,
    ) -> Result<Self, GpuError> {
        let c = &weights.config;
        let w = DeviceWeights::upload_with(gpu, weights, precision)?;
        let kv = capacity * c.kv_dim();
        let k_cache = (0..c.n_layers)
            .map(|_| gpu.zeros::<f32>(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let v_cache = (0..c.n_layers)
            .map(|_| gpu.zeros::<f32>(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GpuDecoder {
            w,
            k_cache,
            v_cache,
            len: 0,
            capacity,
        })
    }

    /// Replaces the weights (same shape; e.g. after a training step) and empties the
    /// cache, whose keys and values came from the old weights.
    pub fn set_weights(&mut self, gpu: &Gpu, weights: &Weights) -> Result<(), GpuError> {
        if weights.config != self.w.config {
            return Err(GpuError::Invalid {
                op: "decoder set_weights",
                detail: "the new weights have a different shape".into(),
            });
        }
        self.w = DeviceWeights::upload_with(gpu, weights, self.w.precision())?;
        self.len = 0;
        Ok(())
    }

    /// The precision the decoder's GEMMs run in.
    pub fn precision(&self) -> GpuPrecision {
        self.w.precision()
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets positions `len..` (keeps a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Runs `tokens` at positions `len ..` through the model, appends their keys and
    /// values to the cache, and returns the logits of the last one (`[vocab]`).
    pub fn forward_last(&mut self, gpu: &Gpu, tokens: &[u32]) -> Result<Vec<f32>, GpuError> {
        const OP: &str = "decode";
        let c = self.w.config.clone();
        let n = tokens.len();
        if n == 0 {
            return Err(GpuError::Invalid {
                op: OP,
                detail: "no tokens".into(),
            });
        }
        if self.len + n > self.capacity {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!(
                    "cache holds {} of {} positions; {n} more do not fit",
                    self.len, self.capacity
                ),
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("token {bad} outside vocabulary {}", c.vocab_size),
            });
        }
        let _r = Range::new(if n > 1 { "prefill" } else { "decode step" });
        let (dim, hd, kv) = (c.dim, c.head_dim(), c.kv_dim());
        let pos0 = self.len;
        let tok = gpu.upload(tokens)?;
        let mut x = gpu.zeros::<f32>(n * dim)?;
        gpu.embedding(&self.w.tok_embeddings, dim, &tok, &mut x)?;
        let shape = AttnShape {
            seq: n,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let p = self.w.precision();
        for (li, l) in self.w.layers.iter().enumerate() {
            let _l = Range::new(format!("layer {li}"));
            let m = self.w.matrices(li);
            let (xn, _) = gpu.norm_for_gemm(&x, &l.attn_norm, c.norm_eps, p)?;
            let mut q = gpu.linear_from(&xn, m.wq, n, c.n_heads * hd)?;
            let mut k = gpu.linear_from(&xn, m.wk, n, kv)?;
            let v = gpu.linear_from(&xn, m.wv, n, kv)?;
            gpu.rope(&mut q, c.n_heads, hd, c.rope_theta, pos0, false)?;
            gpu.rope(&mut k, c.n_kv_heads, hd, c.rope_theta, pos0, false)?;
            {
                let mut kd = self.k_cache[li].slice_mut(pos0 * kv..(pos0 + n) * kv);
                gpu.stream()
                    .memcpy_dtod(&k, &mut kd)
                    .map_err(GpuError::driver("append k cache"))?;
                let mut vd = self.v_cache[li].slice_mut(pos0 * kv..(pos0 + n) * kv);
                gpu.stream()
                    .memcpy_dtod(&v, &mut vd)
                    .map_err(GpuError::driver("append v cache"))?;
            }
            let mut attn = gpu.zeros::<f32>(n * c.n_heads * hd)?;
            let mut lse = gpu.zeros::<f32>(c.n_heads * n)?;
            gpu.attention_at(
                &q,
                &self.k_cache[li],
                &self.v_cache[li],
                shape,
                pos0,
                &mut attn,
                &mut lse,
            )?;
            let attn = gpu.to_gemm_input(attn, p)?;
            let mut h = gpu.linear_from(&attn, m.wo, n, dim)?;
            gpu.add_in_place(&mut h, &x)?;
            let (hn, _) = gpu.norm_for_gemm(&h, &l.ffn_norm, c.norm_eps, p)?;
            let gate = gpu.linear_from(&hn, m.w_gate, n, c.ffn_dim)?;
            let up = gpu.linear_from(&hn, m.w_up, n, c.ffn_dim)?;
            let act = gpu.swiglu_for_gemm(&gate, &up, p)?;
            let mut out = gpu.linear_from(&act, m.w_down, n, dim)?;
            gpu.add_in_place(&mut out, &h)?;
            x = out;
        }
        self.len += n;
        // Only the last row goes through the final norm and the LM head.
        let last = gpu
            .stream()
            .clone_dtod(&x.slice((n - 1) * dim..n * dim))
            .map_err(GpuError::driver("last row"))?;
        // F32 mode: f32 logits GEMM on the f32 head (the reference). Bf16 mode: the head's
        // bf16 copy, the largest matrix a decode step reads, at half the bytes.
        let (hidden, _) = gpu.norm_for_gemm(&last, &self.w.final_norm, c.norm_eps, p)?;
        let logits = gpu.linear_from(&hidden, self.w.lm_head_matrix(), 1, c.vocab_size)?;
        gpu.download(&logits)
    }

    /// Samples up to `max_tokens` after `prompt` (the cache is reset first), stopping at an
    /// id in `end_ids` or when the cache is full.
    pub fn generate(
        &mut self,
        gpu: &Gpu,
        prompt: &[u32],
        max_tokens: usize,
        sampling: SamplingOptions,
        end_ids: &[u32],
    ) -> Result<GpuGeneration, GpuError> {
        self.truncate(0);
        let mut out = GpuGeneration {
            token_ids: Vec::new(),
            logprobs: Vec::new(),
            raw_logprobs: Vec::new(),
            ended: false,
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
        };
        if max_tokens == 0 || prompt.is_empty() {
            return Ok(out);
        }
        let mut sampler = Sampler::new(sampling);
        let t0 = Instant::now();
        let mut logits = self.forward_last(gpu, prompt)?;
        out.prefill_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        loop {
            let choice = sampler.sample(&logits);
            out.token_ids.push(choice.token);
            out.logprobs.push(choice.logprob);
            out.raw_logprobs.push(choice.raw_logprob);
            if end_ids.contains(&choice.token) {
                out.ended = true;
                break;
            }
            if out.token_ids.len() >= max_tokens || self.len >= self.capacity {
                break;
            }
            logits = self.forward_last(gpu, &[choice.token])?;
        }
        out.decode_seconds = t1.elapsed().as_secs_f64();
        Ok(out)
    }
}
