//! AdamW with decoupled weight decay and bias correction, a linear learning-rate
//! warm-up, and global gradient-norm clipping.
//!
//! Owns: the update rule and its state (first and second moments per parameter tensor,
//! kept as [`Weights`]-shaped buffers so they carry the same names as the weights in
//! checkpoints, and the step counter). Does not own: computing gradients
//! (`crate::train`) or writing the state to disk (`crate::checkpoint`).
//!
//! One step `t` (1-based) with gradient `g`:
//! ```text
//! ‖g‖     = sqrt(Σ over every tensor of Σ g²)         (f64)
//! g      ← g · max_grad_norm / ‖g‖    when ‖g‖ > max_grad_norm
//! lr_t    = lr · min(1, t / warmup_steps)               (linear warm-up, then constant)
//! m      ← β1 m + (1 - β1) g
//! v      ← β2 v + (1 - β2) g²
//! w      ← w - lr_t · wd · w                           (decoupled decay, matrices only)
//! w      ← w - lr_t · (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + eps)
//! ```
//! Weight decay skips the norm gains (tensors named `*norm*`): decaying a gain towards 0
//! changes the function instead of regularising it, the usual exclusion in llama
//! training recipes.
//!
//! Every loop runs in a fixed order per element (no parallel float reductions across
//! threads), so an update is bit-for-bit reproducible, which exact resume relies on.

use crate::weights::Weights;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of AdamW and its schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate, reached after the warm-up.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (multiplied by the current learning rate).
    pub weight_decay: f32,
    /// Steps of linear warm-up from `lr / warmup_steps` to `lr`; 0 for none.
    pub warmup_steps: u64,
    /// Global gradient-norm clip; `None` disables clipping.
    pub max_grad_norm: Option<f32>,
}

impl Default for AdamWConfig {
    /// SSR's RL settings (lr 3e-6 with warm-up; the paper uses 30 warm-up steps over 150
    /// steps), PyTorch's betas, clip at 1.0, and a small decay.
    fn default() -> Self {
        AdamWConfig {
            lr: 3e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            warmup_steps: 30,
            max_grad_norm: Some(1.0),
        }
    }
}

impl AdamWConfig {
    /// The learning rate of (1-based) step `t`.
    pub fn lr_at(&self, t: u64) -> f32 {
        if self.warmup_steps == 0 || t >= self.warmup_steps {
            self.lr
        } else {
            (self.lr as f64 * t as f64 / self.warmup_steps as f64) as f32
        }
    }
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// The 1-based step just taken.
    pub step: u64,
    /// Learning rate used.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Whether the gradient was scaled down by the clip.
    pub clipped: bool,
}

/// AdamW state: the moments and the number of steps taken.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Steps taken so far (the next step is `step + 1`).
    pub step: u64,
    /// First moment, same shapes and names as the weights.
    pub m: Weights,
    /// Second moment.
    pub v: Weights,
}

/// The global L2 norm of a gradient (all tensors), accumulated in f64 in a fixed order.
pub fn grad_norm(grads: &Weights) -> f64 {
    // Fixed-size chunks summed in parallel, then the partial sums added in order:
    // the result does not depend on thread scheduling.
    const CHUNK: usize = 1 << 16;
    let mut sum = 0.0f64;
    grads.for_each(|_, g| {
        let partial: Vec<f64> = g
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
            .collect();
        sum += partial.iter().sum::<f64>();
    });
    sum.sqrt()
}

impl AdamW {
    /// Fresh state (zero moments, step 0) for a model of this shape.
    pub fn new(config: AdamWConfig, model: &crate::Config) -> Self {
        AdamW {
            config,
            step: 0,
            m: Weights::zeros(model),
            v: Weights::zeros(model),
        }
    }

    /// Applies one update to `weights` from `grads` (which are clipped in place).
    ///
    /// # Panics
    /// If `weights`, `grads` and the moments do not have the same tensor shapes.
    pub fn step(&mut self, weights: &mut Weights, grads: &mut Weights) -> StepStats {
        let c = self.config;
        let norm = grad_norm(grads);
        let mut clipped = false;
        if let Some(max) = c.max_grad_norm
            && norm > max as f64
        {
            let scale = (max as f64 / (norm + 1e-6)) as f32;
            grads.for_each_mut(|_, g| g.iter_mut().for_each(|x| *x *= scale));
            clipped = true;
        }
        self.step += 1;
        let t = self.step;
        let lr = c.lr_at(t);
        // PyTorch's arrangement of the bias corrections, in f32 per element (the
        // scalars in f64): step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps.
        let bc1 = 1.0 - (c.beta1 as f64).powf(t as f64);
        let bc2 = 1.0 - (c.beta2 as f64).powf(t as f64);
        let step_size = (lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let g_list = grads.tensors();
        let mut m_list = self.m.tensors_mut();
        let mut v_list = self.v.tensors_mut();
        let w_list = weights.tensors_mut();
        assert_eq!(
            w_list.len(),
            g_list.len(),
            "AdamW: gradient has other tensors"
        );
        assert_eq!(w_list.len(), m_list.len(), "AdamW: state has other tensors");
        for (((name, w), (_, g)), ((_, m), (_, v))) in w_list
            .into_iter()
            .zip(g_list)
            .zip(m_list.iter_mut().zip(v_list.iter_mut()))
        {
            assert!(
                g.len() == w.len() && m.len() == w.len() && v.len() == w.len(),
                "AdamW: shape mismatch at {name}"
            );
            let decay = if name.contains("norm") {
                1.0
            } else {
                1.0 - lr * c.weight_decay
            };
            // Elements are independent, so parallel chunks stay bit-reproducible.
            const CHUNK: usize = 1 << 14;
            w.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((w, g), (m, v))| {
                    for j in 0..w.len() {
                        let gj = g[j];
                        m[j] = c.beta1 * m[j] + (1.0 - c.beta1) * gj;
                        v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * gj * gj;
                        let denom = v[j].sqrt() * inv_sqrt_bc2 + c.eps;
                        w[j] = w[j] * decay - step_size * m[j] / denom;
                    }
                });
        }
        StepStats {
            step: t,
            lr,
            grad_norm: norm as f32,
            clipped,
        }
    }
}
