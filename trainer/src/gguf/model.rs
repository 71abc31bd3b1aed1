//! A llama-family GGUF file as a [`Config`] and f32 [`Weights`], and back.
//!
//! Owns the mapping between llama.cpp tensor names (`blk.{i}.attn_q.weight`, ...) and
//! the [`Weights`] fields, and the shape checks. GGUF lists dimensions innermost
//! first, so a `[out, in]` row-major matrix appears as `[in, out]`. Q and K are kept
//! exactly as stored: GGUF files already hold them in the interleaved-pair RoPE
//! layout the forward uses. Does not own: the tokenizer metadata.

use super::quant::{self, TensorType};
use super::{GgufError, GgufFile, RawTensor, Value};
use crate::config::Config;
use crate::weights::{LayerWeights, Weights};
use std::path::Path;

/// Reads the hyper-parameters from `{arch}.*` metadata.
pub fn config_from_gguf(f: &GgufFile) -> Result<Config, GgufError> {
    let arch = f.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(GgufError::UnsupportedArchitecture(arch.to_string()));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let usize_key = |k: &str| f.get_u64(&key(k)).map(|v| v as usize);
    let dim = usize_key("embedding_length")?;
    let n_heads = usize_key("attention.head_count")?;
    let n_kv_heads = match f.get(&key("attention.head_count_kv")) {
        Some(_) => usize_key("attention.head_count_kv")?,
        None => n_heads,
    };
    let vocab_size = match f.get(&key("vocab_size")) {
        Some(_) => usize_key("vocab_size")?,
        None => f.get_array("tokenizer.ggml.tokens")?.len(),
    };
    let config = Config {
        vocab_size,
        dim,
        n_layers: usize_key("block_count")?,
        n_heads,
        n_kv_heads,
        ffn_dim: usize_key("feed_forward_length")?,
        rope_theta: match f.get(&key("rope.freq_base")) {
            Some(_) => f.get_f64(&key("rope.freq_base"))? as f32,
            None => 10000.0,
        },
        norm_eps: f.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
        max_seq_len: usize_key("context_length")?,
        tied_embeddings: f.tensor("output.weight").is_none(),
    };
    check_config(&config).map_err(GgufError::BadConfig)?;
    Ok(config)
}

/// Structural consistency every loader checks (shared with safetensors loading).
pub(crate) fn check_config(c: &Config) -> Result<(), String> {
    if c.dim == 0
        || c.n_heads == 0
        || c.n_kv_heads == 0
        || c.n_layers == 0
        || c.vocab_size == 0
        || c.ffn_dim == 0
    {
        return Err(format!("zero-sized dimension in {c:?}"));
    }
    if !c.dim.is_multiple_of(c.n_heads)
        || !c.n_heads.is_multiple_of(c.n_kv_heads)
        || !(c.dim / c.n_heads).is_multiple_of(2)
    {
        return Err(format!(
            "dim {} / heads {} / kv heads {} do not give an even head size shared by whole groups",
            c.dim, c.n_heads, c.n_kv_heads
        ));
    }
    Ok(())
}

fn tensor(f: &GgufFile, name: &str, expected: &[usize]) -> Result<Vec<f32>, GgufError> {
    let t = f
        .tensor(name)
        .ok_or_else(|| GgufError::MissingTensor(name.into()))?;
    let expected: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
    if t.dims != expected {
        return Err(GgufError::ShapeMismatch {
            name: name.into(),
            expected,
            found: t.dims.clone(),
        });
    }
    Ok(f.dequantize(t))
}

/// Dequantizes every tensor into f32 [`Weights`] for `config`.
pub fn weights_from_gguf(f: &GgufFile, config: &Config) -> Result<Weights, GgufError> {
    let c = config;
    let (d, hd, kv, ff, v) = (c.dim, c.head_dim(), c.kv_dim(), c.ffn_dim, c.vocab_size);
    let q = c.n_heads * hd;
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        layers.push(LayerWeights {
            attn_norm: tensor(f, &n("attn_norm"), &[d])?,
            wq: tensor(f, &n("attn_q"), &[d, q])?,
            wk: tensor(f, &n("attn_k"), &[d, kv])?,
            wv: tensor(f, &n("attn_v"), &[d, kv])?,
            wo: tensor(f, &n("attn_output"), &[q, d])?,
            ffn_norm: tensor(f, &n("ffn_norm"), &[d])?,
            w_gate: tensor(f, &n("ffn_gate"), &[d, ff])?,
            w_up: tensor(f, &n("ffn_up"), &[d, ff])?,
            w_down: tensor(f, &n("ffn_down"), &[ff, d])?,
        });
    }
    Ok(Weights {
        config: c.clone(),
        tok_embeddings: tensor(f, "token_embd.weight", &[d, v])?,
        layers,
        final_norm: tensor(f, "output_norm.weight", &[d])?,
        lm_head: if c.tied_embeddings {
            None
        } else {
            Some(tensor(f, "output.weight", &[d, v])?)
        },
    })
}

/// Opens `path` and loads its config and f32 weights.
pub fn load_model(path: impl AsRef<Path>) -> Result<(GgufFile, Weights), GgufError> {
    let f = GgufFile::open(path)?;
    let config = config_from_gguf(&f)?;
    let w = weights_from_gguf(&f, &config)?;
    Ok((f, w))
}

/// The `llama.*` metadata describing `c` (plus `general.architecture`).
pub fn config_metadata(c: &Config) -> Vec<(String, Value)> {
    let u = |k: &str, v: usize| (format!("llama.{k}"), Value::U32(v as u32));
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        u("block_count", c.n_layers),
        u("context_length", c.max_seq_len),
        u("embedding_length", c.dim),
        u("feed_forward_length", c.ffn_dim),
        u("attention.head_count", c.n_heads),
        u("attention.head_count_kv", c.n_kv_heads),
        u("vocab_size", c.vocab_size),
        u("rope.dimension_count", c.head_dim()),
        ("llama.rope.freq_base".into(), Value::F32(c.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(c.norm_eps),
        ),
    ]
}

/// Encodes `w` as GGUF tensors: norms stay F32, matrices become `matrix_type`
/// (F32, F16, BF16 or Q8_0; every matrix row must be a whole number of blocks).
pub fn weights_to_tensors(w: &Weights, matrix_type: TensorType) -> Option<Vec<RawTensor>> {
    let c = &w.config;
    let (d, q, kv, ff, v) = (
        c.dim,
        c.n_heads * c.head_dim(),
        c.kv_dim(),
        c.ffn_dim,
        c.vocab_size,
    );
    let mut out = Vec::new();
    let mut push = |name: String, dims: [usize; 2], data: &[f32], ty: TensorType| -> Option<()> {
        let dims: Vec<u64> = if dims[1] == 1 {
            vec![dims[0] as u64]
        } else {
            dims.iter().map(|&x| x as u64).collect()
        };
        out.push(RawTensor {
            name,
            dims,
            type_id: ty.id(),
            data: quant::quantize(ty, data)?,
        });
        Some(())
    };
    push(
        "token_embd.weight".into(),
        [d, v],
        &w.tok_embeddings,
        matrix_type,
    )?;
    for (i, l) in w.layers.iter().enumerate() {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        push(n("attn_norm"), [d, 1], &l.attn_norm, TensorType::F32)?;
        push(n("attn_q"), [d, q], &l.wq, matrix_type)?;
        push(n("attn_k"), [d, kv], &l.wk, matrix_type)?;
        push(n("attn_v"), [d, kv], &l.wv, matrix_type)?;
        push(n("attn_output"), [q, d], &l.wo, matrix_type)?;
        push(n("ffn_norm"), [d, 1], &l.ffn_norm, TensorType::F32)?;
        push(n("ffn_gate"), [d, ff], &l.w_gate, matrix_type)?;
        push(n("ffn_up"), [d, ff], &l.w_up, matrix_type)?;
        push(n("ffn_down"), [ff, d], &l.w_down, matrix_type)?;
    }
    push(
        "output_norm.weight".into(),
        [d, 1],
        &w.final_norm,
        TensorType::F32,
    )?;
    if let Some(h) = &w.lm_head {
        push("output.weight".into(), [d, v], h, matrix_type)?;
    }
    Some(out)
}
