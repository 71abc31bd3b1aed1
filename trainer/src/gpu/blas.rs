//! Row-major GEMMs through `cublasGemmEx` with f32 accumulation (the safe cudarc bf16
//! GEMM writes bf16 output; f32 output or accumulation needs `gemm_ex`, see NOTES).
//!
//! Does not own: any element-wise maths (kernels) or the choice of shapes (callers).

use std::ffi::c_void;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::context::Gpu;
use super::error::{GpuError, to_i32};

/// Element type of a GEMM operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmDtype {
    F32,
    Bf16,
}

impl GemmDtype {
    fn cuda(self) -> cudaDataType {
        match self {
            GemmDtype::F32 => cudaDataType::CUDA_R_32F,
            GemmDtype::Bf16 => cudaDataType::CUDA_R_16BF,
        }
    }
}

/// `C[m, n] = alpha · op(A) · op(B) + beta · C`, all row-major. `A` is `[m, k]`, or
/// `[k, m]` when `a_trans`; `B` is `[k, n]`, or `[n, k]` when `b_trans`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_trans: bool,
    pub b_trans: bool,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm {
    /// `C = A · B` (no transposes, alpha 1, beta 0).
    pub fn nn(m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            a_trans: false,
            b_trans: false,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Element types a GEMM operand may have; the cuBLAS dtype follows from the Rust type, so
/// a buffer can never be read with the wrong element size.
pub trait GemmElem {
    const DTYPE: GemmDtype;
}
impl GemmElem for f32 {
    const DTYPE: GemmDtype = GemmDtype::F32;
}
impl GemmElem for half::bf16 {
    const DTYPE: GemmDtype = GemmDtype::Bf16;
}

impl Gpu {
    /// Runs `g` with an f32-accumulating compute type. `A` and `B` share an element type
    /// (bf16 or f32); `C` is f32 or bf16. The slices' lengths are checked against the shape
    /// before anything is launched.
    pub fn gemm<TAB: GemmElem, TC: GemmElem>(
        &self,
        g: &Gemm,
        a: &impl DevicePtr<TAB>,
        b: &impl DevicePtr<TAB>,
        c: &mut impl DevicePtrMut<TC>,
    ) -> Result<(), GpuError> {
        let (ab, c_dtype) = (TAB::DTYPE, TC::DTYPE);
        const OP: &str = "gemm";
        let need = [
            (g.m * g.k, a.len(), "A"),
            (g.k * g.n, b.len(), "B"),
            (g.m * g.n, c.len(), "C"),
        ];
        for (expected, got, what) in need {
            if got < expected {
                return Err(GpuError::Shape {
                    op: OP,
                    what,
                    expected,
                    got,
                });
            }
        }
        let (m, n, k) = (
            to_i32(OP, "m", g.m)?,
            to_i32(OP, "n", g.n)?,
            to_i32(OP, "k", g.k)?,
        );
        // Row-major C[m,n] is column-major C^T[n,m] = op(B)^T op(A)^T: swap the operands.
        // A row-major [r, c] buffer read column-major is its transpose with ld = c.
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let ldb = if g.b_trans { k } else { n };
        let lda = if g.a_trans { m } else { k };
        let stream = self.stream();
        let (pa, _ga) = a.device_ptr(stream);
        let (pb, _gb) = b.device_ptr(stream);
        let (pc, _gc) = c.device_ptr_mut(stream);
        let (alpha, beta) = (g.alpha, g.beta);
        // SAFETY: the three pointers come from live device buffers on this context whose
        // element counts were checked above against m·k, k·n and m·n; the leading
        // dimensions describe exactly those row-major shapes; alpha and beta are host f32
        // (the handle's default pointer mode) matching CUBLAS_COMPUTE_32F; the handle is
        // bound to `stream`, the stream the guards above order against.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas().handle(),
                op(g.b_trans),
                op(g.a_trans),
                n,
                m,
                k,
                (&alpha as *const f32).cast::<c_void>(),
                pb as *const c_void,
                ab.cuda(),
                ldb,
                pa as *const c_void,
                ab.cuda(),
                lda,
                (&beta as *const f32).cast::<c_void>(),
                pc as *mut c_void,
                c_dtype.cuda(),
                n,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
        }
        .map_err(GpuError::cublas("gemm_ex"))
    }
}
