//! The llama model's training forward and backward on the GPU, one sequence at a time,
//! with f32 master weights on the device, in either precision of
//! [`GpuPrecision`](super::precision::GpuPrecision) (the `DeviceWeights` carry it): bf16
//! GEMM operands and saved GEMM inputs with f32 accumulation, residual stream, statistics
//! and gradients (the default), or f32 throughout (the reference). The fused LM head is
//! bf16 in both.
//!
//! CPU twins: `crate::train::{forward, backward}` and `crate::train::sequence_backward` /
//! `next_token_logprobs` (same op order, same saved activations). Checkpoints stay the
//! CPU format: `DeviceWeights::to_host` gives a `Weights` for the CPU writer.
//!
//! Does not own: batching, the loss (a host closure, as in the twin), or the optimizer
//! (`optim.rs`).

use cudarc::driver::CudaSlice;
use half::bf16;

use super::context::Gpu;
pub use super::device_weights::{Bf16Layer, DeviceLayer, DeviceWeights, LayerMatrices};
use super::error::{GpuError, check_len};
use super::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use super::model_ops::{AttnShape, RowIndex};
use super::nvtx::Range;
use super::precision::GemmInput;

/// What one layer's forward keeps for its backward: GEMM inputs in the mode's operand
/// type, the rest f32 (table in `precision.rs`).
struct LayerActs {
    x: CudaSlice<f32>,
    xn: GemmInput,
    rstd_attn: CudaSlice<f32>,
    q: CudaSlice<f32>,
    k: CudaSlice<f32>,
    v: CudaSlice<f32>,
    lse: CudaSlice<f32>,
    attn: GemmInput,
    h: CudaSlice<f32>,
    hn: GemmInput,
    rstd_ffn: CudaSlice<f32>,
    gate: CudaSlice<f32>,
    up: CudaSlice<f32>,
    act: GemmInput,
}

/// What the training forward saved for the backward (all on the device).
pub struct DeviceActivations {
    tokens: CudaSlice<u32>,
    seq: usize,
    layers: Vec<LayerActs>,
    x_final: CudaSlice<f32>,
    rstd_final: CudaSlice<f32>,
    /// `[T, dim]`: the LM head's input.
    pub hidden: CudaSlice<f32>,
}

impl std::fmt::Debug for DeviceActivations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceActivations")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Log-probs and entropies at the scored positions (as `crate::train::SequenceOutput`).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSequenceOutput {
    pub logprob: Vec<f32>,
    pub entropy: Vec<f32>,
}

impl Gpu {
    /// `crate::train::forward` on the device.
    pub fn model_forward(
        &self,
        w: &DeviceWeights,
        tokens: &[u32],
    ) -> Result<DeviceActivations, GpuError> {
        let c = &w.config;
        let vocab = c.vocab_size as u32;
        if let Some(&bad) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(GpuError::Invalid {
                op: "model_forward",
                detail: format!("token {bad} outside vocabulary {vocab}"),
            });
        }
        let _r = Range::new("model forward");
        let t = tokens.len();
        let (dim, hd, kv) = (c.dim, c.head_dim(), c.kv_dim());
        let shape = AttnShape {
            seq: t,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let tok = self.upload(tokens)?;
        let mut x = self.zeros::<f32>(t * dim)?;
        self.embedding(&w.tok_embeddings, dim, &tok, &mut x)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        let p = w.precision();
        for (li, l) in w.layers.iter().enumerate() {
            let _l = Range::new(format!("layer {li}"));
            let m = w.matrices(li);
            let (xn, rstd_attn) = self.norm_for_gemm(&x, &l.attn_norm, c.norm_eps, p)?;
            let mut q = self.linear_from(&xn, m.wq, t, c.n_heads * hd)?;
            let mut k = self.linear_from(&xn, m.wk, t, kv)?;
            let v = self.linear_from(&xn, m.wv, t, kv)?;
            self.rope(&mut q, c.n_heads, hd, c.rope_theta, 0, false)?;
            self.rope(&mut k, c.n_kv_heads, hd, c.rope_theta, 0, false)?;
            let mut attn = self.zeros::<f32>(t * c.n_heads * hd)?;
            let mut lse = self.zeros::<f32>(c.n_heads * t)?;
            self.attention(&q, &k, &v, shape, &mut attn, &mut lse)?;
            let attn = self.to_gemm_input(attn, p)?;
            let mut h = self.linear_from(&attn, m.wo, t, dim)?;
            self.add_in_place(&mut h, &x)?;
            let (hn, rstd_ffn) = self.norm_for_gemm(&h, &l.ffn_norm, c.norm_eps, p)?;
            let gate = self.linear_from(&hn, m.w_gate, t, c.ffn_dim)?;
            let up = self.linear_from(&hn, m.w_up, t, c.ffn_dim)?;
            let act = self.swiglu_for_gemm(&gate, &up, p)?;
            let mut out = self.linear_from(&act, m.w_down, t, dim)?;
            self.add_in_place(&mut out, &h)?;
            let x_in = std::mem::replace(&mut x, out);
            layers.push(LayerActs {
                x: x_in,
                xn,
                rstd_attn,
                q,
                k,
                v,
                lse,
                attn,
                h,
                hn,
                rstd_ffn,
                gate,
                up,
                act,
            });
        }
        let mut hidden = self.zeros::<f32>(t * dim)?;
        let mut rstd_final = self.zeros::<f32>(t)?;
        self.rms_norm(&x, &w.final_norm, c.norm_eps, &mut hidden, &mut rstd_final)?;
        Ok(DeviceActivations {
            tokens: tok,
            seq: t,
            layers,
            x_final: x,
            rstd_final,
            hidden,
        })
    }

    /// `crate::train::backward` on the device: adds every weight gradient into `grads`
    /// (the LM head's own gradient is the caller's, from the fused loss).
    // tidy: long-function: the backward pass over the layers in reverse, one kernel launch
    // sequence whose order is the algorithm (each launch reads the gradient the previous one
    // wrote); a split would thread weights, activations, gradients and scratch buffers through a
    // dozen arguments. GPU code, checked only on real hardware: not split without a device.
    pub fn model_backward(
        &self,
        w: &DeviceWeights,
        acts: &DeviceActivations,
        dhidden: &CudaSlice<f32>,
        grads: &mut DeviceWeights,
    ) -> Result<(), GpuError> {
        let c = &w.config;
        let t = acts.seq;
        let (dim, hd, kv) = (c.dim, c.head_dim(), c.kv_dim());
        check_len("model_backward", "dhidden", t * dim, dhidden.len())?;
        let _r = Range::new("model backward");
        let shape = AttnShape {
            seq: t,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let mut dx = self.zeros::<f32>(t * dim)?;
        self.rms_norm_backward(
            dhidden,
            &acts.x_final,
            &w.final_norm,
            &acts.rstd_final,
            &mut dx,
            &mut grads.final_norm,
        )?;
        for (li, ((l, g), a)) in w
            .layers
            .iter()
            .zip(grads.layers.iter_mut())
            .zip(&acts.layers)
            .enumerate()
            .rev()
        {
            let _l = Range::new(format!("layer {li} backward"));
            let m = w.matrices(li);
            let mut dact = self.zeros::<f32>(t * c.ffn_dim)?;
            self.linear_backward_from(
                &dx,
                &a.act,
                m.w_down,
                &mut g.w_down,
                t,
                dim,
                &mut dact,
                false,
            )?;
            let mut dgate = self.zeros::<f32>(t * c.ffn_dim)?;
            let mut dup = self.zeros::<f32>(t * c.ffn_dim)?;
            self.swiglu_backward(&dact, &a.gate, &a.up, &mut dgate, &mut dup)?;
            let mut dhn = self.zeros::<f32>(t * dim)?;
            self.linear_backward_from(
                &dgate,
                &a.hn,
                m.w_gate,
                &mut g.w_gate,
                t,
                c.ffn_dim,
                &mut dhn,
                false,
            )?;
            self.linear_backward_from(
                &dup,
                &a.hn,
                m.w_up,
                &mut g.w_up,
                t,
                c.ffn_dim,
                &mut dhn,
                true,
            )?;
            let mut dh = self.zeros::<f32>(t * dim)?;
            self.rms_norm_backward(
                &dhn,
                &a.h,
                &l.ffn_norm,
                &a.rstd_ffn,
                &mut dh,
                &mut g.ffn_norm,
            )?;
            self.add_in_place(&mut dh, &dx)?;
            let mut dattn = self.zeros::<f32>(t * c.n_heads * hd)?;
            self.linear_backward_from(&dh, &a.attn, m.wo, &mut g.wo, t, dim, &mut dattn, false)?;
            let mut dq = self.zeros::<f32>(t * c.n_heads * hd)?;
            let mut dk = self.zeros::<f32>(t * kv)?;
            let mut dv = self.zeros::<f32>(t * kv)?;
            // The attention backward reads its output O as f32 (bf16-saved in Bf16 mode).
            self.with_f32(&a.attn, |attn| {
                self.attention_backward(
                    &dattn, &a.q, &a.k, &a.v, attn, &a.lse, shape, &mut dq, &mut dk, &mut dv,
                )
            })?;
            self.rope(&mut dq, c.n_heads, hd, c.rope_theta, 0, true)?;
            self.rope(&mut dk, c.n_kv_heads, hd, c.rope_theta, 0, true)?;
            let mut dxn = self.zeros::<f32>(t * dim)?;
            self.linear_backward_from(
                &dq,
                &a.xn,
                m.wq,
                &mut g.wq,
                t,
                c.n_heads * hd,
                &mut dxn,
                false,
            )?;
            self.linear_backward_from(&dk, &a.xn, m.wk, &mut g.wk, t, kv, &mut dxn, true)?;
            self.linear_backward_from(&dv, &a.xn, m.wv, &mut g.wv, t, kv, &mut dxn, true)?;
            let mut dx_in = self.zeros::<f32>(t * dim)?;
            self.rms_norm_backward(
                &dxn,
                &a.x,
                &l.attn_norm,
                &a.rstd_attn,
                &mut dx_in,
                &mut g.attn_norm,
            )?;
            self.add_in_place(&mut dx_in, &dh)?;
            dx = dx_in;
        }
        self.embedding_backward(&mut grads.tok_embeddings, dim, &acts.tokens, &dx)?;
        Ok(())
    }

    /// `crate::train::next_token_logprobs` on the device: log-probs and entropies at
    /// `positions` (no gradient).
    pub fn next_token_logprobs(
        &self,
        w: &DeviceWeights,
        tokens: &[u32],
        positions: &[usize],
        temperature: f32,
    ) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        check_positions("next_token_logprobs", tokens, positions)?;
        let c = &w.config;
        let (dim, vocab, n) = (c.dim, c.vocab_size, positions.len());
        let acts = self.model_forward(w, tokens)?;
        let rows = self.scoring_rows("next_token_logprobs", &acts, tokens, positions, dim)?;
        let mut lp = self.zeros::<f32>(n)?;
        let mut en = self.zeros::<f32>(n)?;
        let mut ws = LmHeadWorkspace::new(self, vocab, workspace_bytes(n, vocab))?;
        let shape = LmHeadShape {
            tokens: n,
            dim,
            vocab,
            temperature,
        };
        let inp = LmHeadInputs {
            hidden: &rows.hidden,
            weight: w.lm_head_bf16()?,
            targets: &rows.targets,
            dlogprob: None,
            dentropy: None,
        };
        let mut out = LmHeadOutputs {
            logprob: &mut lp,
            entropy: &mut en,
            dhidden: None,
            dweight: None,
        };
        self.lm_head_loss(&shape, &inp, &mut out, &mut ws)?;
        Ok((self.download(&lp)?, self.download(&en)?))
    }

    /// `crate::train::sequence_backward` on the device: forward, the fused LM head at
    /// `positions` (row `p − 1` scores `tokens[p]`; positions distinct), the host `loss`
    /// closure on the log-probs, then the backward into `grads` (LM head gradient
    /// included). The LM head's logits GEMM runs once per chunk
    /// (`Gpu::lm_head_loss_and_backward`); the scoring rows are gathered and their
    /// gradient scattered on the device.
    pub fn sequence_backward(
        &self,
        w: &DeviceWeights,
        tokens: &[u32],
        positions: &[usize],
        temperature: f32,
        loss: impl FnOnce(&[f32]) -> Vec<f32>,
        grads: &mut DeviceWeights,
    ) -> Result<GpuSequenceOutput, GpuError> {
        const OP: &str = "sequence_backward";
        check_positions(OP, tokens, positions)?;
        let c = w.config.clone();
        let (dim, vocab, n) = (c.dim, c.vocab_size, positions.len());
        let acts = self.model_forward(w, tokens)?;
        let rows = self.scoring_rows(OP, &acts, tokens, positions, dim)?;
        let mut lp = self.zeros::<f32>(n)?;
        let mut en = self.zeros::<f32>(n)?;
        let mut ws = LmHeadWorkspace::new(self, vocab, workspace_bytes(n, vocab))?;
        let shape = LmHeadShape {
            tokens: n,
            dim,
            vocab,
            temperature,
        };
        let mut dh = self.zeros::<f32>(n * dim)?;
        let (logprob, entropy) = {
            let inp = LmHeadInputs {
                hidden: &rows.hidden,
                weight: w.lm_head_bf16()?,
                targets: &rows.targets,
                dlogprob: None,
                dentropy: None,
            };
            let mut out = LmHeadOutputs {
                logprob: &mut lp,
                entropy: &mut en,
                dhidden: Some(&mut dh),
                dweight: Some(grads.lm_head_mut()),
            };
            self.lm_head_loss_and_backward(&shape, &inp, &mut out, &mut ws, loss)?
        };
        drop(ws);
        let mut dhidden = self.zeros::<f32>(tokens.len() * dim)?;
        self.scatter_rows_add(&dh, &rows.index, dim, &mut dhidden)?;
        self.model_backward(w, &acts, &dhidden, grads)?;
        Ok(GpuSequenceOutput { logprob, entropy })
    }

    /// The LM head's inputs at `positions`: hidden rows `p − 1` gathered into bf16 on the
    /// device, and the targets `tokens[p]`.
    fn scoring_rows(
        &self,
        op: &'static str,
        acts: &DeviceActivations,
        tokens: &[u32],
        positions: &[usize],
        dim: usize,
    ) -> Result<ScoringRows, GpuError> {
        check_positions(op, tokens, positions)?;
        let n = positions.len();
        let row_ids: Vec<u32> = positions.iter().map(|&p| (p - 1) as u32).collect();
        let mut hidden = self.zeros::<bf16>(n * dim)?;
        let index = self.gather_rows_bf16(&acts.hidden, dim, &row_ids, &mut hidden)?;
        let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
        Ok(ScoringRows {
            hidden,
            targets: self.upload(&targets)?,
            index,
        })
    }
}

/// Positions score `tokens[p]` from row `p − 1`: each must lie in `1..tokens.len()`
/// (checked before any work; distinctness is checked by the gather).
fn check_positions(op: &'static str, tokens: &[u32], positions: &[usize]) -> Result<(), GpuError> {
    if positions.iter().all(|&p| p >= 1 && p < tokens.len()) {
        Ok(())
    } else {
        Err(GpuError::Invalid {
            op,
            detail: format!("positions must lie in 1..{}", tokens.len()),
        })
    }
}

/// At most 1 GiB of LM-head logits workspace (6 bytes per logit). The training pass keeps
/// the last chunk's logits through the host loss and recomputes only the others
/// (`Gpu::lm_head_loss_and_backward`), so a workspace that holds every scored row saves
/// the whole second logits GEMM: 1 GiB holds 3,640 SmolLM2 rows (a 2,048-token sequence
/// in one chunk; the cap itself is 3,584 rows) or ~1,150 rows of a 152k vocabulary, small next to the 78+ GiB of the
/// GPUs this runs on.
const LM_HEAD_WORKSPACE_BYTES: usize = 1 << 30;

/// The workspace for `n` scored rows: all of them rounded up to a multiple of 64 (the
/// workspace keeps 64-row multiples, tensor-core friendly), capped at
/// [`LM_HEAD_WORKSPACE_BYTES`].
fn workspace_bytes(n: usize, vocab: usize) -> usize {
    let per_row = vocab.max(1) * 6;
    (n.max(1).next_multiple_of(64) * per_row).min(LM_HEAD_WORKSPACE_BYTES.max(per_row))
}

/// The LM head's operands for one sequence (`Gpu::scoring_rows`).
struct ScoringRows {
    hidden: CudaSlice<bf16>,
    targets: CudaSlice<u32>,
    index: RowIndex,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lm_head_workspace_holds_a_whole_sequence_up_to_the_cap() {
        let rows = |n, v| workspace_bytes(n, v) / (v * 6);
        // A 2,048-token SmolLM2 sequence (2,047 scored rows) fits one chunk.
        assert_eq!(rows(2047, 49_152), 2048);
        assert_eq!(rows(1, 49_152), 64);
        // Longer sequences are capped at 1 GiB (the backward then recomputes the chunks
        // it could not keep).
        assert!(workspace_bytes(100_000, 49_152) <= LM_HEAD_WORKSPACE_BYTES);
        // A vocabulary too large for one row within the cap still gets one row.
        assert_eq!(rows(10, 200_000_000), 1);
    }
}
