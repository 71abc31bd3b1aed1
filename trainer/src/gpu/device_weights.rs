//! The model's weights (or gradients) on the device: [`DeviceWeights`], the mirror of
//! the host `Weights` (same tensor names, order and shapes), with upload, download,
//! zeroing and per-tensor access for the optimizer and the all-reduce.
//!
//! Does not own: what is computed with them (`model.rs`, `generate.rs`, `optim.rs`).

use cudarc::driver::CudaSlice;

use super::context::Gpu;
use super::error::GpuError;
use crate::config::Config;
use crate::weights::{LayerWeights, Weights};

/// One layer's weights on the device (same names and shapes as `LayerWeights`).
pub struct DeviceLayer {
    pub attn_norm: CudaSlice<f32>,
    pub wq: CudaSlice<f32>,
    pub wk: CudaSlice<f32>,
    pub wv: CudaSlice<f32>,
    pub wo: CudaSlice<f32>,
    pub ffn_norm: CudaSlice<f32>,
    pub w_gate: CudaSlice<f32>,
    pub w_up: CudaSlice<f32>,
    pub w_down: CudaSlice<f32>,
}

/// The model's weights (or gradients) on the device, mirroring `Weights`.
pub struct DeviceWeights {
    pub config: Config,
    pub tok_embeddings: CudaSlice<f32>,
    pub layers: Vec<DeviceLayer>,
    pub final_norm: CudaSlice<f32>,
    pub lm_head: Option<CudaSlice<f32>>,
}

impl std::fmt::Debug for DeviceWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWeights")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DeviceWeights {
    pub fn upload(gpu: &Gpu, w: &Weights) -> Result<Self, GpuError> {
        let layers = w
            .layers
            .iter()
            .map(|l| {
                Ok(DeviceLayer {
                    attn_norm: gpu.upload(&l.attn_norm)?,
                    wq: gpu.upload(&l.wq)?,
                    wk: gpu.upload(&l.wk)?,
                    wv: gpu.upload(&l.wv)?,
                    wo: gpu.upload(&l.wo)?,
                    ffn_norm: gpu.upload(&l.ffn_norm)?,
                    w_gate: gpu.upload(&l.w_gate)?,
                    w_up: gpu.upload(&l.w_up)?,
                    w_down: gpu.upload(&l.w_down)?,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        Ok(DeviceWeights {
            config: w.config.clone(),
            tok_embeddings: gpu.upload(&w.tok_embeddings)?,
            layers,
            final_norm: gpu.upload(&w.final_norm)?,
            lm_head: w.lm_head.as_ref().map(|h| gpu.upload(h)).transpose()?,
        })
    }

    /// Zero gradients shaped like `config`'s weights.
    pub fn zeros(gpu: &Gpu, config: &Config) -> Result<Self, GpuError> {
        Self::upload(gpu, &Weights::zeros(config))
    }

    /// Copies everything back into a host `Weights` (checkpoints use the CPU writer).
    pub fn to_host(&self, gpu: &Gpu) -> Result<Weights, GpuError> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerWeights {
                    attn_norm: gpu.download(&l.attn_norm)?,
                    wq: gpu.download(&l.wq)?,
                    wk: gpu.download(&l.wk)?,
                    wv: gpu.download(&l.wv)?,
                    wo: gpu.download(&l.wo)?,
                    ffn_norm: gpu.download(&l.ffn_norm)?,
                    w_gate: gpu.download(&l.w_gate)?,
                    w_up: gpu.download(&l.w_up)?,
                    w_down: gpu.download(&l.w_down)?,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        Ok(Weights {
            config: self.config.clone(),
            tok_embeddings: gpu.download(&self.tok_embeddings)?,
            layers,
            final_norm: gpu.download(&self.final_norm)?,
            lm_head: self.lm_head.as_ref().map(|h| gpu.download(h)).transpose()?,
        })
    }

    /// Every tensor with its checkpoint name, in `Weights::for_each` order.
    pub fn tensors(&self) -> Vec<(String, &CudaSlice<f32>)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            &self.tok_embeddings,
        )];
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t) in [
                ("input_layernorm.weight", &l.attn_norm),
                ("self_attn.q_proj.weight", &l.wq),
                ("self_attn.k_proj.weight", &l.wk),
                ("self_attn.v_proj.weight", &l.wv),
                ("self_attn.o_proj.weight", &l.wo),
                ("post_attention_layernorm.weight", &l.ffn_norm),
                ("mlp.gate_proj.weight", &l.w_gate),
                ("mlp.up_proj.weight", &l.w_up),
                ("mlp.down_proj.weight", &l.w_down),
            ] {
                out.push((format!("model.layers.{i}.{name}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &self.final_norm));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// Mutable twin of [`DeviceWeights::tensors`], same names and order.
    pub fn tensors_mut(&mut self) -> Vec<(String, &mut CudaSlice<f32>)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            &mut self.tok_embeddings,
        )];
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (name, t) in [
                ("input_layernorm.weight", &mut l.attn_norm),
                ("self_attn.q_proj.weight", &mut l.wq),
                ("self_attn.k_proj.weight", &mut l.wk),
                ("self_attn.v_proj.weight", &mut l.wv),
                ("self_attn.o_proj.weight", &mut l.wo),
                ("post_attention_layernorm.weight", &mut l.ffn_norm),
                ("mlp.gate_proj.weight", &mut l.w_gate),
                ("mlp.up_proj.weight", &mut l.w_up),
                ("mlp.down_proj.weight", &mut l.w_down),
            ] {
                out.push((format!("model.layers.{i}.{name}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &mut self.final_norm));
        if let Some(h) = &mut self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// Sets every tensor to zero (gradients between steps), without a host copy.
    pub fn zero(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        for (_, t) in self.tensors_mut() {
            gpu.stream()
                .memset_zeros(t)
                .map_err(GpuError::driver("zero gradients"))?;
        }
        Ok(())
    }

    /// The LM head matrix (the embeddings when tied).
    pub fn lm_head(&self) -> &CudaSlice<f32> {
        self.lm_head.as_ref().unwrap_or(&self.tok_embeddings)
    }

    pub(crate) fn lm_head_mut(&mut self) -> &mut CudaSlice<f32> {
        match &mut self.lm_head {
            Some(h) => h,
            None => &mut self.tok_embeddings,
        }
    }
}
