//! Hugging Face llama checkpoints: `config.json` plus `*.safetensors` (F32, F16, BF16).
//!
//! Owns: parsing the safetensors container (8-byte header length, JSON header, raw
//! little-endian data), reading `config.json` into a [`Config`], mapping HF tensor
//! names to [`Weights`], and writing a container (tests, exports).
//! Does not own: GGUF (`crate::gguf`) or the checkpoint format of training runs.
//!
//! RoPE layout: HF llama applies RoPE to pairs `(i, i + head_dim/2)` ("rotate_half"),
//! while GGUF files and this crate's forward rotate adjacent pairs `(2i, 2i+1)`.
//! llama.cpp's converter permutes the rows of `q_proj` and `k_proj` so the two compute
//! the same function; we apply the same permutation on load ([`permute_qk`]): within
//! each head, new row `2i + j` is old row `j * head_dim/2 + i` (`j` in {0, 1}). The
//! engine's logits from a safetensors checkpoint therefore equal HF's, which the test
//! `safetensors_matches_hf_rotate_half_forward` checks against a rotate_half forward.

use crate::config::Config;
use crate::weights::{LayerWeights, Weights};
use half::{bf16, f16};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a safetensors checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: header length {len} exceeds the file ({file_len} bytes)")]
    HeaderTooLarge {
        path: PathBuf,
        len: u64,
        file_len: u64,
    },
    #[error("{path}: bad header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("tensor {name:?} has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype { name: String, dtype: String },
    #[error(
        "tensor {name:?}: data range {start}..{end} does not fit {expected} bytes of its shape or the file"
    )]
    BadDataRange {
        name: String,
        start: u64,
        end: u64,
        expected: u64,
    },
    #[error("tensor {0:?} is missing")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("{0}: no *.safetensors files")]
    NoWeights(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            _ => 2,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }
}

struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    file: usize,
    start: usize,
    end: usize,
}

/// The tensors of one or more safetensors files.
pub struct SafeTensors {
    maps: Vec<Mmap>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensors")
            .field("files", &self.maps.len())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl SafeTensors {
    /// Opens and indexes `files` (shards of one checkpoint).
    // tidy: long-function: one pass over each shard's header: map, size, JSON, then every entry's
    // dtype, shape and data range, each check next to the field it reads; the index is filled as
    // the entries are read, so pieces would pass the map and the partial index between them.
    pub fn open(files: &[PathBuf]) -> Result<Self, SafetensorsError> {
        let mut st = SafeTensors {
            maps: Vec::new(),
            entries: HashMap::new(),
        };
        for path in files {
            let io = |source| SafetensorsError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            // SAFETY: read-only map; we assume the checkpoint is not modified while
            // loading (the data is copied into owned f32 weights before returning).
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            let bad = |reason: String| SafetensorsError::BadHeader {
                path: path.clone(),
                reason,
            };
            if map.len() < 8 {
                return Err(bad(format!(
                    "file has {} bytes, fewer than the 8-byte length",
                    map.len()
                )));
            }
            let len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
            if len > map.len() as u64 - 8 {
                return Err(SafetensorsError::HeaderTooLarge {
                    path: path.clone(),
                    len,
                    file_len: map.len() as u64,
                });
            }
            let header: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&map[8..8 + len as usize])
                    .map_err(|e| bad(e.to_string()))?;
            let data_start = 8 + len as usize;
            for (name, info) in header {
                if name == "__metadata__" {
                    continue;
                }
                let dtype_name = info["dtype"]
                    .as_str()
                    .ok_or_else(|| bad(format!("{name}: no dtype")))?;
                let dtype = match dtype_name {
                    "F32" => Dtype::F32,
                    "F16" => Dtype::F16,
                    "BF16" => Dtype::BF16,
                    other => {
                        return Err(SafetensorsError::UnsupportedDtype {
                            name,
                            dtype: other.into(),
                        });
                    }
                };
                let nums = |key: &str| -> Result<Vec<usize>, SafetensorsError> {
                    info[key]
                        .as_array()
                        .ok_or_else(|| bad(format!("{name}: no {key}")))?
                        .iter()
                        .map(|v| {
                            v.as_u64()
                                .map(|x| x as usize)
                                .ok_or_else(|| bad(format!("{name}: bad {key}")))
                        })
                        .collect()
                };
                let shape = nums("shape")?;
                let offs = nums("data_offsets")?;
                if offs.len() != 2 {
                    return Err(bad(format!("{name}: data_offsets needs two numbers")));
                }
                let expected = shape
                    .iter()
                    .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
                    .unwrap_or(usize::MAX);
                let (start, end) = (
                    data_start.saturating_add(offs[0]),
                    data_start.saturating_add(offs[1]),
                );
                if end < start || end - start != expected || end > map.len() {
                    return Err(SafetensorsError::BadDataRange {
                        name,
                        start: offs[0] as u64,
                        end: offs[1] as u64,
                        expected: expected as u64,
                    });
                }
                st.entries.insert(
                    name,
                    Entry {
                        dtype,
                        shape,
                        file: st.maps.len(),
                        start,
                        end,
                    },
                );
            }
            st.maps.push(map);
        }
        Ok(st)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A tensor as f32, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, SafetensorsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| SafetensorsError::MissingTensor(name.into()))?;
        if e.shape != shape {
            return Err(SafetensorsError::ShapeMismatch {
                name: name.into(),
                expected: shape.to_vec(),
                found: e.shape.clone(),
            });
        }
        let b = &self.maps[e.file][e.start..e.end];
        Ok(match e.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        })
    }
}

/// Reads HF `config.json` (llama family).
pub fn config_from_json(text: &str) -> Result<Config, SafetensorsError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| SafetensorsError::Config(e.to_string()))?;
    if let Some(mt) = v["model_type"].as_str()
        && !matches!(mt, "llama" | "mistral")
    {
        return Err(SafetensorsError::Config(format!(
            "model_type {mt:?} is not llama-family"
        )));
    }
    let int = |k: &str| {
        v[k].as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| SafetensorsError::Config(format!("{k} missing or not an integer")))
    };
    let n_heads = int("num_attention_heads")?;
    let dim = int("hidden_size")?;
    if let Some(hd) = v["head_dim"].as_u64()
        && hd as usize * n_heads != dim
    {
        return Err(SafetensorsError::Config(format!(
            "head_dim {hd} x {n_heads} heads != hidden_size {dim}"
        )));
    }
    let c = Config {
        vocab_size: int("vocab_size")?,
        dim,
        n_layers: int("num_hidden_layers")?,
        n_heads,
        n_kv_heads: v["num_key_value_heads"]
            .as_u64()
            .map_or(n_heads, |x| x as usize),
        ffn_dim: int("intermediate_size")?,
        rope_theta: v["rope_theta"].as_f64().unwrap_or(10000.0) as f32,
        norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
        max_seq_len: v["max_position_embeddings"]
            .as_u64()
            .map_or(2048, |x| x as usize),
        tied_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
    };
    crate::gguf::model::check_config(&c).map_err(SafetensorsError::Config)?;
    Ok(c)
}

/// Reorders the rows of a `[n_heads * head_dim, in]` Q or K matrix from HF's
/// rotate_half layout to interleaved pairs (see the module doc). `inverse` undoes it.
pub fn permute_qk(w: &[f32], n_heads: usize, cols: usize, inverse: bool) -> Vec<f32> {
    let hd = w.len() / cols / n_heads;
    let half = hd / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let interleaved = h * hd + 2 * i + j;
                let rotate_half = h * hd + j * half + i;
                let (dst, src) = if inverse {
                    (rotate_half, interleaved)
                } else {
                    (interleaved, rotate_half)
                };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Loads a checkpoint directory (`config.json` and every `*.safetensors` in it).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Weights, SafetensorsError> {
    let dir = dir.as_ref();
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| SafetensorsError::Io {
        path: cfg_path,
        source,
    })?;
    let config = config_from_json(&text)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| SafetensorsError::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(SafetensorsError::NoWeights(dir.into()));
    }
    weights_from_safetensors(&SafeTensors::open(&files)?, &config)
}

/// Builds [`Weights`] from HF-named tensors, permuting Q and K.
pub fn weights_from_safetensors(st: &SafeTensors, c: &Config) -> Result<Weights, SafetensorsError> {
    let (d, hd, kv, ff, v) = (c.dim, c.head_dim(), c.kv_dim(), c.ffn_dim, c.vocab_size);
    let q = c.n_heads * hd;
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = |s: &str| format!("model.layers.{i}.{s}.weight");
        layers.push(LayerWeights {
            attn_norm: st.get(&n("input_layernorm"), &[d])?,
            wq: permute_qk(
                &st.get(&n("self_attn.q_proj"), &[q, d])?,
                c.n_heads,
                d,
                false,
            ),
            wk: permute_qk(
                &st.get(&n("self_attn.k_proj"), &[kv, d])?,
                c.n_kv_heads,
                d,
                false,
            ),
            wv: st.get(&n("self_attn.v_proj"), &[kv, d])?,
            wo: st.get(&n("self_attn.o_proj"), &[d, q])?,
            ffn_norm: st.get(&n("post_attention_layernorm"), &[d])?,
            w_gate: st.get(&n("mlp.gate_proj"), &[ff, d])?,
            w_up: st.get(&n("mlp.up_proj"), &[ff, d])?,
            w_down: st.get(&n("mlp.down_proj"), &[d, ff])?,
        });
    }
    // Some tied checkpoints still carry lm_head.weight; ignore it when tied.
    let lm_head = if c.tied_embeddings {
        None
    } else {
        Some(st.get("lm_head.weight", &[v, d])?)
    };
    Ok(Weights {
        config: c.clone(),
        tok_embeddings: st.get("model.embed_tokens.weight", &[v, d])?,
        layers,
        final_norm: st.get("model.norm.weight", &[d])?,
        lm_head,
    })
}

/// Serializes tensors `(name, shape, f32 data)` as a safetensors file in `dtype`.
pub fn write_safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for &x in values {
            match dtype {
                Dtype::F32 => data.extend_from_slice(&x.to_le_bytes()),
                Dtype::F16 => data.extend_from_slice(&f16::from_f32(x).to_le_bytes()),
                Dtype::BF16 => data.extend_from_slice(&bf16::from_f32(x).to_le_bytes()),
            }
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).expect("JSON of plain values");
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// The HF tensors of `w` (Q and K permuted back to rotate_half), for exports and tests.
pub fn weights_to_hf_tensors(w: &Weights) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let c = &w.config;
    let mut out = Vec::new();
    w.for_each(|name, t| {
        let shape = hf_shape(c, name);
        let data = if name.ends_with("q_proj.weight") {
            permute_qk(t, c.n_heads, c.dim, true)
        } else if name.ends_with("k_proj.weight") {
            permute_qk(t, c.n_kv_heads, c.dim, true)
        } else {
            t.to_vec()
        };
        out.push((name.to_string(), shape, data));
    });
    out
}

fn hf_shape(c: &Config, name: &str) -> Vec<usize> {
    let (d, q, kv, ff) = (c.dim, c.n_heads * c.head_dim(), c.kv_dim(), c.ffn_dim);
    let last = name.rsplit('.').nth(1).unwrap_or("");
    match last {
        "embed_tokens" | "lm_head" => vec![c.vocab_size, d],
        "q_proj" => vec![q, d],
        "k_proj" | "v_proj" => vec![kv, d],
        "o_proj" => vec![d, q],
        "gate_proj" | "up_proj" => vec![ff, d],
        "down_proj" => vec![d, ff],
        _ => vec![d],
    }
}
