//! The llama model's training forward and backward on the GPU, one sequence at a time,
//! with f32 master weights on the device, f32 activations, cuBLAS GEMMs with f32
//! accumulation, and the fused bf16 LM head.
//!
//! CPU twins: `crate::train::{forward, backward}` and `crate::train::sequence_backward` /
//! `next_token_logprobs` (same op order, same saved activations). Checkpoints stay the
//! CPU format: `DeviceWeights::to_host` gives a `Weights` for the CPU writer.
//!
//! Does not own: batching, the loss (a host closure, as in the twin), or the optimizer
//! (`optim.rs`).

use cudarc::driver::CudaSlice;
use half::bf16;

use super::blas::Gemm;
use super::context::Gpu;
pub use super::device_weights::{DeviceLayer, DeviceWeights};
use super::error::{GpuError, check_len};
use super::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use super::model_ops::AttnShape;
use super::nvtx::Range;

struct LayerActs {
    x: CudaSlice<f32>,
    xn: CudaSlice<f32>,
    rstd_attn: CudaSlice<f32>,
    q: CudaSlice<f32>,
    k: CudaSlice<f32>,
    v: CudaSlice<f32>,
    lse: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    h: CudaSlice<f32>,
    hn: CudaSlice<f32>,
    rstd_ffn: CudaSlice<f32>,
    gate: CudaSlice<f32>,
    up: CudaSlice<f32>,
    act: CudaSlice<f32>,
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
    /// `y[rows, out] = x[rows, in] · Wᵀ` (W is `[out, in]`), f32.
    pub(crate) fn linear(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        rows: usize,
        out: usize,
    ) -> Result<CudaSlice<f32>, GpuError> {
        let inp = w.len() / out.max(1);
        let mut y = self.zeros::<f32>(rows * out)?;
        self.gemm(
            &Gemm {
                m: rows,
                n: out,
                k: inp,
                a_trans: false,
                b_trans: true,
                alpha: 1.0,
                beta: 0.0,
            },
            x,
            w,
            &mut y,
        )?;
        Ok(y)
    }

    /// `dx (+)= dy · W` (added when `accumulate`) and `dW += dyᵀ · x`.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        dy: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dw: &mut CudaSlice<f32>,
        rows: usize,
        out: usize,
        dx: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let inp = w.len() / out.max(1);
        self.gemm(
            &Gemm {
                m: out,
                n: inp,
                k: rows,
                a_trans: true,
                b_trans: false,
                alpha: 1.0,
                beta: 1.0,
            },
            dy,
            x,
            dw,
        )?;
        let beta = if accumulate { 1.0 } else { 0.0 };
        self.gemm(
            &Gemm {
                beta,
                ..Gemm::nn(rows, inp, out)
            },
            dy,
            w,
            dx,
        )
    }

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
        for (li, l) in w.layers.iter().enumerate() {
            let _l = Range::new(format!("layer {li}"));
            let mut xn = self.zeros::<f32>(t * dim)?;
            let mut rstd_attn = self.zeros::<f32>(t)?;
            self.rms_norm(&x, &l.attn_norm, c.norm_eps, &mut xn, &mut rstd_attn)?;
            let mut q = self.linear(&xn, &l.wq, t, c.n_heads * hd)?;
            let mut k = self.linear(&xn, &l.wk, t, kv)?;
            let v = self.linear(&xn, &l.wv, t, kv)?;
            self.rope(&mut q, c.n_heads, hd, c.rope_theta, 0, false)?;
            self.rope(&mut k, c.n_kv_heads, hd, c.rope_theta, 0, false)?;
            let mut attn = self.zeros::<f32>(t * c.n_heads * hd)?;
            let mut lse = self.zeros::<f32>(c.n_heads * t)?;
            self.attention(&q, &k, &v, shape, &mut attn, &mut lse)?;
            let mut h = self.linear(&attn, &l.wo, t, dim)?;
            self.add_in_place(&mut h, &x)?;
            let mut hn = self.zeros::<f32>(t * dim)?;
            let mut rstd_ffn = self.zeros::<f32>(t)?;
            self.rms_norm(&h, &l.ffn_norm, c.norm_eps, &mut hn, &mut rstd_ffn)?;
            let gate = self.linear(&hn, &l.w_gate, t, c.ffn_dim)?;
            let up = self.linear(&hn, &l.w_up, t, c.ffn_dim)?;
            let mut act = self.zeros::<f32>(t * c.ffn_dim)?;
            self.swiglu(&gate, &up, &mut act)?;
            let mut out = self.linear(&act, &l.w_down, t, dim)?;
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
            let mut dact = self.zeros::<f32>(t * c.ffn_dim)?;
            self.linear_backward(
                &dx,
                &a.act,
                &l.w_down,
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
            self.linear_backward(
                &dgate,
                &a.hn,
                &l.w_gate,
                &mut g.w_gate,
                t,
                c.ffn_dim,
                &mut dhn,
                false,
            )?;
            self.linear_backward(
                &dup,
                &a.hn,
                &l.w_up,
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
            self.linear_backward(&dh, &a.attn, &l.wo, &mut g.wo, t, dim, &mut dattn, false)?;
            let mut dq = self.zeros::<f32>(t * c.n_heads * hd)?;
            let mut dk = self.zeros::<f32>(t * kv)?;
            let mut dv = self.zeros::<f32>(t * kv)?;
            self.attention_backward(
                &dattn, &a.q, &a.k, &a.v, &a.attn, &a.lse, shape, &mut dq, &mut dk, &mut dv,
            )?;
            self.rope(&mut dq, c.n_heads, hd, c.rope_theta, 0, true)?;
            self.rope(&mut dk, c.n_kv_heads, hd, c.rope_theta, 0, true)?;
            let mut dxn = self.zeros::<f32>(t * dim)?;
            self.linear_backward(
                &dq,
                &a.xn,
                &l.wq,
                &mut g.wq,
                t,
                c.n_heads * hd,
                &mut dxn,
                false,
            )?;
            self.linear_backward(&dk, &a.xn, &l.wk, &mut g.wk, t, kv, &mut dxn, true)?;
            self.linear_backward(&dv, &a.xn, &l.wv, &mut g.wv, t, kv, &mut dxn, true)?;
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
        if !positions.iter().all(|&p| p >= 1 && p < tokens.len()) {
            return Err(GpuError::Invalid {
                op: "next_token_logprobs",
                detail: format!("positions must lie in 1..{}", tokens.len()),
            });
        }
        let c = &w.config;
        let (dim, vocab, n) = (c.dim, c.vocab_size, positions.len());
        let acts = self.model_forward(w, tokens)?;
        let hidden = self.download(&acts.hidden)?;
        let mut h = Vec::with_capacity(n * dim);
        for &p in positions {
            h.extend_from_slice(&hidden[(p - 1) * dim..p * dim]);
        }
        let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
        let h_bf = self.upload(&h.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>())?;
        let mut w_bf = self.zeros::<bf16>(vocab * dim)?;
        self.cast_f32_to_bf16(w.lm_head(), &mut w_bf)?;
        let tg = self.upload(&targets)?;
        let mut lp = self.zeros::<f32>(n)?;
        let mut en = self.zeros::<f32>(n)?;
        let mut ws = LmHeadWorkspace::new(self, vocab, 256 << 20)?;
        let shape = LmHeadShape {
            tokens: n,
            dim,
            vocab,
            temperature,
        };
        let inp = LmHeadInputs {
            hidden: &h_bf,
            weight: &w_bf,
            targets: &tg,
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
    /// `positions` (row `p − 1` scores `tokens[p]`), the host `loss` closure on the
    /// log-probs, then the backward into `grads` (LM head gradient included).
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
        if !positions.iter().all(|&p| p >= 1 && p < tokens.len()) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("positions must lie in 1..{}", tokens.len()),
            });
        }
        let c = w.config.clone();
        let (dim, vocab, n) = (c.dim, c.vocab_size, positions.len());
        let acts = self.model_forward(w, tokens)?;
        let lm_fwd = Range::new("lm_head forward");
        // Gather the scoring rows on the host: T·dim floats, small next to the model.
        let hidden = self.download(&acts.hidden)?;
        let mut h = Vec::with_capacity(n * dim);
        for &p in positions {
            h.extend_from_slice(&hidden[(p - 1) * dim..p * dim]);
        }
        let targets: Vec<u32> = positions.iter().map(|&p| tokens[p]).collect();
        let h_bf = self.upload(&h.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>())?;
        let mut w_bf = self.zeros::<bf16>(vocab * dim)?;
        self.cast_f32_to_bf16(w.lm_head(), &mut w_bf)?;
        let tg = self.upload(&targets)?;
        let mut lp = self.zeros::<f32>(n)?;
        let mut en = self.zeros::<f32>(n)?;
        // 256 MiB of logits workspace: SmolLM2's vocabulary in chunks of ~900 rows.
        let mut ws = LmHeadWorkspace::new(self, vocab, 256 << 20)?;
        let shape = LmHeadShape {
            tokens: n,
            dim,
            vocab,
            temperature,
        };
        {
            let inp = LmHeadInputs {
                hidden: &h_bf,
                weight: &w_bf,
                targets: &tg,
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
        }
        let logprob = self.download(&lp)?;
        let entropy = self.download(&en)?;
        drop(lm_fwd);
        let dlogprob = {
            let _r = Range::new("policy loss (host)");
            loss(&logprob)
        };
        let lm_bwd = Range::new("lm_head backward");
        check_len(OP, "loss gradient (one per position)", n, dlogprob.len())?;
        let dlp = self.upload(&dlogprob)?;
        let mut dh = self.zeros::<f32>(n * dim)?;
        {
            let inp = LmHeadInputs {
                hidden: &h_bf,
                weight: &w_bf,
                targets: &tg,
                dlogprob: Some(&dlp),
                dentropy: None,
            };
            let mut out = LmHeadOutputs {
                logprob: &mut lp,
                entropy: &mut en,
                dhidden: Some(&mut dh),
                dweight: Some(grads.lm_head_mut()),
            };
            self.lm_head_loss(&shape, &inp, &mut out, &mut ws)?;
        }
        let dh_host = self.download(&dh)?;
        let mut dhidden = vec![0.0f32; tokens.len() * dim];
        for (&p, d) in positions.iter().zip(dh_host.chunks_exact(dim)) {
            dhidden[(p - 1) * dim..p * dim].copy_from_slice(d);
        }
        let dhidden = self.upload(&dhidden)?;
        drop(lm_bwd);
        self.model_backward(w, &acts, &dhidden, grads)?;
        Ok(GpuSequenceOutput { logprob, entropy })
    }
}
