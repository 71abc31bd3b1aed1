//! The model's parameters as plain f32 row-major matrices: the CPU reference's
//! storage, the master copy the optimizer updates, and what checkpoints hold.
//!
//! Matrix convention: a linear layer `y = x W^T` stores `W` as `[out, in]` row-major,
//! like PyTorch and GGUF (GGUF lists dimensions innermost first, so `[in, out]` there).
//! Q and K projections use the *interleaved-pair* RoPE layout of GGUF (llama.cpp
//! permutes HF checkpoints on conversion); safetensors loading applies the same
//! permutation so every path computes the same function.

use crate::config::Config;
use serde::{Deserialize, Serialize};

/// One decoder layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerWeights {
    /// `[dim]`
    pub attn_norm: Vec<f32>,
    /// `[n_heads*head_dim, dim]`
    pub wq: Vec<f32>,
    /// `[kv_dim, dim]`
    pub wk: Vec<f32>,
    /// `[kv_dim, dim]`
    pub wv: Vec<f32>,
    /// `[dim, n_heads*head_dim]`
    pub wo: Vec<f32>,
    /// `[dim]`
    pub ffn_norm: Vec<f32>,
    /// `[ffn_dim, dim]` (gate)
    pub w_gate: Vec<f32>,
    /// `[ffn_dim, dim]` (up)
    pub w_up: Vec<f32>,
    /// `[dim, ffn_dim]` (down)
    pub w_down: Vec<f32>,
}

/// All parameters of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub config: Config,
    /// `[vocab_size, dim]`
    pub tok_embeddings: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    /// `[dim]`
    pub final_norm: Vec<f32>,
    /// `[vocab_size, dim]`; `None` when tied to `tok_embeddings`.
    pub lm_head: Option<Vec<f32>>,
}

impl Weights {
    /// The LM-head matrix (`[vocab_size, dim]`), tied or not.
    pub fn lm_head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.tok_embeddings)
    }

    /// Visits every parameter tensor with a stable name (the checkpoint key) in a
    /// fixed order. Names follow the HF llama convention
    /// (`model.layers.{i}.self_attn.q_proj.weight`, ...).
    pub fn for_each(&self, mut f: impl FnMut(&str, &[f32])) {
        f("model.embed_tokens.weight", &self.tok_embeddings);
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t) in layer_tensors(l) {
                f(&format!("model.layers.{i}.{name}"), t);
            }
        }
        f("model.norm.weight", &self.final_norm);
        if let Some(h) = &self.lm_head {
            f("lm_head.weight", h);
        }
    }

    /// Mutable twin of [`Weights::for_each`], same names and order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&str, &mut Vec<f32>)) {
        f("model.embed_tokens.weight", &mut self.tok_embeddings);
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (name, t) in layer_tensors_mut(l) {
                f(&format!("model.layers.{i}.{name}"), t);
            }
        }
        f("model.norm.weight", &mut self.final_norm);
        if let Some(h) = &mut self.lm_head {
            f("lm_head.weight", h);
        }
    }

    /// Every parameter tensor with its name, in [`Weights::for_each`] order (for code
    /// that walks several `Weights` in lock step: optimizer moments, gradients).
    pub fn tensors(&self) -> Vec<(String, &[f32])> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            &self.tok_embeddings[..],
        )];
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t) in layer_tensors(l) {
                out.push((format!("model.layers.{i}.{name}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &self.final_norm));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// Mutable twin of [`Weights::tensors`], same names and order.
    pub fn tensors_mut(&mut self) -> Vec<(String, &mut Vec<f32>)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            &mut self.tok_embeddings,
        )];
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (name, t) in layer_tensors_mut(l) {
                out.push((format!("model.layers.{i}.{name}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &mut self.final_norm));
        if let Some(h) = &mut self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        let mut n = 0;
        self.for_each(|_, t| n += t.len());
        n
    }

    /// Zero-filled weights of the given shape (gradient buffers, optimizer moments).
    pub fn zeros(config: &Config) -> Self {
        let c = config;
        let hd = c.head_dim();
        let layer = || LayerWeights {
            attn_norm: vec![0.0; c.dim],
            wq: vec![0.0; c.n_heads * hd * c.dim],
            wk: vec![0.0; c.kv_dim() * c.dim],
            wv: vec![0.0; c.kv_dim() * c.dim],
            wo: vec![0.0; c.dim * c.n_heads * hd],
            ffn_norm: vec![0.0; c.dim],
            w_gate: vec![0.0; c.ffn_dim * c.dim],
            w_up: vec![0.0; c.ffn_dim * c.dim],
            w_down: vec![0.0; c.dim * c.ffn_dim],
        };
        Weights {
            config: c.clone(),
            tok_embeddings: vec![0.0; c.vocab_size * c.dim],
            layers: (0..c.n_layers).map(|_| layer()).collect(),
            final_norm: vec![0.0; c.dim],
            lm_head: if c.tied_embeddings {
                None
            } else {
                Some(vec![0.0; c.vocab_size * c.dim])
            },
        }
    }
}

fn layer_tensors(l: &LayerWeights) -> [(&'static str, &[f32]); 9] {
    [
        ("input_layernorm.weight", &l.attn_norm),
        ("self_attn.q_proj.weight", &l.wq),
        ("self_attn.k_proj.weight", &l.wk),
        ("self_attn.v_proj.weight", &l.wv),
        ("self_attn.o_proj.weight", &l.wo),
        ("post_attention_layernorm.weight", &l.ffn_norm),
        ("mlp.gate_proj.weight", &l.w_gate),
        ("mlp.up_proj.weight", &l.w_up),
        ("mlp.down_proj.weight", &l.w_down),
    ]
}

fn layer_tensors_mut(l: &mut LayerWeights) -> [(&'static str, &mut Vec<f32>); 9] {
    [
        ("input_layernorm.weight", &mut l.attn_norm),
        ("self_attn.q_proj.weight", &mut l.wq),
        ("self_attn.k_proj.weight", &mut l.wk),
        ("self_attn.v_proj.weight", &mut l.wv),
        ("self_attn.o_proj.weight", &mut l.wo),
        ("post_attention_layernorm.weight", &mut l.ffn_norm),
        ("mlp.gate_proj.weight", &mut l.w_gate),
        ("mlp.up_proj.weight", &mut l.w_up),
        ("mlp.down_proj.weight", &mut l.w_down),
    ]
}
