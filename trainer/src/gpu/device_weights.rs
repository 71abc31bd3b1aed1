//! The model's weights (or gradients) on the device: [`DeviceWeights`], the mirror of
//! the host `Weights` (same tensor names, order and shapes), with upload, download,
//! zeroing and per-tensor access for the optimizer and the all-reduce, plus the bf16
//! working copies the GEMMs read (module doc of `precision.rs`: which, and why).
//!
//! The f32 tensors are the master weights. The bf16 copies are derived: made by a cast
//! kernel at upload, rewritten by the AdamW kernel in the same pass that updates each
//! master ([`DeviceWeights::params_mut`] pairs them), and recast by
//! [`DeviceWeights::refresh_bf16`] after any other write to a master.
//!
//! Does not own: what is computed with them (`model.rs`, `generate.rs`, `optim.rs`).

use cudarc::driver::CudaSlice;
use half::bf16;

use super::context::Gpu;
use super::error::GpuError;
use super::precision::{GpuPrecision, Matrix};
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

/// The bf16 working copies of one layer's seven matrices (Bf16 mode only).
pub struct Bf16Layer {
    pub wq: CudaSlice<bf16>,
    pub wk: CudaSlice<bf16>,
    pub wv: CudaSlice<bf16>,
    pub wo: CudaSlice<bf16>,
    pub w_gate: CudaSlice<bf16>,
    pub w_up: CudaSlice<bf16>,
    pub w_down: CudaSlice<bf16>,
}

/// One layer's matrices as the GEMMs see them (master and, in Bf16 mode, its copy).
#[derive(Clone, Copy, Debug)]
pub struct LayerMatrices<'a> {
    pub wq: Matrix<'a>,
    pub wk: Matrix<'a>,
    pub wv: Matrix<'a>,
    pub wo: Matrix<'a>,
    pub w_gate: Matrix<'a>,
    pub w_up: Matrix<'a>,
    pub w_down: Matrix<'a>,
}

/// One optimizer parameter: checkpoint name, f32 master, and the bf16 copy the AdamW
/// kernel rewrites from the updated master (if the tensor has one).
pub type ParamMut<'a> = (
    String,
    &'a mut CudaSlice<f32>,
    Option<&'a mut CudaSlice<bf16>>,
);

/// The model's weights (or gradients) on the device, mirroring `Weights`.
pub struct DeviceWeights {
    pub config: Config,
    pub tok_embeddings: CudaSlice<f32>,
    pub layers: Vec<DeviceLayer>,
    pub final_norm: CudaSlice<f32>,
    pub lm_head: Option<CudaSlice<f32>>,
    precision: GpuPrecision,
    /// Bf16 mode: one entry per layer. Empty in F32 mode and for gradients.
    bf16_layers: Vec<Bf16Layer>,
    /// The LM head's bf16 copy (the embeddings' when tied), in both modes: the fused LM
    /// head always runs on bf16 operands. `None` for gradients.
    lm_head_bf16: Option<CudaSlice<bf16>>,
}

impl std::fmt::Debug for DeviceWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWeights")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DeviceWeights {
    /// Uploads `w` in the F32 mode (the exact reference; the LM head still gets its bf16
    /// copy). [`DeviceWeights::upload_with`] picks the mode.
    pub fn upload(gpu: &Gpu, w: &Weights) -> Result<Self, GpuError> {
        Self::upload_with(gpu, w, GpuPrecision::F32)
    }

    /// Uploads `w` as f32 masters and makes the bf16 copies `precision` needs.
    pub fn upload_with(gpu: &Gpu, w: &Weights, precision: GpuPrecision) -> Result<Self, GpuError> {
        let mut d = Self::upload_masters(gpu, w)?;
        d.precision = precision;
        let lm = d.lm_head();
        let mut lm_bf = gpu.zeros::<bf16>(lm.len())?;
        gpu.cast_f32_to_bf16(lm, &mut lm_bf)?;
        d.lm_head_bf16 = Some(lm_bf);
        if precision == GpuPrecision::Bf16 {
            let copy = |x: &CudaSlice<f32>| -> Result<CudaSlice<bf16>, GpuError> {
                let mut y = gpu.zeros::<bf16>(x.len())?;
                gpu.cast_f32_to_bf16(x, &mut y)?;
                Ok(y)
            };
            d.bf16_layers = d
                .layers
                .iter()
                .map(|l| {
                    Ok(Bf16Layer {
                        wq: copy(&l.wq)?,
                        wk: copy(&l.wk)?,
                        wv: copy(&l.wv)?,
                        wo: copy(&l.wo)?,
                        w_gate: copy(&l.w_gate)?,
                        w_up: copy(&l.w_up)?,
                        w_down: copy(&l.w_down)?,
                    })
                })
                .collect::<Result<Vec<_>, GpuError>>()?;
        }
        Ok(d)
    }

    /// The f32 tensors only (gradients, or the first half of an upload).
    fn upload_masters(gpu: &Gpu, w: &Weights) -> Result<Self, GpuError> {
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
            precision: GpuPrecision::F32,
            bf16_layers: Vec::new(),
            lm_head_bf16: None,
        })
    }

    /// Zero gradients shaped like `config`'s weights (f32 only: no bf16 copies).
    pub fn zeros(gpu: &Gpu, config: &Config) -> Result<Self, GpuError> {
        Self::upload_masters(gpu, &Weights::zeros(config))
    }

    /// The precision the model's GEMMs run in.
    pub fn precision(&self) -> GpuPrecision {
        self.precision
    }

    /// Layer `i`'s matrices for the GEMMs (with their bf16 copies in Bf16 mode).
    pub fn matrices(&self, i: usize) -> LayerMatrices<'_> {
        let l = &self.layers[i];
        let b = self.bf16_layers.get(i);
        LayerMatrices {
            wq: Matrix::new(&l.wq, b.map(|b| &b.wq)),
            wk: Matrix::new(&l.wk, b.map(|b| &b.wk)),
            wv: Matrix::new(&l.wv, b.map(|b| &b.wv)),
            wo: Matrix::new(&l.wo, b.map(|b| &b.wo)),
            w_gate: Matrix::new(&l.w_gate, b.map(|b| &b.w_gate)),
            w_up: Matrix::new(&l.w_up, b.map(|b| &b.w_up)),
            w_down: Matrix::new(&l.w_down, b.map(|b| &b.w_down)),
        }
    }

    /// The LM head's bf16 copy; `Invalid` for a gradient buffer, which has none.
    pub fn lm_head_bf16(&self) -> Result<&CudaSlice<bf16>, GpuError> {
        self.lm_head_bf16.as_ref().ok_or_else(|| GpuError::Invalid {
            op: "lm_head",
            detail: "these device weights have no bf16 LM head (a gradient buffer?)".into(),
        })
    }

    /// The LM head as a GEMM matrix (master and bf16 copy).
    pub fn lm_head_matrix(&self) -> Matrix<'_> {
        Matrix::new(self.lm_head(), self.lm_head_bf16.as_ref())
    }

    /// Recasts every bf16 copy from its master: needed after writing a master other than
    /// through the optimizer (which rewrites the copies itself).
    pub fn refresh_bf16(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        for (_, master, copy) in self.params_mut() {
            if let Some(c) = copy {
                gpu.cast_f32_to_bf16(master, c)?;
            }
        }
        Ok(())
    }

    /// Every tensor's bf16 copy on the host, by checkpoint name (tensors without one are
    /// left out): for tests and debugging that the copies track the masters.
    pub fn bf16_copies_to_host(&mut self, gpu: &Gpu) -> Result<Vec<(String, Vec<bf16>)>, GpuError> {
        self.params_mut()
            .into_iter()
            .filter_map(|(name, _, copy)| copy.map(|c| (name, c)))
            .map(|(name, c)| Ok((name, gpu.download(&*c)?)))
            .collect()
    }

    /// Every f32 tensor with its bf16 copy (if any), in [`DeviceWeights::tensors`] order:
    /// what the optimizer updates. When the embeddings are tied, the LM head's copy is
    /// the embeddings' copy.
    pub fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        let tied = self.lm_head.is_none();
        let mut lm_copy = self.lm_head_bf16.as_mut();
        let mut out: Vec<ParamMut<'_>> = vec![(
            "model.embed_tokens.weight".to_string(),
            &mut self.tok_embeddings,
            if tied { lm_copy.take() } else { None },
        )];
        let mut copies = self.bf16_layers.iter_mut();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let b = copies.next();
            let (wq, wk, wv, wo, wg, wu, wd) = match b {
                Some(b) => (
                    Some(&mut b.wq),
                    Some(&mut b.wk),
                    Some(&mut b.wv),
                    Some(&mut b.wo),
                    Some(&mut b.w_gate),
                    Some(&mut b.w_up),
                    Some(&mut b.w_down),
                ),
                None => (None, None, None, None, None, None, None),
            };
            for (name, t, c) in [
                ("input_layernorm.weight", &mut l.attn_norm, None),
                ("self_attn.q_proj.weight", &mut l.wq, wq),
                ("self_attn.k_proj.weight", &mut l.wk, wk),
                ("self_attn.v_proj.weight", &mut l.wv, wv),
                ("self_attn.o_proj.weight", &mut l.wo, wo),
                ("post_attention_layernorm.weight", &mut l.ffn_norm, None),
                ("mlp.gate_proj.weight", &mut l.w_gate, wg),
                ("mlp.up_proj.weight", &mut l.w_up, wu),
                ("mlp.down_proj.weight", &mut l.w_down, wd),
            ] {
                out.push((format!("model.layers.{i}.{name}"), t, c));
            }
        }
        out.push(("model.norm.weight".to_string(), &mut self.final_norm, None));
        if let Some(h) = &mut self.lm_head {
            out.push(("lm_head.weight".to_string(), h, lm_copy.take()));
        }
        out
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

    /// Mutable twin of [`DeviceWeights::tensors`], same names and order. Writes to model
    /// weights through it leave their bf16 copies stale until
    /// [`DeviceWeights::refresh_bf16`] (gradients have no copies).
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
