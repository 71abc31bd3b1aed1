//! Launch code for `kernels/logprobs.cu`: per-token log-probabilities and entropies from
//! logits (f32 or bf16), and the fused in-place logits gradient.
//!
//! CPU twins: `crate::rl::logprobs_from_logits`, `crate::rl::logprobs_from_logits_backward`.
//! Does not own: the LM-head GEMMs (`lm_head.rs`) or the loss that supplies `dlogprob`.

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use half::bf16;

use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len, to_i32};
use super::nvtx::Range;

/// Threads per row block: 16 warps keep ~3 16-byte loads in flight per thread on a
/// 49k-152k vocabulary row (12-38 loads per thread), and leave room for several rows per
/// SM. A multiple of 32, at most 1024, as `block_stats` requires.
pub const ROW_THREADS: u32 = 512;

/// Logit element types the row kernel reads.
pub trait LogitElem: cudarc::driver::DeviceRepr {
    const KERNEL: Kernel;
    /// Elements per 16-byte vector load.
    const VEC: usize;
}
impl LogitElem for f32 {
    const KERNEL: Kernel = Kernel::LogprobsFromLogitsF32;
    const VEC: usize = 4;
}
impl LogitElem for bf16 {
    const KERNEL: Kernel = Kernel::LogprobsFromLogitsBf16;
    const VEC: usize = 8;
}

/// Device pointers and sizes of one row-pass launch. `dlogits` = 0 means forward only;
/// `dlogp`/`dentropy` = 0 mean "no upstream gradient of that kind".
pub(crate) struct RowPass {
    pub kernel: Kernel,
    pub logits: u64,
    pub targets: u64,
    pub n_rows: usize,
    pub vocab: usize,
    pub temperature: f32,
    pub vec_ok: bool,
    pub logprob: u64,
    pub entropy: u64,
    pub dlogp: u64,
    pub dentropy: u64,
    pub dlogits: u64,
}

impl Gpu {
    /// Launches a row pass whose pointers the caller took from buffers it checked.
    ///
    /// # Safety
    /// `logits` (and `dlogits` when non-zero) hold `n_rows * vocab` elements of the kernel's
    /// types, `targets`, `logprob`, `entropy` (and `dlogp`, `dentropy` when non-zero) hold
    /// `n_rows` elements, all on this context and ordered on `self.stream()`; `vec_ok` only
    /// when the alignment conditions of `kernels/logprobs.cu` hold.
    pub(crate) unsafe fn launch_row_pass(&self, p: &RowPass) -> Result<(), GpuError> {
        const OP: &str = "logprobs_from_logits";
        if !(p.temperature > 0.0 && p.temperature.is_finite()) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("temperature {} is not positive", p.temperature),
            });
        }
        if p.n_rows == 0 {
            return Ok(());
        }
        let n_rows = to_i32(OP, "rows", p.n_rows)?;
        let vocab = to_i32(OP, "vocab", p.vocab)?;
        to_i32(OP, "rows*vocab", p.n_rows.saturating_mul(p.vocab))?;
        let f = self.function(p.kernel)?;
        let _r = Range::new(p.kernel.symbol());
        let cfg = LaunchConfig {
            grid_dim: (n_rows as u32, 1, 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let inv_t = 1.0f32 / p.temperature;
        let vec_ok = i32::from(p.vec_ok);
        let mut b = self.stream().launch_builder(&f);
        b.arg(&p.logits)
            .arg(&p.targets)
            .arg(&n_rows)
            .arg(&vocab)
            .arg(&inv_t)
            .arg(&vec_ok);
        b.arg(&p.logprob)
            .arg(&p.entropy)
            .arg(&p.dlogp)
            .arg(&p.dentropy)
            .arg(&p.dlogits);
        // SAFETY: the argument list matches the kernel signature (pointers as u64 device
        // addresses, ints as i32, inv_temp as f32); one block per row (grid = n_rows) and the
        // kernel reads row r's `vocab` elements only for r < n_rows, within the buffer
        // lengths the caller guarantees.
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch logprobs_from_logits"))?;
        Ok(())
    }

    /// `crate::rl::logprobs_from_logits` on the device: fills `logprob` and `entropy`
    /// (`[rows]`) from `logits` (`[rows, vocab]`). Targets `>= vocab` give a NaN logprob
    /// (the kernel never reads out of bounds).
    pub fn logprobs_from_logits<T: LogitElem>(
        &self,
        logits: &CudaSlice<T>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        temperature: f32,
        logprob: &mut CudaSlice<f32>,
        entropy: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let n = self.check_rows(logits.len(), targets.len(), vocab)?;
        check_len("logprobs_from_logits", "logprob", n, logprob.len())?;
        check_len("logprobs_from_logits", "entropy", n, entropy.len())?;
        let s = self.stream();
        let (pl, _g1) = logits.device_ptr(s);
        let (pt, _g2) = targets.device_ptr(s);
        let (plp, _g3) = logprob.device_ptr_mut(s);
        let (pe, _g4) = entropy.device_ptr_mut(s);
        let p = RowPass {
            kernel: T::KERNEL,
            logits: pl,
            targets: pt,
            n_rows: n,
            vocab,
            temperature,
            vec_ok: vocab.is_multiple_of(T::VEC) && pl % 16 == 0,
            logprob: plp,
            entropy: pe,
            dlogp: 0,
            dentropy: 0,
            dlogits: 0,
        };
        // SAFETY: lengths checked above: logits = n·vocab, targets/logprob/entropy = n.
        unsafe { self.launch_row_pass(&p) }
    }

    /// Forward and backward in one launch, llm.c's fused classifier: fills `logprob` and
    /// `entropy` and overwrites `logits` with `d(Σ dlogprob·logprob + Σ dentropy·entropy) /
    /// d logits` (the twin is `crate::rl::logprobs_from_logits_backward`). Valid when the
    /// upstream gradient is known before the forward (a loss whose `dlogprob` does not
    /// depend on this forward's logprobs, e.g. a weighted NLL or a sampled-ratio estimator).
    #[allow(clippy::too_many_arguments)]
    pub fn logprobs_from_logits_fused<T: LogitElem>(
        &self,
        logits: &mut CudaSlice<T>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        temperature: f32,
        dlogprob: &CudaSlice<f32>,
        dentropy: Option<&CudaSlice<f32>>,
        logprob: &mut CudaSlice<f32>,
        entropy: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "logprobs_from_logits_fused";
        let n = self.check_rows(logits.len(), targets.len(), vocab)?;
        check_len(OP, "dlogprob", n, dlogprob.len())?;
        if let Some(d) = dentropy {
            check_len(OP, "dentropy", n, d.len())?;
        }
        check_len(OP, "logprob", n, logprob.len())?;
        check_len(OP, "entropy", n, entropy.len())?;
        let s = self.stream();
        let (pl, _g1) = logits.device_ptr_mut(s);
        let (pt, _g2) = targets.device_ptr(s);
        let (pd, _g3) = dlogprob.device_ptr(s);
        let (pde, _g4) = match dentropy {
            Some(d) => {
                let (p, g) = d.device_ptr(s);
                (p, Some(g))
            }
            None => (0, None),
        };
        let (plp, _g5) = logprob.device_ptr_mut(s);
        let (pe, _g6) = entropy.device_ptr_mut(s);
        let p = RowPass {
            kernel: T::KERNEL,
            logits: pl,
            targets: pt,
            n_rows: n,
            vocab,
            temperature,
            vec_ok: vocab.is_multiple_of(T::VEC) && pl % 16 == 0,
            logprob: plp,
            entropy: pe,
            dlogp: pd,
            dentropy: pde,
            dlogits: pl,
        };
        // SAFETY: lengths checked above; `dlogits` aliases `logits`, which the kernel allows
        // (each element is read and then written by the same thread, and no restrict).
        unsafe { self.launch_row_pass(&p) }
    }

    /// `crate::rl::logprobs_from_logits_backward` on the device, into a separate `dlogits`
    /// buffer (same shape and type as `logits`); also fills `logprob` and `entropy`.
    #[allow(clippy::too_many_arguments)]
    pub fn logprobs_from_logits_backward<T: LogitElem>(
        &self,
        logits: &CudaSlice<T>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        temperature: f32,
        dlogprob: &CudaSlice<f32>,
        dentropy: Option<&CudaSlice<f32>>,
        dlogits: &mut CudaSlice<T>,
        logprob: &mut CudaSlice<f32>,
        entropy: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "logprobs_from_logits_backward";
        let n = self.check_rows(logits.len(), targets.len(), vocab)?;
        check_len(OP, "dlogits", logits.len(), dlogits.len())?;
        check_len(OP, "dlogprob", n, dlogprob.len())?;
        if let Some(d) = dentropy {
            check_len(OP, "dentropy", n, d.len())?;
        }
        check_len(OP, "logprob", n, logprob.len())?;
        check_len(OP, "entropy", n, entropy.len())?;
        let s = self.stream();
        let (pl, _g1) = logits.device_ptr(s);
        let (pt, _g2) = targets.device_ptr(s);
        let (pd, _g3) = dlogprob.device_ptr(s);
        let (pde, _g4) = match dentropy {
            Some(d) => {
                let (p, g) = d.device_ptr(s);
                (p, Some(g))
            }
            None => (0, None),
        };
        let (pdl, _g5) = dlogits.device_ptr_mut(s);
        let (plp, _g6) = logprob.device_ptr_mut(s);
        let (pe, _g7) = entropy.device_ptr_mut(s);
        let p = RowPass {
            kernel: T::KERNEL,
            logits: pl,
            targets: pt,
            n_rows: n,
            vocab,
            temperature,
            vec_ok: vocab.is_multiple_of(T::VEC) && pl % 16 == 0 && pdl % 16 == 0,
            logprob: plp,
            entropy: pe,
            dlogp: pd,
            dentropy: pde,
            dlogits: pdl,
        };
        // SAFETY: lengths checked above: logits and dlogits n·vocab, the rest n.
        unsafe { self.launch_row_pass(&p) }
    }

    fn check_rows(
        &self,
        logits_len: usize,
        n_targets: usize,
        vocab: usize,
    ) -> Result<usize, GpuError> {
        if vocab == 0 {
            return Err(GpuError::Invalid {
                op: "logprobs_from_logits",
                detail: "vocab is 0".into(),
            });
        }
        check_len(
            "logprobs_from_logits",
            "logits (rows * vocab)",
            n_targets * vocab,
            logits_len,
        )?;
        Ok(n_targets)
    }
}
