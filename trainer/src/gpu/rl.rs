//! Launch code for `kernels/rl.cu`: group advantages over ragged groups and the clipped
//! token-level policy loss with its gradient wrt the current log-probs.
//!
//! CPU twins: `crate::rl::advantages`, `crate::rl::weighted_policy_loss` (and
//! `crate::rl::policy_loss`, which is that with host-computed aggregation weights).
//! Does not own: the formulas' definitions (the twins' docs) or where rewards come from.

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len, to_i32};
use super::nvtx::Range;

/// Per-token statistic rows the policy-loss kernel writes (order of `PL_*` in rl.cu).
const PL_ROWS: usize = 6;

/// The advantage estimator (mirrors `crate::rl::AdvantageKind`; kernel codes 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvantageCode {
    Grpo = 0,
    DrGrpo = 1,
    Rloo = 2,
}

/// Clip and KL settings of the policy loss (the fields of `crate::rl::LossConfig` the
/// kernel reads; the aggregation arrives as per-token weights).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipSettings {
    pub clip_low: f32,
    pub clip_high: f32,
    pub kl_coef: f32,
}

/// Scalars of the policy loss, as in `crate::rl::PolicyLossOutput` (minus `dlogp`, which
/// stays on the device).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyLossStats {
    pub loss: f32,
    pub pg_loss: f32,
    pub kl: f32,
    pub clip_fraction: f32,
    pub ratio_mean: f32,
    pub tokens: usize,
    pub clipped_tokens: usize,
}

/// Device inputs of the policy loss, one value per token.
#[derive(Debug)]
pub struct PolicyLossInputs<'a> {
    pub logp: &'a CudaSlice<f32>,
    pub old_logp: &'a CudaSlice<f32>,
    pub ref_logp: Option<&'a CudaSlice<f32>>,
    pub advantages: &'a CudaSlice<f32>,
    pub mask: &'a CudaSlice<f32>,
    pub weights: &'a CudaSlice<f32>,
}

impl Gpu {
    /// `crate::rl::advantages` on the device. `group_offsets` (`[groups + 1]`, on the host,
    /// checked here: starts at 0, non-decreasing, ends at `rewards.len()`).
    pub fn advantages(
        &self,
        rewards: &CudaSlice<f32>,
        group_offsets: &[usize],
        kind: AdvantageCode,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "advantages";
        check_len(OP, "out", rewards.len(), out.len())?;
        let valid = group_offsets.first() == Some(&0)
            && group_offsets.last() == Some(&rewards.len())
            && group_offsets.windows(2).all(|w| w[0] <= w[1]);
        if !valid {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!(
                    "group_offsets must start at 0, not decrease, and end at {}",
                    rewards.len()
                ),
            });
        }
        let n_groups = group_offsets.len() - 1;
        if n_groups == 0 {
            return Ok(());
        }
        let offs: Vec<u64> = group_offsets.iter().map(|&o| o as u64).collect();
        let offs = self.upload(&offs)?;
        let n_groups_i = to_i32(OP, "groups", n_groups)?;
        let f = self.function(Kernel::Advantages)?;
        let _r = Range::new(OP);
        const THREADS: u32 = 128;
        let cfg = LaunchConfig {
            grid_dim: ((n_groups as u32).div_ceil(THREADS), 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let code = kind as i32;
        let mut b = self.stream().launch_builder(&f);
        b.arg(rewards)
            .arg(&offs)
            .arg(&n_groups_i)
            .arg(&code)
            .arg(&eps)
            .arg(out);
        // SAFETY: signature (const float*, const u64*, int, int, float, float*) matches;
        // thread g < n_groups reads offsets[g], offsets[g+1] (len n_groups + 1) and touches
        // rewards/out in [offsets[g], offsets[g+1]) ⊆ [0, rewards.len()] (checked above).
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch advantages"))?;
        Ok(())
    }

    /// `crate::rl::weighted_policy_loss` on the device: writes `dlogp` (`[tokens]`) and
    /// returns the scalar statistics (one small device→host copy).
    pub fn weighted_policy_loss(
        &self,
        inp: &PolicyLossInputs<'_>,
        cfg: &ClipSettings,
        dlogp: &mut CudaSlice<f32>,
    ) -> Result<PolicyLossStats, GpuError> {
        const OP: &str = "policy_loss";
        let n = inp.logp.len();
        check_len(OP, "old_logp", n, inp.old_logp.len())?;
        check_len(OP, "advantages", n, inp.advantages.len())?;
        check_len(OP, "mask", n, inp.mask.len())?;
        check_len(OP, "weights", n, inp.weights.len())?;
        check_len(OP, "dlogp", n, dlogp.len())?;
        if let Some(r) = inp.ref_logp {
            check_len(OP, "ref_logp", n, r.len())?;
        }
        if n == 0 {
            return Ok(PolicyLossStats::default());
        }
        let n_i = to_i32(OP, "tokens", n)?;
        to_i32(OP, "6*tokens", n * PL_ROWS)?;
        let _r = Range::new(OP);
        let mut stats = self.zeros::<f32>(n * PL_ROWS)?;
        let f = self.function(Kernel::PolicyLoss)?;
        const THREADS: u32 = 256;
        let cfg_l = LaunchConfig {
            grid_dim: ((n as u32).div_ceil(THREADS), 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        {
            let s = self.stream();
            let (pref, _g) = match inp.ref_logp {
                Some(r) => {
                    let (p, g) = r.device_ptr(s);
                    (p, Some(g))
                }
                None => (0u64, None),
            };
            let mut b = s.launch_builder(&f);
            b.arg(inp.logp)
                .arg(inp.old_logp)
                .arg(&pref)
                .arg(inp.advantages)
                .arg(inp.mask)
                .arg(inp.weights);
            b.arg(&n_i)
                .arg(&cfg.clip_low)
                .arg(&cfg.clip_high)
                .arg(&cfg.kl_coef)
                .arg(&mut *dlogp)
                .arg(&mut stats);
            // SAFETY: signature (6 × const float*, int, 3 × float, float*, float*) matches;
            // thread t < n reads index t of six n-element inputs (lengths checked) and
            // writes dlogp[t] (n) and stats[k·n + t] for k < 6 (stats has 6n).
            unsafe { b.launch(cfg_l) }.map_err(GpuError::driver("launch policy_loss"))?;
        }
        let sums = self.sum_rows(&stats, PL_ROWS, n)?;
        let tokens = sums[4].round() as usize;
        let clipped_tokens = sums[5].round() as usize;
        let (kl, ratio_mean, clip_fraction) = if tokens > 0 {
            let t = tokens as f32;
            (sums[2] / t, sums[3] / t, clipped_tokens as f32 / t)
        } else {
            (0.0, 0.0, 0.0)
        };
        Ok(PolicyLossStats {
            loss: sums[0],
            pg_loss: sums[1],
            kl,
            clip_fraction,
            ratio_mean,
            tokens,
            clipped_tokens,
        })
    }

    /// Deterministic per-row sums of `x` (`[rows, n]`), copied to the host.
    pub(crate) fn sum_rows(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        n: usize,
    ) -> Result<Vec<f32>, GpuError> {
        const OP: &str = "sum_f32";
        check_len(OP, "x", rows * n, x.len())?;
        let mut out = self.zeros::<f32>(rows)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let n_i = to_i32(OP, "n", n)?;
        let f = self.function(Kernel::SumF32)?;
        // 256 threads: power of two ≤ 1024 as the kernel's tree needs; 2 KiB of shared f64.
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(x).arg(&n_i).arg(&mut out);
        // SAFETY: signature (const float*, int, float*); block r reads x[r·n .. r·n + n)
        // within rows·n (checked) and writes out[r], r < rows = out.len().
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch sum_f32"))?;
        self.download(&out)
    }
}
