//! The GPU model's numeric precision ([`GpuPrecision`]) and the pieces the training
//! forward, its backward and the decoder share to run in either mode: GEMM operands
//! ([`GemmInput`]), weight matrices with their bf16 copy ([`Matrix`]), and the linear
//! layer's forward and backward GEMMs (one generic code path for both element types).
//!
//! # F32 mode: the exact reference
//! Every tensor is f32 and every GEMM is f32 × f32 → f32 (cuBLAS, f32 compute), except
//! the fused LM head, which runs on bf16 operands in both modes (its own module doc).
//! This is the mode the f32 parity tests compare with the CPU twin.
//!
//! # Bf16 mode (the default on the GPU): what is bf16, and why
//! bf16 keeps f32's exponent and 8 significant bits (7 stored): a rounding costs up to
//! 2^-8 ≈ 3.9e-3 relative, harmless for a GEMM operand whose products are summed in f32,
//! harmful for anything that accumulates small updates. So bf16 is used
//! exactly for GEMM operands, and everything that accumulates stays f32:
//!
//! | tensor | dtype | why |
//! |---|---|---|
//! | `wq wk wv wo w_gate w_up w_down` of every layer, LM head | bf16 copy of an f32 master | GEMM operands: tensor cores at the bf16 rate, half the bytes read; the copy is cast at upload and rewritten by the AdamW kernel in the update's own pass |
//! | `xn`, `hn` (RMSNorm outputs) | bf16, saved for backward | input of q/k/v and gate/up; the fused `rmsnorm_forward_bf16` writes them, so no f32 copy ever exists; the backward's dW GEMMs read them: half the memory of these saved activations |
//! | `attn` (attention output) | bf16, saved for backward | input of `wo`; cast from the f32 kernel output; the attention backward reads it back as f32 (for `D = rowsum(dO ∘ O)`, as FlashAttention does from its bf16 O) |
//! | `act` (SwiGLU output) | bf16, saved for backward | input of `w_down`; written by `swiglu_forward_bf16` |
//! | upstream gradient `dy` of each linear | bf16 temporary | operand of the two backward GEMMs (`dx = dy·W`, `dW += dyᵀ·x`), cast once and freed (what mixed-precision autocast does) |
//! | LM head scoring rows, logits gradient | bf16 | as in F32 mode |
//! | f32 master weights, AdamW moments | f32 | an update of lr ≈ 1e-5 relative is far below bf16's resolution |
//! | weight gradients | f32 | accumulated by the GEMMs' f32 `C` with `beta = 1` across layers' calls and sequences |
//! | residual stream `x`, `h` and its gradient | f32 | a sum of every layer's output: rounding each add would drop small contributions |
//! | RMSNorm `rstd`, norm gains, embedding table | f32 | statistics (f64 sums), vectors, a gather: no GEMM, nothing to gain |
//! | `q`, `k`, `v`, `lse`, softmax accumulators, KV cache | f32 | the v1 attention kernels are f32 FMA; bf16 q/k/v belong with a tensor-core attention |
//! | `gate`, `up` | f32 | SwiGLU's backward reads them; the next candidates for bf16 storage |
//! | GEMM outputs, logits, log-probs, entropies | f32 | f32 accumulation, written as f32 |
//!
//! Does not own: the op order of the model (`model.rs`, `generate.rs`), the kernels
//! (`model_ops.rs`), or the optimizer (`optim.rs`).

use std::fmt;
use std::str::FromStr;

use cudarc::driver::CudaSlice;
use half::bf16;

use super::blas::{Gemm, GemmElem};
use super::context::Gpu;
use super::error::GpuError;
use crate::testing::Tolerance;

/// The numeric precision of the GPU model's GEMMs and saved activations (module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GpuPrecision {
    /// bf16 GEMM operands with f32 accumulation, f32 master weights (the default).
    #[default]
    Bf16,
    /// f32 throughout (bf16 LM head): the exact reference against the CPU twin.
    F32,
}

impl GpuPrecision {
    pub const ALL: [GpuPrecision; 2] = [GpuPrecision::Bf16, GpuPrecision::F32];

    pub fn name(self) -> &'static str {
        match self {
            GpuPrecision::Bf16 => "bf16",
            GpuPrecision::F32 => "f32",
        }
    }
}

impl fmt::Display for GpuPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far the device may be from the CPU twin in a precision: the trainer's stated
/// tolerances, used by the parity tests and the end-to-end runs (`ssr train --device
/// cuda` against `--device cpu`, greedy generation). Each bound says how it was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceTolerance {
    /// A training step's loss.
    pub loss: Tolerance,
    /// A training step's global gradient norm (before clipping).
    pub grad_norm: Tolerance,
    /// Logits of order 1 from the decoder (prefill or decode).
    pub logits: Tolerance,
}

impl GpuPrecision {
    /// The tolerances of this precision against the CPU (f32).
    pub fn tolerance(self) -> DeviceTolerance {
        match self {
            // The loss is Σ w·ratio·A with ratio = exp(logp − old): its relative error is
            // the log-probs' absolute error (≲ 2.5e-2 typical in bf16): 6e-2. The gradient
            // norm carries the gradients' rel-L2 (≈ 2.5e-2): 8e-2. Logits: about 18 bf16
            // roundings on the decoder's path, 0.15 absolute (emulated worst 5.6e-2).
            GpuPrecision::Bf16 => DeviceTolerance {
                loss: Tolerance::new(1e-4, 6e-2),
                grad_norm: Tolerance::new(1e-4, 8e-2),
                logits: Tolerance::new(0.15, 0.0),
            },
            // The LM head is bf16 in both modes (8 mantissa bits): loss and norm within
            // 3%. Logits: f32 throughout, fast-math exp in attention: 1e-4.
            GpuPrecision::F32 => DeviceTolerance {
                loss: Tolerance::new(1e-4, 3e-2),
                grad_norm: Tolerance::new(1e-4, 3e-2),
                logits: Tolerance::new(1e-4, 1e-4),
            },
        }
    }
}

/// A precision name other than `bf16` or `f32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GPU precision {given:?} (expected bf16 or f32)")]
pub struct UnknownPrecision {
    pub given: String,
}

impl FromStr for GpuPrecision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GpuPrecision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownPrecision {
                given: s.to_string(),
            })
    }
}

/// A GEMM's activation operand in the mode's element type; also what the forward saves
/// of it for the backward's weight gradient.
pub enum GemmInput {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<bf16>),
}

impl fmt::Debug for GemmInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GemmInput::{}[{}]", self.precision(), self.len())
    }
}

impl GemmInput {
    pub fn len(&self) -> usize {
        match self {
            GemmInput::F32(x) => x.len(),
            GemmInput::Bf16(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn precision(&self) -> GpuPrecision {
        match self {
            GemmInput::F32(_) => GpuPrecision::F32,
            GemmInput::Bf16(_) => GpuPrecision::Bf16,
        }
    }
}

/// A weight matrix `[out, in]` as the GEMMs see it: the f32 master and, in Bf16 mode,
/// its bf16 copy.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub master: &'a CudaSlice<f32>,
    pub bf16: Option<&'a CudaSlice<bf16>>,
}

impl<'a> Matrix<'a> {
    pub fn new(master: &'a CudaSlice<f32>, bf16: Option<&'a CudaSlice<bf16>>) -> Self {
        Matrix { master, bf16 }
    }

    fn bf16(&self, op: &'static str) -> Result<&'a CudaSlice<bf16>, GpuError> {
        self.bf16.ok_or_else(|| GpuError::Invalid {
            op,
            detail: "a bf16 operand needs the weight's bf16 copy, which these weights lack \
                     (uploaded in F32 mode?)"
                .into(),
        })
    }
}

impl Gpu {
    /// `y[rows, out] = x[rows, in] · Wᵀ` (W is `[out, in]`), f32 output; `x` and `W`
    /// share an element type (f32, or bf16 with f32 accumulation).
    pub(crate) fn linear<T: GemmElem>(
        &self,
        x: &CudaSlice<T>,
        w: &CudaSlice<T>,
        rows: usize,
        out: usize,
    ) -> Result<CudaSlice<f32>, GpuError> {
        let inp = w.len() / out.max(1);
        let mut y = self.zeros::<f32>(rows * out)?;
        self.gemm(
            &Gemm {
                m: rows,
                n: out,
                k: inp,
                a_trans: false,
                b_trans: true,
                alpha: 1.0,
                beta: 0.0,
            },
            x,
            w,
            &mut y,
        )?;
        Ok(y)
    }

    /// `dx (+)= dy · W` (added when `accumulate`) and `dW += dyᵀ · x`, f32 outputs, the
    /// three operands in one element type.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linear_backward<T: GemmElem>(
        &self,
        dy: &CudaSlice<T>,
        x: &CudaSlice<T>,
        w: &CudaSlice<T>,
        dw: &mut CudaSlice<f32>,
        rows: usize,
        out: usize,
        dx: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let inp = w.len() / out.max(1);
        self.gemm(
            &Gemm {
                m: out,
                n: inp,
                k: rows,
                a_trans: true,
                b_trans: false,
                alpha: 1.0,
                beta: 1.0,
            },
            dy,
            x,
            dw,
        )?;
        let beta = if accumulate { 1.0 } else { 0.0 };
        self.gemm(
            &Gemm {
                beta,
                ..Gemm::nn(rows, inp, out)
            },
            dy,
            w,
            dx,
        )
    }

    /// The linear layer on a saved operand: f32 GEMM on the master, or bf16 GEMM on the
    /// bf16 copy, by the operand's type.
    pub fn linear_from(
        &self,
        x: &GemmInput,
        w: Matrix<'_>,
        rows: usize,
        out: usize,
    ) -> Result<CudaSlice<f32>, GpuError> {
        match x {
            GemmInput::F32(x) => self.linear(x, w.master, rows, out),
            GemmInput::Bf16(x) => self.linear(x, w.bf16("linear")?, rows, out),
        }
    }

    /// The linear layer's backward on a saved operand: in Bf16 mode `dy` is cast to a
    /// bf16 temporary and both GEMMs run on bf16 operands, f32 accumulation and outputs.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward_from(
        &self,
        dy: &CudaSlice<f32>,
        x: &GemmInput,
        w: Matrix<'_>,
        dw: &mut CudaSlice<f32>,
        rows: usize,
        out: usize,
        dx: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        match x {
            GemmInput::F32(x) => {
                self.linear_backward(dy, x, w.master, dw, rows, out, dx, accumulate)
            }
            GemmInput::Bf16(x) => {
                let wb = w.bf16("linear_backward")?;
                let mut dyb = self.zeros::<bf16>(dy.len())?;
                self.cast_f32_to_bf16(dy, &mut dyb)?;
                self.linear_backward(&dyb, x, wb, dw, rows, out, dx, accumulate)
            }
        }
    }

    /// RMSNorm of the residual `x` into a GEMM operand of `precision` (the fused
    /// bf16-output kernel in Bf16 mode), with its f32 `rstd`.
    pub fn norm_for_gemm(
        &self,
        x: &CudaSlice<f32>,
        gain: &CudaSlice<f32>,
        eps: f32,
        precision: GpuPrecision,
    ) -> Result<(GemmInput, CudaSlice<f32>), GpuError> {
        let rows = x.len() / gain.len().max(1);
        let mut rstd = self.zeros::<f32>(rows)?;
        let y = match precision {
            GpuPrecision::F32 => {
                let mut y = self.zeros::<f32>(x.len())?;
                self.rms_norm(x, gain, eps, &mut y, &mut rstd)?;
                GemmInput::F32(y)
            }
            GpuPrecision::Bf16 => {
                let mut y = self.zeros::<bf16>(x.len())?;
                self.rms_norm(x, gain, eps, &mut y, &mut rstd)?;
                GemmInput::Bf16(y)
            }
        };
        Ok((y, rstd))
    }

    /// SwiGLU into the down projection's operand of `precision`.
    pub fn swiglu_for_gemm(
        &self,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        precision: GpuPrecision,
    ) -> Result<GemmInput, GpuError> {
        Ok(match precision {
            GpuPrecision::F32 => {
                let mut a = self.zeros::<f32>(gate.len())?;
                self.swiglu(gate, up, &mut a)?;
                GemmInput::F32(a)
            }
            GpuPrecision::Bf16 => {
                let mut a = self.zeros::<bf16>(gate.len())?;
                self.swiglu(gate, up, &mut a)?;
                GemmInput::Bf16(a)
            }
        })
    }

    /// An f32 result as a GEMM operand of `precision` (moved, or cast to bf16).
    pub fn to_gemm_input(
        &self,
        y: CudaSlice<f32>,
        precision: GpuPrecision,
    ) -> Result<GemmInput, GpuError> {
        Ok(match precision {
            GpuPrecision::F32 => GemmInput::F32(y),
            GpuPrecision::Bf16 => {
                let mut b = self.zeros::<bf16>(y.len())?;
                self.cast_f32_to_bf16(&y, &mut b)?;
                GemmInput::Bf16(b)
            }
        })
    }

    /// Runs `f` on `x` as f32: as is, or on an f32 temporary cast from the bf16 values.
    pub fn with_f32<R>(
        &self,
        x: &GemmInput,
        f: impl FnOnce(&CudaSlice<f32>) -> Result<R, GpuError>,
    ) -> Result<R, GpuError> {
        match x {
            GemmInput::F32(x) => f(x),
            GemmInput::Bf16(b) => {
                let mut y = self.zeros::<f32>(b.len())?;
                self.cast_bf16_to_f32(b, &mut y)?;
                f(&y)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_round_trip_and_unknown_is_a_typed_error() {
        for p in GpuPrecision::ALL {
            assert_eq!(p.name().parse::<GpuPrecision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(" BF16 ".parse::<GpuPrecision>(), Ok(GpuPrecision::Bf16));
        assert_eq!(GpuPrecision::default(), GpuPrecision::Bf16);
        let e = "fp8".parse::<GpuPrecision>().unwrap_err();
        assert_eq!(e.given, "fp8");
        assert!(e.to_string().contains("bf16 or f32"), "{e}");
    }
}
