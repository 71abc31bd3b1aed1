//! Hyper-parameters of a llama-family model, read from GGUF metadata or `config.json`.

use serde::{Deserialize, Serialize};

/// Shape and constants of a llama-family decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    /// Model width (`hidden_size`, GGUF `embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key-value heads (grouped-query attention); `n_heads % n_kv_heads == 0`.
    pub n_kv_heads: usize,
    /// SwiGLU inner width (`intermediate_size`, GGUF `feed_forward_length`).
    pub ffn_dim: usize,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub max_seq_len: usize,
    /// The LM head shares the token-embedding matrix.
    pub tied_embeddings: bool,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_heads
    }

    /// SmolLM2-135M-Instruct, the embedded default policy.
    pub fn smollm2_135m() -> Self {
        Config {
            vocab_size: 49152,
            dim: 576,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            ffn_dim: 1536,
            rope_theta: 100000.0,
            norm_eps: 1e-5,
            max_seq_len: 8192,
            tied_embeddings: true,
        }
    }

    /// A tiny model for gradient checks and fast tests (same structure, small sizes).
    pub fn tiny() -> Self {
        Config {
            vocab_size: 64,
            dim: 16,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ffn_dim: 24,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            max_seq_len: 64,
            tied_embeddings: true,
        }
    }
}
