//! The fused LM head: hidden states → per-token log-probabilities, entropies and, in the
//! same pass, the gradients wrt the hidden states and the head weight, in chunks of tokens
//! sized to a bounded workspace, so the `[tokens, vocab]` logits never exist in full.
//!
//! Per chunk of `c` rows: cuBLAS bf16 GEMM into f32 logits `[c, vocab]`; the row pass
//! (`lm_head_rows` in `kernels/logprobs.cu`) writes logprob, entropy and the bf16 logits
//! gradient; then `dhidden[c, d] = dlogits · W` (f32 out) and `dW[vocab, d] += dlogits^T ·
//! hidden` (f32 accumulation across chunks).
//!
//! CPU twin: `crate::rl::lm_head_loss` (the chunked CPU version of the same pass).
//! Does not own: the upstream gradient (`policy_loss`) or the optimizer.

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::bf16;

use super::blas::Gemm;
use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len};
use super::logprobs::RowPass;
use super::nvtx::Range;

/// Reusable per-chunk buffers: f32 logits and bf16 logits gradient, `chunk_rows × vocab`.
pub struct LmHeadWorkspace {
    pub vocab: usize,
    pub chunk_rows: usize,
    logits: CudaSlice<f32>,
    dlogits: CudaSlice<bf16>,
}

impl std::fmt::Debug for LmHeadWorkspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmHeadWorkspace")
            .field("vocab", &self.vocab)
            .field("chunk_rows", &self.chunk_rows)
            .finish()
    }
}

/// Shapes of one LM-head call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LmHeadShape {
    pub tokens: usize,
    pub dim: usize,
    pub vocab: usize,
    pub temperature: f32,
}

/// Buffers the LM head reads. `weight` is `[vocab, dim]` (the tied embedding).
#[derive(Debug)]
pub struct LmHeadInputs<'a> {
    pub hidden: &'a CudaSlice<bf16>,
    pub weight: &'a CudaSlice<bf16>,
    pub targets: &'a CudaSlice<u32>,
    /// `d loss / d logprob` per token; `None` for a forward-only pass (no gradients).
    pub dlogprob: Option<&'a CudaSlice<f32>>,
    /// `d loss / d entropy` per token (an entropy bonus), if any.
    pub dentropy: Option<&'a CudaSlice<f32>>,
}

/// Buffers the LM head writes. `dhidden` (`[tokens, dim]`, overwritten) and `dweight`
/// (`[vocab, dim]`, accumulated into: zero it before the first micro-batch) are required
/// exactly when `dlogprob` is given.
#[derive(Debug)]
pub struct LmHeadOutputs<'a> {
    pub logprob: &'a mut CudaSlice<f32>,
    pub entropy: &'a mut CudaSlice<f32>,
    pub dhidden: Option<&'a mut CudaSlice<f32>>,
    pub dweight: Option<&'a mut CudaSlice<f32>>,
}

impl LmHeadWorkspace {
    /// A workspace of at most `budget_bytes` (6 bytes per logit: f32 logits + bf16
    /// gradient), at least one row. Chunks are a multiple of 64 rows when the budget allows,
    /// so the GEMMs see tensor-core-friendly shapes.
    pub fn new(gpu: &Gpu, vocab: usize, budget_bytes: usize) -> Result<Self, GpuError> {
        let per_row = vocab.max(1) * 6;
        let mut rows = (budget_bytes / per_row).max(1);
        if rows >= 64 {
            rows -= rows % 64;
        }
        Ok(LmHeadWorkspace {
            vocab,
            chunk_rows: rows,
            logits: gpu.zeros(rows * vocab)?,
            dlogits: gpu.zeros(rows * vocab)?,
        })
    }

    pub fn bytes(&self) -> usize {
        self.chunk_rows * self.vocab * 6
    }
}

impl Gpu {
    /// The fused LM head over `shape.tokens` rows in workspace-sized chunks (module doc).
    pub fn lm_head_loss(
        &self,
        shape: &LmHeadShape,
        inp: &LmHeadInputs<'_>,
        out: &mut LmHeadOutputs<'_>,
        ws: &mut LmHeadWorkspace,
    ) -> Result<(), GpuError> {
        const OP: &str = "lm_head_loss";
        let LmHeadShape {
            tokens: n,
            dim: d,
            vocab: v,
            temperature,
        } = *shape;
        check_len(OP, "workspace vocab", v, ws.vocab)?;
        check_len(OP, "hidden", n * d, inp.hidden.len())?;
        check_len(OP, "weight", v * d, inp.weight.len())?;
        check_len(OP, "targets", n, inp.targets.len())?;
        check_len(OP, "logprob", n, out.logprob.len())?;
        check_len(OP, "entropy", n, out.entropy.len())?;
        let backward = inp.dlogprob.is_some();
        if let Some(g) = inp.dlogprob {
            check_len(OP, "dlogprob", n, g.len())?;
        }
        if let Some(g) = inp.dentropy {
            check_len(OP, "dentropy", n, g.len())?;
        }
        match (&out.dhidden, &out.dweight) {
            (Some(dh), Some(dw)) if backward => {
                check_len(OP, "dhidden", n * d, dh.len())?;
                check_len(OP, "dweight", v * d, dw.len())?;
            }
            (None, None) if !backward => {}
            _ => {
                return Err(GpuError::Invalid {
                    op: OP,
                    detail: "dhidden and dweight must be given exactly when dlogprob is".into(),
                });
            }
        }
        let _r = Range::new(OP);
        let s = self.stream().clone();
        let mut r0 = 0;
        while r0 < n {
            let c = ws.chunk_rows.min(n - r0);
            let r1 = r0 + c;
            let _chunk = Range::new(format!("lm_head chunk {r0}..{r1}"));
            let h = inp.hidden.slice(r0 * d..r1 * d);
            {
                let _g = Range::new("gemm logits");
                let mut lg = ws.logits.slice_mut(0..c * v);
                let g = Gemm {
                    m: c,
                    n: v,
                    k: d,
                    a_trans: false,
                    b_trans: true,
                    alpha: 1.0,
                    beta: 0.0,
                };
                self.gemm(&g, &h, inp.weight, &mut lg)?;
            }
            {
                let lg = ws.logits.slice(0..c * v);
                let (pl, _g1) = lg.device_ptr(&s);
                let tg = inp.targets.slice(r0..r1);
                let (pt, _g2) = tg.device_ptr(&s);
                let mut lp = out.logprob.slice_mut(r0..r1);
                let (plp, _g3) = lp.device_ptr_mut(&s);
                let mut en = out.entropy.slice_mut(r0..r1);
                let (pe, _g4) = en.device_ptr_mut(&s);
                let dlp = inp.dlogprob.map(|g| g.slice(r0..r1));
                let (pd, _g5) = match &dlp {
                    Some(g) => {
                        let (p, gd) = g.device_ptr(&s);
                        (p, Some(gd))
                    }
                    None => (0, None),
                };
                let den = inp.dentropy.map(|g| g.slice(r0..r1));
                let (pde, _g6) = match &den {
                    Some(g) => {
                        let (p, gd) = g.device_ptr(&s);
                        (p, Some(gd))
                    }
                    None => (0, None),
                };
                let mut dl = ws.dlogits.slice_mut(0..c * v);
                let (pdl, _g7) = dl.device_ptr_mut(&s);
                let p = RowPass {
                    kernel: Kernel::LmHeadRows,
                    logits: pl,
                    targets: pt,
                    n_rows: c,
                    vocab: v,
                    temperature,
                    vec_ok: v.is_multiple_of(4) && pl % 16 == 0 && pdl % 8 == 0,
                    logprob: plp,
                    entropy: pe,
                    dlogp: pd,
                    dentropy: pde,
                    dlogits: if backward { pdl } else { 0 },
                };
                // SAFETY: logits and dlogits views hold c·v elements (workspace rows ≥ c),
                // targets/logprob/entropy/dlogprob/dentropy views hold c rows (checked
                // lengths n, sliced r0..r1 with r1 ≤ n).
                unsafe { self.launch_row_pass(&p)? };
            }
            if let (Some(dh), Some(dw)) = (out.dhidden.as_deref_mut(), out.dweight.as_deref_mut()) {
                let dl = ws.dlogits.slice(0..c * v);
                {
                    let _g = Range::new("gemm dhidden");
                    let mut dh = dh.slice_mut(r0 * d..r1 * d);
                    self.gemm(&Gemm::nn(c, d, v), &dl, inp.weight, &mut dh)?;
                }
                {
                    let _g = Range::new("gemm dweight");
                    let g = Gemm {
                        m: v,
                        n: d,
                        k: c,
                        a_trans: true,
                        b_trans: false,
                        alpha: 1.0,
                        beta: 1.0,
                    };
                    self.gemm(&g, &dl, &h, dw)?;
                }
            }
            r0 = r1;
        }
        Ok(())
    }
}
