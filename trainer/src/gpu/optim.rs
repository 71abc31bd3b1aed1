//! AdamW and global gradient-norm clipping on the device, over f32 master weights with an
//! optional bf16 working copy written in the same pass.
//!
//! CPU twin: `crate::optim::AdamW::step` (same config, same order of operations: global
//! norm in f64, clip scale `max / (norm + 1e-6)`, f32 moments, f64 bias correction, no
//! decay for `*norm*` tensors). Does not own: the gradients or the schedule's definition
//! (`AdamWConfig::lr_at`).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;

use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len};
use super::nvtx::Range;
use crate::optim::{AdamWConfig, StepStats};

/// Blocks of the sum-of-squares reduction per tensor (256 threads each): enough to read a
/// large tensor at full bandwidth, few enough that the partials are a small copy.
const NORM_BLOCKS: usize = 256;

/// First and second moments copied to the host, one vector per tensor.
pub type HostMoments = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// One parameter tensor in an optimizer step.
#[derive(Debug)]
pub struct GpuParam<'a> {
    /// The checkpoint name (decides weight decay: none for `*norm*`).
    pub name: &'a str,
    pub weight: &'a mut CudaSlice<f32>,
    pub grad: &'a CudaSlice<f32>,
    /// bf16 working copy refreshed from the updated master weight, if any.
    pub weight_bf16: Option<&'a mut CudaSlice<bf16>>,
}

/// AdamW state on the device: one (m, v) pair per tensor, in the order of the params
/// passed to `step`.
pub struct GpuAdamW {
    pub config: AdamWConfig,
    pub step: u64,
    m: Vec<CudaSlice<f32>>,
    v: Vec<CudaSlice<f32>>,
}

impl std::fmt::Debug for GpuAdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuAdamW")
            .field("config", &self.config)
            .field("step", &self.step)
            .field("tensors", &self.m.len())
            .finish()
    }
}

impl GpuAdamW {
    /// Zero moments for tensors of these lengths.
    pub fn new(gpu: &Gpu, config: AdamWConfig, lens: &[usize]) -> Result<Self, GpuError> {
        let m = lens
            .iter()
            .map(|&n| gpu.zeros::<f32>(n))
            .collect::<Result<Vec<_>, _>>()?;
        let v = lens
            .iter()
            .map(|&n| gpu.zeros::<f32>(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GpuAdamW {
            config,
            step: 0,
            m,
            v,
        })
    }

    /// Moments from host vectors (resuming from a CPU checkpoint), same order as params.
    pub fn from_host(
        gpu: &Gpu,
        config: AdamWConfig,
        step: u64,
        m: &[&[f32]],
        v: &[&[f32]],
    ) -> Result<Self, GpuError> {
        let m = m
            .iter()
            .map(|x| gpu.upload(x))
            .collect::<Result<Vec<_>, _>>()?;
        let v = v
            .iter()
            .map(|x| gpu.upload(x))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GpuAdamW { config, step, m, v })
    }

    /// The moments copied to the host (for the CPU checkpoint writer).
    pub fn moments_to_host(&self, gpu: &Gpu) -> Result<HostMoments, GpuError> {
        let m = self
            .m
            .iter()
            .map(|x| gpu.download(x))
            .collect::<Result<Vec<_>, _>>()?;
        let v = self
            .v
            .iter()
            .map(|x| gpu.download(x))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((m, v))
    }

    /// One update of every param (the twin's `AdamW::step`).
    pub fn step(&mut self, gpu: &Gpu, params: &mut [GpuParam<'_>]) -> Result<StepStats, GpuError> {
        const OP: &str = "adamw_step";
        check_len(OP, "params", self.m.len(), params.len())?;
        for (p, m) in params.iter().zip(&self.m) {
            check_len(OP, "weight", m.len(), p.weight.len())?;
            check_len(OP, "grad", m.len(), p.grad.len())?;
            if let Some(b) = &p.weight_bf16 {
                check_len(OP, "weight_bf16", m.len(), b.len())?;
            }
        }
        let _r = Range::new("optimizer step");
        let grads: Vec<&CudaSlice<f32>> = params.iter().map(|p| p.grad).collect();
        let norm = gpu.grad_norm(&grads)?;
        let c = self.config;
        let (scale, clipped) = match c.max_grad_norm {
            Some(max) if norm > f64::from(max) => ((f64::from(max) / (norm + 1e-6)) as f32, true),
            _ => (1.0f32, false),
        };
        self.step += 1;
        let t = self.step;
        let lr = c.lr_at(t);
        let bc1 = 1.0 - f64::from(c.beta1).powf(t as f64);
        let bc2 = 1.0 - f64::from(c.beta2).powf(t as f64);
        let f = gpu.function(Kernel::AdamwStep)?;
        for ((p, m), v) in params
            .iter_mut()
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            let decay = if p.name.contains("norm") {
                1.0f32
            } else {
                1.0 - lr * c.weight_decay
            };
            let n = p.weight.len();
            if n == 0 {
                continue;
            }
            let n_i = n as i64;
            let blocks = n.div_ceil(256).min(65_535 * 4) as u32;
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = gpu.stream().launch_builder(&f);
            let null = 0u64;
            b.arg(&mut *p.weight)
                .arg(p.grad)
                .arg(&mut *m)
                .arg(&mut *v)
                .arg(&n_i)
                .arg(&scale);
            b.arg(&c.beta1)
                .arg(&c.beta2)
                .arg(&c.eps)
                .arg(&lr)
                .arg(&decay)
                .arg(&bc1)
                .arg(&bc2);
            match p.weight_bf16.as_deref_mut() {
                Some(wb) => b.arg(wb),
                None => b.arg(&null),
            };
            // SAFETY: (float* w, const float* g, float* m, float* v, i64 n, float scale,
            // float ×5, double ×2, u16* w_bf16 or null); grid-stride i < n where w, g, m, v
            // (and w_bf16 when given) all hold n elements (checked above).
            unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch adamw_step"))?;
        }
        Ok(StepStats {
            step: t,
            lr,
            grad_norm: norm as f32,
            clipped,
        })
    }
}

impl Gpu {
    /// `crate::optim::grad_norm`: the global L2 norm over all tensors, f64, deterministic
    /// (fixed per-block partials summed on the host in a fixed order).
    pub fn grad_norm(&self, grads: &[&CudaSlice<f32>]) -> Result<f64, GpuError> {
        if grads.is_empty() {
            return Ok(0.0);
        }
        let _r = Range::new("grad_norm");
        let mut partial = self.zeros::<f64>(grads.len() * NORM_BLOCKS)?;
        let f = self.function(Kernel::SumSquares)?;
        for (i, g) in grads.iter().enumerate() {
            let n = g.len() as i64;
            let mut dst = partial.slice_mut(i * NORM_BLOCKS..(i + 1) * NORM_BLOCKS);
            let cfg = LaunchConfig {
                grid_dim: (NORM_BLOCKS as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.stream().launch_builder(&f);
            b.arg(*g).arg(&n).arg(&mut dst);
            // SAFETY: (const float*, i64, double*); grid-stride i < n = g.len(); block b
            // writes partial[b], b < 256 = dst.len(); 256 threads match the kernel's
            // shared buffer.
            unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch sum_squares"))?;
        }
        let host = self.download(&partial)?;
        Ok(host.iter().sum::<f64>().sqrt())
    }

    /// `x *= s` on the device (clipping a tensor).
    pub fn scale_in_place(&self, x: &mut CudaSlice<f32>, s: f32) -> Result<(), GpuError> {
        let n = x.len() as i64;
        if n == 0 {
            return Ok(());
        }
        let f = self.function(Kernel::ScaleInPlace)?;
        let blocks = x.len().div_ceil(256).min(65_535 * 4) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(&mut *x).arg(&n).arg(&s);
        // SAFETY: (float*, i64, float); grid-stride over n = x.len().
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch scale_in_place"))?;
        Ok(())
    }
}
