//! The fused LM head: hidden states → per-token log-probabilities, entropies and, in the
//! same pass, the gradients wrt the hidden states and the head weight, in chunks of tokens
//! sized to a bounded workspace, so the `[tokens, vocab]` logits never exist in full.
//!
//! Per chunk of `c` rows: cuBLAS bf16 GEMM into f32 logits `[c, vocab]`; the row pass
//! (`lm_head_rows` in `kernels/logprobs.cu`) writes logprob, entropy and the bf16 logits
//! gradient; then `dhidden[c, d] = dlogits · W` (f32 out) and `dW[vocab, d] += dlogits^T ·
//! hidden` (f32 accumulation across chunks).
//!
//! When the upstream gradient needs the log-probs first (the policy loss),
//! [`Gpu::lm_head_loss_and_backward`] runs forward, loss and backward with the logits GEMM
//! once per chunk except where the workspace had to drop a chunk's logits.
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
        check_lm_head(OP, shape, inp, out, ws)?;
        let _r = Range::new(OP);
        for (r0, r1) in chunks(shape.tokens, ws.chunk_rows) {
            self.lm_head_chunk(shape, inp, out, ws, r0, r1, true)?;
        }
        Ok(())
    }

    /// The LM head's forward, the upstream gradient from `loss`, and the backward, with
    /// one logits GEMM per chunk where the workspace allows: the forward runs the chunks
    /// in order and leaves the last chunk's f32 logits in the workspace; `loss` gets every
    /// log-prob (on the host) and returns `d loss / d logprob` per token; the backward
    /// then runs the chunks in reverse, starting with the retained one, whose logits it
    /// does not recompute. When all rows fit one chunk (the usual sequence) the logits are
    /// computed once; otherwise every chunk but the last is recomputed (the workspace
    /// bounds memory, as activation checkpointing does).
    ///
    /// `inp.dlogprob` must be `None` (it comes from `loss`); `inp.dentropy` may be given;
    /// `out.dhidden` and `out.dweight` are required. Returns the host log-probs and
    /// entropies the forward produced.
    pub fn lm_head_loss_and_backward(
        &self,
        shape: &LmHeadShape,
        inp: &LmHeadInputs<'_>,
        out: &mut LmHeadOutputs<'_>,
        ws: &mut LmHeadWorkspace,
        loss: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        const OP: &str = "lm_head_loss_and_backward";
        if inp.dlogprob.is_some() || out.dhidden.is_none() || out.dweight.is_none() {
            return Err(GpuError::Invalid {
                op: OP,
                detail: "dlogprob comes from the loss closure; dhidden and dweight are required"
                    .into(),
            });
        }
        let n = shape.tokens;
        let chunks: Vec<(usize, usize)> = chunks(n, ws.chunk_rows).collect();
        let (logprob, entropy) = {
            let _r = Range::new("lm_head forward");
            let fwd = LmHeadInputs {
                dlogprob: None,
                dentropy: None,
                ..*inp
            };
            let mut fwd_out = LmHeadOutputs {
                logprob: &mut *out.logprob,
                entropy: &mut *out.entropy,
                dhidden: None,
                dweight: None,
            };
            check_lm_head(OP, shape, &fwd, &fwd_out, ws)?;
            for &(r0, r1) in &chunks {
                self.lm_head_chunk(shape, &fwd, &mut fwd_out, ws, r0, r1, true)?;
            }
            (self.download(&*out.logprob)?, self.download(&*out.entropy)?)
        };
        let dlogprob = {
            let _r = Range::new("policy loss (host)");
            loss(&logprob)
        };
        check_len(OP, "loss gradient (one per token)", n, dlogprob.len())?;
        let _r = Range::new("lm_head backward");
        let dlp = self.upload(&dlogprob)?;
        let bwd = LmHeadInputs {
            dlogprob: Some(&dlp),
            ..*inp
        };
        check_lm_head(OP, shape, &bwd, out, ws)?;
        for (i, &(r0, r1)) in chunks.iter().rev().enumerate() {
            // i == 0: the chunk the forward ran last, whose logits the workspace holds.
            self.lm_head_chunk(shape, &bwd, out, ws, r0, r1, i != 0)?;
        }
        Ok((logprob, entropy))
    }

    /// Rows `r0..r1` (at most `ws.chunk_rows`): the logits GEMM into the workspace (unless
    /// `!gemm_logits`, when the workspace already holds exactly these rows' logits), the
    /// row pass, and with a `dlogprob` the two gradient GEMMs. Lengths were checked by
    /// `check_lm_head`.
    #[allow(clippy::too_many_arguments)]
    // tidy: long-function: one chunk's kernel launch sequence (logits GEMM, fused row pass, the
    // two gradient GEMMs) whose order is the algorithm; one SAFETY argument covers the workspace
    // views all launches share, and a split would thread those views through each piece. GPU code,
    // checked only on real hardware, so it is not split without a device to rerun it.
    fn lm_head_chunk(
        &self,
        shape: &LmHeadShape,
        inp: &LmHeadInputs<'_>,
        out: &mut LmHeadOutputs<'_>,
        ws: &mut LmHeadWorkspace,
        r0: usize,
        r1: usize,
        gemm_logits: bool,
    ) -> Result<(), GpuError> {
        let LmHeadShape {
            dim: d,
            vocab: v,
            temperature,
            ..
        } = *shape;
        let backward = inp.dlogprob.is_some();
        let s = self.stream().clone();
        let c = r1 - r0;
        let _chunk = Range::new(format!("lm_head chunk {r0}..{r1}"));
        let h = inp.hidden.slice(r0 * d..r1 * d);
        if gemm_logits {
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
            // lengths n, sliced r0..r1 with r1 ≤ n). The row pass never writes the logits
            // (dlogits is the separate workspace buffer), so a retained chunk stays valid.
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
        Ok(())
    }
}

/// Row ranges of at most `rows` (≥ 1) covering `0..n`, in order.
fn chunks(n: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = rows.max(1);
    (0..n.div_ceil(rows)).map(move |i| (i * rows, ((i + 1) * rows).min(n)))
}

/// The LM head's length checks; nothing is launched when they fail.
fn check_lm_head(
    op: &'static str,
    shape: &LmHeadShape,
    inp: &LmHeadInputs<'_>,
    out: &LmHeadOutputs<'_>,
    ws: &LmHeadWorkspace,
) -> Result<(), GpuError> {
    let LmHeadShape {
        tokens: n,
        dim: d,
        vocab: v,
        ..
    } = *shape;
    check_len(op, "workspace vocab", v, ws.vocab)?;
    check_len(op, "hidden", n * d, inp.hidden.len())?;
    check_len(op, "weight", v * d, inp.weight.len())?;
    check_len(op, "targets", n, inp.targets.len())?;
    check_len(op, "logprob", n, out.logprob.len())?;
    check_len(op, "entropy", n, out.entropy.len())?;
    let backward = inp.dlogprob.is_some();
    if let Some(g) = inp.dlogprob {
        check_len(op, "dlogprob", n, g.len())?;
    }
    if let Some(g) = inp.dentropy {
        check_len(op, "dentropy", n, g.len())?;
    }
    match (&out.dhidden, &out.dweight) {
        (Some(dh), Some(dw)) if backward => {
            check_len(op, "dhidden", n * d, dh.len())?;
            check_len(op, "dweight", v * d, dw.len())?;
        }
        (None, None) if !backward => {}
        _ => {
            return Err(GpuError::Invalid {
                op,
                detail: "dhidden and dweight must be given exactly when dlogprob is".into(),
            });
        }
    }
    Ok(())
}
