//! The tiny SmolLM2-vocabulary model: the one fixture of the end-to-end runs that must
//! fit a slow device (the emulated CUDA device, `gpu-emu/`) yet go through the real
//! command line: `ssr train`, `ssr selfplay --train`, `ssr model generate`.
//!
//! Owns: its shape ([`config`]: 2 layers, width 64, SmolLM2's 49,152-token vocabulary
//! and context), its deterministic weights ([`weights`]: a seeded generator, no file
//! needed), and the GGUF file ([`write`]) that carries those weights in F32 beside the
//! embedded model's own tokenizer and chat template, so every loader (`Engine::load`,
//! `TrainSession` from GGUF, the self-play embedded policy) takes it as it takes the
//! real model.
//!
//! Why a real vocabulary with a tiny body: the tokenizer, the chat template and the
//! LM head over 49,152 rows are the parts a toy vocabulary would hide (the fused
//! log-prob kernel's row length, the decoder's logits GEMM), while two layers of width
//! 64 keep a training step and a 32-token generation within seconds on the emulator.
//!
//! Does not own: the embedded model's location (callers pass the GGUF whose tokenizer is
//! copied) or any comparison (`crate::testing`'s `assert_close`).

use crate::Config;
use crate::gguf::model::{config_metadata, weights_to_tensors};
use crate::gguf::quant::TensorType;
use crate::gguf::{GgufError, GgufFile, Value, write_gguf};
use crate::weights::Weights;
use std::path::{Path, PathBuf};

/// The seed the end-to-end tests use (any seed gives a valid model).
pub const SEED: u64 = 12;

/// The vocabulary size the copied tokenizer must have (SmolLM2's).
pub const VOCAB: usize = 49_152;

/// Why the tiny model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TinyModelError {
    #[error("reading the tokenizer's model {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error("{path} has {found} tokens; the tiny model needs SmolLM2's {VOCAB}")]
    Vocabulary { path: PathBuf, found: usize },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The tiny model's shape: SmolLM2's vocabulary, context, RoPE base and tied
/// embeddings; 2 layers of width 64 (4 query heads of 16, 2 key-value heads: grouped-
/// query attention as in SmolLM2), SwiGLU width 128.
pub fn config() -> Config {
    Config {
        vocab_size: VOCAB,
        dim: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_dim: 128,
        rope_theta: 100_000.0,
        norm_eps: 1e-5,
        max_seq_len: 8192,
        tied_embeddings: true,
    }
}

/// Deterministic weights from `seed`: norm gains 1, every matrix uniform with standard
/// deviation 1/√fan-in (so activations keep their scale through the layers), the tied
/// embedding with standard deviation 0.3 (logits of spread about 2.4 at width 64: greedy
/// choices with clear margins, not a near-uniform distribution).
pub fn weights(seed: u64) -> Weights {
    let c = config();
    let mut w = Weights::zeros(&c);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    w.for_each_mut(|name, t| {
        if name.contains("norm") {
            t.fill(1.0);
            return;
        }
        let std = if name.contains("embed") {
            0.3
        } else if name.contains("down_proj") {
            1.0 / (c.ffn_dim as f32).sqrt()
        } else {
            1.0 / (c.dim as f32).sqrt()
        };
        // Uniform on [-a, a] has standard deviation a/√3.
        let a = std * 3f32.sqrt();
        for x in t.iter_mut() {
            *x = a * (2.0 * unit(&mut state) - 1.0);
        }
    });
    w
}

/// SplitMix64 mapped to [0, 1): a seeded stream with no dependency, stable across
/// versions of any random-number crate.
fn unit(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Writes the tiny model with `seed`'s weights to `out` as a GGUF file: the shape's
/// metadata, F32 tensors (exact: no quantization error between the loaders), and every
/// `tokenizer.*` key of `tokenizer_source` (SmolLM2's GGUF: vocabulary, merges, special
/// ids, chat template). Gives the weights written.
pub fn write(tokenizer_source: &Path, out: &Path, seed: u64) -> Result<Weights, TinyModelError> {
    let source = GgufFile::open(tokenizer_source).map_err(|source| TinyModelError::Source {
        path: tokenizer_source.to_path_buf(),
        source,
    })?;
    let found = source
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map_or(0, <[Value]>::len);
    if found != VOCAB {
        return Err(TinyModelError::Vocabulary {
            path: tokenizer_source.to_path_buf(),
            found,
        });
    }
    let w = weights(seed);
    let mut metadata = config_metadata(&w.config);
    metadata.push((
        "general.name".into(),
        Value::String(format!("ssr tiny SmolLM2-vocabulary model (seed {seed})")),
    ));
    metadata.extend(
        source
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .cloned(),
    );
    // F32 rows are whole blocks of any type, so this always encodes.
    let tensors =
        weights_to_tensors(&w, TensorType::F32).expect("F32 tensors encode every row length");
    std::fs::write(out, write_gguf(&metadata, &tensors)).map_err(|source| TinyModelError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_deterministic_and_seed_dependent() {
        let (a, b, c) = (weights(1), weights(1), weights(2));
        assert_eq!(a.tok_embeddings, b.tok_embeddings);
        assert_ne!(a.tok_embeddings, c.tok_embeddings);
        let e = &a.tok_embeddings;
        let var = e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32;
        assert!(
            (var.sqrt() - 0.3).abs() < 0.01,
            "embedding std {}",
            var.sqrt()
        );
        assert!(a.layers[0].attn_norm.iter().all(|&g| g == 1.0));
    }

    #[test]
    fn a_source_without_smollm2_vocabulary_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.gguf");
        std::fs::write(&src, write_gguf(&[], &[])).unwrap();
        let e = write(&src, &dir.path().join("out.gguf"), 1).unwrap_err();
        assert!(
            matches!(e, TinyModelError::Vocabulary { found: 0, .. }),
            "{e}"
        );
        let e = write(&dir.path().join("absent.gguf"), &dir.path().join("o"), 1).unwrap_err();
        assert!(matches!(e, TinyModelError::Source { .. }), "{e}");
    }
}
