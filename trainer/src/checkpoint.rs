//! Training checkpoints as safetensors files that resume exactly.
//!
//! A checkpoint is a directory:
//! - `model.safetensors`: every parameter as F32, named as in [`Weights::for_each`]
//!   (HF llama names), with `__metadata__` `{"format": "ssr-checkpoint-v1", "config":
//!   <Config JSON>, "step": N, "rope_layout": "interleaved"}`. Q and K rows are in the
//!   GGUF interleaved-pair RoPE layout (see `crate::weights`), not HF's half-split one.
//! - `optimizer.safetensors` (optional): the AdamW moments as `m.<name>` and
//!   `v.<name>`, with `__metadata__` `{"format", "step", "adamw": <AdamWConfig JSON>}`
//!   plus the caller's own entries (the training session stores its RNG state and
//!   settings there).
//!
//! Values are stored bit-for-bit (F32 little-endian), so weights, moments and step
//! reload to exactly the same state. Each file is written to a temporary name and
//! renamed into place; both files carry the step, and loading refuses a pair whose
//! steps differ (a save interrupted between the two renames).
//!
//! A directory of checkpoints (`ssr train --keep-checkpoints K`) holds one checkpoint
//! per saved step as `step-NNNNNN/` ([`step_dir_name`]); [`retain_last`] keeps the
//! newest K, [`latest_step`] finds the one to resume.
//!
//! Does not own: GGUF or HF safetensors import (`crate::gguf`/the inference loader),
//! the training loop that decides when to save.

use crate::config::Config;
use crate::optim::{AdamW, AdamWConfig};
use crate::weights::Weights;
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("checkpoints store f32 little-endian by reinterpreting memory");

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const FORMAT: &str = "ssr-checkpoint-v1";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {source}")]
    Format {
        path: PathBuf,
        source: SafeTensorError,
    },
    #[error("{path}: metadata {key:?}: {reason}")]
    Metadata {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{path}: tensor {name:?} is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error(
        "{path}: tensor {name:?} has dtype {dtype:?} and shape {shape:?}, expected F32 {expected:?}"
    )]
    Shape {
        path: PathBuf,
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "{dir}: model is at step {model_step} but optimizer state at step {optimizer_step} (interrupted save?)"
    )]
    StepMismatch {
        dir: PathBuf,
        model_step: u64,
        optimizer_step: u64,
    },
}

/// What a checkpoint directory holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub weights: Weights,
    /// `None` for a weights-only checkpoint (e.g. an exported model).
    pub optimizer: Option<AdamW>,
    /// Optimizer steps taken (0 for a fresh export).
    pub step: u64,
    /// The caller's metadata entries saved with the optimizer state.
    pub extra: BTreeMap<String, String>,
}

/// The shape of a named parameter tensor of a model with this config.
pub fn tensor_shape(config: &Config, name: &str) -> Vec<usize> {
    let c = config;
    let q = c.n_heads * c.head_dim();
    let suffix = name.rsplit_once("layers.").map_or(name, |(_, rest)| {
        rest.split_once('.').map_or(rest, |(_, s)| s)
    });
    match suffix {
        "model.embed_tokens.weight" | "lm_head.weight" => vec![c.vocab_size, c.dim],
        "self_attn.q_proj.weight" => vec![q, c.dim],
        "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![c.kv_dim(), c.dim],
        "self_attn.o_proj.weight" => vec![c.dim, q],
        "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![c.ffn_dim, c.dim],
        "mlp.down_proj.weight" => vec![c.dim, c.ffn_dim],
        _ => vec![c.dim], // the norm gains
    }
}

/// A borrowed f32 tensor as a safetensors view (no copy).
struct F32View<'a> {
    data: &'a [f32],
    shape: Vec<usize>,
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(bytemuck::cast_slice(self.data))
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Writes `weights` (and the optimizer state, when given) into `dir`, creating it.
///
/// `step` is the number of optimizer steps taken; `extra` goes into the optimizer
/// file's metadata (ignored without an optimizer).
pub fn save(
    dir: &Path,
    weights: &Weights,
    optimizer: Option<&AdamW>,
    step: u64,
    extra: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let config = &weights.config;
    let config_json = serde_json::to_string(config).expect("Config serializes");
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), config_json),
        ("step".to_string(), step.to_string()),
        ("rope_layout".to_string(), "interleaved".to_string()),
    ]);
    if let Some(opt) = optimizer {
        let mut opt_meta: HashMap<String, String> = extra.clone().into_iter().collect();
        opt_meta.insert("format".into(), FORMAT.into());
        opt_meta.insert("step".into(), step.to_string());
        opt_meta.insert(
            "adamw".into(),
            serde_json::to_string(&opt.config).expect("AdamWConfig serializes"),
        );
        opt_meta.insert("adamw_step".into(), opt.step.to_string());
        let mut views = Vec::new();
        for (prefix, state) in [("m", &opt.m), ("v", &opt.v)] {
            for (name, data) in state.tensors() {
                let shape = tensor_shape(config, &name);
                views.push((format!("{prefix}.{name}"), F32View { data, shape }));
            }
        }
        write_atomic(&dir.join(OPTIMIZER_FILE), views, opt_meta)?;
    } else {
        meta.insert("weights_only".into(), "true".into());
    }
    let views: Vec<_> = weights
        .tensors()
        .into_iter()
        .map(|(name, data)| {
            let shape = tensor_shape(config, &name);
            (name, F32View { data, shape })
        })
        .collect();
    write_atomic(&dir.join(MODEL_FILE), views, meta)
}

fn write_atomic(
    path: &Path,
    views: Vec<(String, F32View<'_>)>,
    meta: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|source| match source {
        SafeTensorError::IoError(source) => CheckpointError::Io {
            path: tmp.clone(),
            source,
        },
        source => CheckpointError::Format {
            path: tmp.clone(),
            source,
        },
    })?;
    std::fs::rename(&tmp, path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `dir` looks like a checkpoint directory (holds `model.safetensors`).
pub fn is_checkpoint(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file()
}

/// The subdirectory name of step `step`'s checkpoint in a directory of checkpoints
/// (`step-000012`: zero-padded so names sort by step).
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// The checkpoints of a directory of checkpoints: its `step-N` subdirectories that hold
/// a checkpoint, oldest first. Other entries are not checkpoints of the series and are
/// ignored.
pub fn list_steps(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(step) = step.filter(|_| is_checkpoint(&path)) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint of a directory of checkpoints, if it holds any.
pub fn latest_step(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    Ok(list_steps(dir)?.pop().map(|(_, p)| p))
}

/// Keeps the `keep` newest checkpoints of a directory of checkpoints and deletes the
/// older ones (a checkpoint of SmolLM2-135M with its optimizer state is about 1.6 GB,
/// so a run that saves often needs a bound). Returns the directories removed.
pub fn retain_last(
    dir: &Path,
    keep: std::num::NonZeroUsize,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let steps = list_steps(dir)?;
    let excess = steps.len().saturating_sub(keep.get());
    let mut removed = Vec::with_capacity(excess);
    for (_, path) in steps.into_iter().take(excess) {
        std::fs::remove_dir_all(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        removed.push(path);
    }
    Ok(removed)
}

/// Reads a checkpoint directory written by [`save`].
pub fn load(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let model_path = dir.join(MODEL_FILE);
    let bytes = read(&model_path)?;
    let st = parse(&model_path, &bytes)?;
    let meta = metadata(&model_path, &bytes)?;
    let config: Config = serde_json::from_str(get(&model_path, &meta, "config")?).map_err(|e| {
        CheckpointError::Metadata {
            path: model_path.clone(),
            key: "config",
            reason: e.to_string(),
        }
    })?;
    let step = parse_u64(&model_path, &meta, "step")?;
    let mut weights = Weights::zeros(&config);
    fill(&model_path, &st, &config, "", &mut weights)?;

    let opt_path = dir.join(OPTIMIZER_FILE);
    if !opt_path.is_file() {
        return Ok(Checkpoint {
            weights,
            optimizer: None,
            step,
            extra: BTreeMap::new(),
        });
    }
    let bytes = read(&opt_path)?;
    let st = parse(&opt_path, &bytes)?;
    let meta = metadata(&opt_path, &bytes)?;
    let opt_step = parse_u64(&opt_path, &meta, "step")?;
    if opt_step != step {
        return Err(CheckpointError::StepMismatch {
            dir: dir.to_path_buf(),
            model_step: step,
            optimizer_step: opt_step,
        });
    }
    let adamw: AdamWConfig =
        serde_json::from_str(get(&opt_path, &meta, "adamw")?).map_err(|e| {
            CheckpointError::Metadata {
                path: opt_path.clone(),
                key: "adamw",
                reason: e.to_string(),
            }
        })?;
    let mut opt = AdamW::new(adamw, &config);
    opt.step = parse_u64(&opt_path, &meta, "adamw_step")?;
    fill(&opt_path, &st, &config, "m.", &mut opt.m)?;
    fill(&opt_path, &st, &config, "v.", &mut opt.v)?;
    let reserved = ["format", "step", "adamw", "adamw_step"];
    let extra = meta
        .into_iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .collect();
    Ok(Checkpoint {
        weights,
        optimizer: Some(opt),
        step,
        extra,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, CheckpointError> {
    SafeTensors::deserialize(bytes).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
    })
}

fn metadata(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, CheckpointError> {
    let (_, m) = SafeTensors::read_metadata(bytes).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let meta: BTreeMap<String, String> = m
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    match meta.get("format") {
        Some(f) if f == FORMAT => Ok(meta),
        other => Err(CheckpointError::Metadata {
            path: path.to_path_buf(),
            key: "format",
            reason: format!("expected {FORMAT:?}, found {other:?}"),
        }),
    }
}

fn get<'a>(
    path: &Path,
    meta: &'a BTreeMap<String, String>,
    key: &'static str,
) -> Result<&'a str, CheckpointError> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| CheckpointError::Metadata {
            path: path.to_path_buf(),
            key,
            reason: "missing".into(),
        })
}

fn parse_u64(
    path: &Path,
    meta: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<u64, CheckpointError> {
    get(path, meta, key)?
        .parse()
        .map_err(|e: std::num::ParseIntError| CheckpointError::Metadata {
            path: path.to_path_buf(),
            key,
            reason: e.to_string(),
        })
}

/// Copies every tensor `prefix + name` of `st` into the matching tensor of `into`.
fn fill(
    path: &Path,
    st: &SafeTensors<'_>,
    config: &Config,
    prefix: &str,
    into: &mut Weights,
) -> Result<(), CheckpointError> {
    for (name, dst) in into.tensors_mut() {
        let key = format!("{prefix}{name}");
        let view = st
            .tensor(&key)
            .map_err(|_| CheckpointError::MissingTensor {
                path: path.to_path_buf(),
                name: key.clone(),
            })?;
        let expected = tensor_shape(config, &name);
        if view.dtype() != Dtype::F32 || view.shape() != expected.as_slice() {
            return Err(CheckpointError::Shape {
                path: path.to_path_buf(),
                name: key,
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                expected,
            });
        }
        // The file's data need not be 4-byte aligned in memory: decode element-wise.
        for (d, b) in dst.iter_mut().zip(view.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(())
}
