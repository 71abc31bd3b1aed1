//! The training forward of the whole model over full sequences (no KV cache), keeping
//! what the backward needs, and the backward that turns a gradient on the final
//! hidden states into gradients for every weight.
//!
//! Per layer (pre-norm llama block):
//! ```text
//! xn  = rms_norm(x, attn_norm)
//! q,k = rope(xn Wqᵀ), rope(xn Wkᵀ);  v = xn Wvᵀ
//! h   = x + attention(q, k, v) Woᵀ
//! hn  = rms_norm(h, ffn_norm)
//! out = h + (silu(hn Wgateᵀ) ∘ hn Wupᵀ) Wdownᵀ
//! ```
//! then `hidden = rms_norm(x_L, final_norm)`. The LM head is not here: it is fused
//! with the loss in `crate::rl::lm_head_loss`, and the caller adds its weight gradient.
//!
//! Saved per layer: the input, the two normalised inputs with their `rstd`, q/k (after
//! RoPE), v, the attention log-sum-exp and output, the residual `h`, gate, up and
//! activation: about `T · (6·dim + 2·kv_dim + 3·ffn_dim)` floats (17 MB per layer for
//! SmolLM2 at T = 512).

use super::attention::{AttentionShape, attention, attention_backward};
use super::embedding::{embedding, embedding_backward};
use super::linear::{linear, linear_backward};
use super::norm::{rms_norm, rms_norm_backward};
use super::rope::{RopeTable, rope, rope_backward};
use super::swiglu::{swiglu, swiglu_backward};
use crate::weights::Weights;

/// What one layer's forward saved.
#[derive(Clone, Debug)]
struct LayerActivations {
    x: Vec<f32>,
    xn: Vec<f32>,
    rstd_attn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    lse: Vec<f32>,
    attn: Vec<f32>,
    h: Vec<f32>,
    hn: Vec<f32>,
    rstd_ffn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

/// The saved state of a training forward over one sequence.
#[derive(Clone, Debug)]
pub struct Activations {
    tokens: Vec<u32>,
    rope: RopeTable,
    layers: Vec<LayerActivations>,
    /// Input of the final norm, `[T, dim]`.
    x_final: Vec<f32>,
    rstd_final: Vec<f32>,
    /// The final normalised hidden states, `[T, dim]`: the LM head's input.
    pub hidden: Vec<f32>,
}

impl Activations {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

fn add_into(a: &mut [f32], b: &[f32]) {
    for (a, &b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

fn shape(w: &Weights, seq: usize) -> AttentionShape {
    let c = &w.config;
    AttentionShape {
        seq,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim(),
    }
}

/// Runs the model over `tokens` (positions `0..T`) and keeps the activations.
///
/// # Panics
/// If a token is outside the vocabulary (validate with
/// `Trajectory::check_vocab` first).
pub fn forward(w: &Weights, tokens: &[u32]) -> Activations {
    let c = &w.config;
    let t = tokens.len();
    let (dim, hd, kv) = (c.dim, c.head_dim(), c.kv_dim());
    let rope_table = RopeTable::new(t, hd, c.rope_theta);
    let mut x = embedding(&w.tok_embeddings, dim, tokens);
    let mut layers = Vec::with_capacity(c.n_layers);
    for l in &w.layers {
        let (xn, rstd_attn) = rms_norm(&x, &l.attn_norm, c.norm_eps);
        let mut q = linear(&xn, &l.wq, t, c.n_heads * hd);
        let mut k = linear(&xn, &l.wk, t, kv);
        let v = linear(&xn, &l.wv, t, kv);
        rope(&mut q, c.n_heads, &rope_table);
        rope(&mut k, c.n_kv_heads, &rope_table);
        let (attn, lse) = attention(&q, &k, &v, shape(w, t));
        let mut h = linear(&attn, &l.wo, t, dim);
        add_into(&mut h, &x);
        let (hn, rstd_ffn) = rms_norm(&h, &l.ffn_norm, c.norm_eps);
        let gate = linear(&hn, &l.w_gate, t, c.ffn_dim);
        let up = linear(&hn, &l.w_up, t, c.ffn_dim);
        let act = swiglu(&gate, &up);
        let mut out = linear(&act, &l.w_down, t, dim);
        add_into(&mut out, &h);
        let x_in = std::mem::replace(&mut x, out);
        layers.push(LayerActivations {
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
    let (hidden, rstd_final) = rms_norm(&x, &w.final_norm, c.norm_eps);
    Activations {
        tokens: tokens.to_vec(),
        rope: rope_table,
        layers,
        x_final: x,
        rstd_final,
        hidden,
    }
}

/// Backpropagates `dhidden` (gradient wrt [`Activations::hidden`], `[T, dim]`) through
/// the model, adding every weight's gradient into `grads` (same shapes as `w`). The
/// LM head's own weight gradient is the caller's (it comes from the fused loss).
pub fn backward(w: &Weights, acts: &Activations, dhidden: &[f32], grads: &mut Weights) {
    let c = &w.config;
    let t = acts.len();
    let (dim, hd, kv) = (c.dim, c.head_dim(), c.kv_dim());
    assert_eq!(dhidden.len(), t * dim, "dhidden must be [T, dim]");
    let mut dx = rms_norm_backward(
        dhidden,
        &acts.x_final,
        &w.final_norm,
        &acts.rstd_final,
        &mut grads.final_norm,
    );
    for ((l, g), a) in w
        .layers
        .iter()
        .zip(grads.layers.iter_mut())
        .zip(&acts.layers)
        .rev()
    {
        // out = h + down(act): dx flows to h directly and through the FFN.
        let dact = linear_backward(&dx, &a.act, &l.w_down, &mut g.w_down, t, dim);
        let (dgate, dup) = swiglu_backward(&dact, &a.gate, &a.up);
        let mut dhn = linear_backward(&dgate, &a.hn, &l.w_gate, &mut g.w_gate, t, c.ffn_dim);
        add_into(
            &mut dhn,
            &linear_backward(&dup, &a.hn, &l.w_up, &mut g.w_up, t, c.ffn_dim),
        );
        let mut dh = rms_norm_backward(&dhn, &a.h, &l.ffn_norm, &a.rstd_ffn, &mut g.ffn_norm);
        add_into(&mut dh, &dx);
        // h = x + wo(attn)
        let dattn = linear_backward(&dh, &a.attn, &l.wo, &mut g.wo, t, dim);
        let (mut dq, mut dk, dv) =
            attention_backward(&dattn, &a.q, &a.k, &a.v, &a.lse, shape(w, t));
        rope_backward(&mut dq, c.n_heads, &acts.rope);
        rope_backward(&mut dk, c.n_kv_heads, &acts.rope);
        let mut dxn = linear_backward(&dq, &a.xn, &l.wq, &mut g.wq, t, c.n_heads * hd);
        add_into(
            &mut dxn,
            &linear_backward(&dk, &a.xn, &l.wk, &mut g.wk, t, kv),
        );
        add_into(
            &mut dxn,
            &linear_backward(&dv, &a.xn, &l.wv, &mut g.wv, t, kv),
        );
        let mut dx_in = rms_norm_backward(&dxn, &a.x, &l.attn_norm, &a.rstd_attn, &mut g.attn_norm);
        add_into(&mut dx_in, &dh);
        dx = dx_in;
    }
    embedding_backward(&mut grads.tok_embeddings, dim, &acts.tokens, &dx);
}
