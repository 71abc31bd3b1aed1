//! Launch code for `kernels/model.cu`: the llama block's element-wise and row-wise ops on
//! f32 device buffers (embedding, RMSNorm, interleaved RoPE, SwiGLU, residual add, casts,
//! the LM head's row gather and scatter). RMSNorm and SwiGLU may write their output as
//! bf16 ([`ActElem`]): that output is a GEMM operand in the Bf16 mode. The attention
//! launches are in `attention.rs` ([`AttnShape`] is re-exported here).
//!
//! CPU twins: `crate::train::{embedding, norm, rope, swiglu}` (same names).
//! Does not own: the order of ops in the model or the GEMMs (`blas.rs`).

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use half::bf16;

use super::blas::GemmElem;
use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len, to_i32};
use super::nvtx::Range;

pub use super::attention::AttnShape;

/// Grid-stride launch over `n` elements: 256 threads, at most 65,535·4 blocks (each
/// thread loops), enough to fill any current GPU.
fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535 * 4) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The element type an op may write its (GEMM-operand) output in: f32, or bf16 rounded
/// once from the f32 result. Picks the kernel variant, so a buffer is never written with
/// the wrong element size.
pub trait ActElem: GemmElem + DeviceRepr + ValidAsZeroBits {
    const RMSNORM: Kernel;
    const SWIGLU: Kernel;
}
impl ActElem for f32 {
    const RMSNORM: Kernel = Kernel::RmsnormForward;
    const SWIGLU: Kernel = Kernel::SwigluForward;
}
impl ActElem for bf16 {
    const RMSNORM: Kernel = Kernel::RmsnormForwardBf16;
    const SWIGLU: Kernel = Kernel::SwigluForwardBf16;
}

/// Distinct row indices on the device, each checked `< of` (the row count of the buffer
/// they were checked against): what the LM head's gather and scatter share.
#[derive(Debug)]
pub struct RowIndex {
    rows: CudaSlice<u32>,
    of: usize,
}

impl Gpu {
    /// f32 → bf16 (round to nearest even, as `half::bf16::from_f32`).
    pub fn cast_f32_to_bf16(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<bf16>,
    ) -> Result<(), GpuError> {
        check_len("cast_f32_to_bf16", "y", x.len(), y.len())?;
        let n = x.len() as i64;
        let f = self.function(Kernel::CastF32ToBf16)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(x).arg(&mut *y).arg(&n);
        // SAFETY: (const float*, u16*, i64); grid-stride i < n = x.len() = y.len().
        unsafe { b.launch(elementwise(x.len())) }
            .map_err(GpuError::driver("launch cast_f32_to_bf16"))?;
        Ok(())
    }

    /// bf16 → f32.
    pub fn cast_bf16_to_f32(
        &self,
        x: &CudaSlice<bf16>,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        check_len("cast_bf16_to_f32", "y", x.len(), y.len())?;
        let n = x.len() as i64;
        let f = self.function(Kernel::CastBf16ToF32)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(x).arg(&mut *y).arg(&n);
        // SAFETY: (const u16*, float*, i64); grid-stride i < n = x.len() = y.len().
        unsafe { b.launch(elementwise(x.len())) }
            .map_err(GpuError::driver("launch cast_bf16_to_f32"))?;
        Ok(())
    }

    /// `crate::train::embedding::embedding`: `out[t] = table[tokens[t]]`.
    pub fn embedding(
        &self,
        table: &CudaSlice<f32>,
        dim: usize,
        tokens: &CudaSlice<u32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "embedding";
        if dim == 0 || !table.len().is_multiple_of(dim) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("table of {} is not [vocab, {dim}]", table.len()),
            });
        }
        let t = tokens.len();
        check_len(OP, "out", t * dim, out.len())?;
        if t == 0 {
            return Ok(());
        }
        let (t_i, d_i, v_i) = (
            to_i32(OP, "T", t)?,
            to_i32(OP, "dim", dim)?,
            to_i32(OP, "vocab", table.len() / dim)?,
        );
        let f = self.function(Kernel::EmbeddingForward)?;
        let _r = Range::new(OP);
        let cfg = LaunchConfig {
            grid_dim: (t_i as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(table)
            .arg(tokens)
            .arg(&t_i)
            .arg(&d_i)
            .arg(&v_i)
            .arg(&mut *out);
        // SAFETY: (const float*, const u32*, int ×3, float*); block t < T reads tokens[t]
        // and, when tokens[t] < vocab, table[tok·dim + d] (table = vocab·dim); writes
        // out[t·dim + d] < T·dim = out.len().
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch embedding"))?;
        Ok(())
    }

    /// `crate::train::embedding::embedding_backward`: `dtable[tokens[t]] += dout[t]`, in
    /// position order (deterministic).
    pub fn embedding_backward(
        &self,
        dtable: &mut CudaSlice<f32>,
        dim: usize,
        tokens: &CudaSlice<u32>,
        dout: &CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "embedding_backward";
        if dim == 0 || !dtable.len().is_multiple_of(dim) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("dtable of {} is not [vocab, {dim}]", dtable.len()),
            });
        }
        let t = tokens.len();
        check_len(OP, "dout", t * dim, dout.len())?;
        let (t_i, d_i, v_i) = (
            to_i32(OP, "T", t)?,
            to_i32(OP, "dim", dim)?,
            to_i32(OP, "vocab", dtable.len() / dim)?,
        );
        let f = self.function(Kernel::EmbeddingBackward)?;
        let _r = Range::new(OP);
        let cfg = LaunchConfig {
            grid_dim: (dim.div_ceil(128) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(&mut *dtable)
            .arg(tokens)
            .arg(&t_i)
            .arg(&d_i)
            .arg(&v_i)
            .arg(dout);
        // SAFETY: (float*, const u32*, int ×3, const float*); thread d < dim loops t < T:
        // reads dout[t·dim + d] (T·dim), writes dtable[tok·dim + d] only for tok < vocab.
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch embedding_backward"))?;
        Ok(())
    }

    /// `crate::train::norm::rms_norm`: fills `y` (`[T, dim]`, f32 or bf16) and `rstd`
    /// (`[T]`, always f32).
    pub fn rms_norm<Y: ActElem>(
        &self,
        x: &CudaSlice<f32>,
        gain: &CudaSlice<f32>,
        eps: f32,
        y: &mut CudaSlice<Y>,
        rstd: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "rms_norm";
        let dim = gain.len();
        if dim == 0 || !x.len().is_multiple_of(dim) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("x of {} is not [T, {dim}]", x.len()),
            });
        }
        let t = x.len() / dim;
        check_len(OP, "y", x.len(), y.len())?;
        check_len(OP, "rstd", t, rstd.len())?;
        if t == 0 {
            return Ok(());
        }
        let (t_i, d_i) = (to_i32(OP, "T", t)?, to_i32(OP, "dim", dim)?);
        let f = self.function(Y::RMSNORM)?;
        let _r = Range::new(OP);
        // 256 threads: a power of two ≤ 1024, as block_sum requires.
        let cfg = LaunchConfig {
            grid_dim: (t_i as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(x)
            .arg(gain)
            .arg(&t_i)
            .arg(&d_i)
            .arg(&eps)
            .arg(&mut *y)
            .arg(&mut *rstd);
        // SAFETY: (const float* ×2, int, int, float, Y*, float*) with Y the kernel's output
        // type (ActElem pairs them); block t < T touches row t of x and y (T·dim each),
        // gain[d < dim], rstd[t].
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch rms_norm"))?;
        Ok(())
    }

    /// `crate::train::norm::rms_norm_backward`: writes `dx`, adds into `dgain`.
    pub fn rms_norm_backward(
        &self,
        dy: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        gain: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        dgain: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "rms_norm_backward";
        let dim = gain.len();
        if dim == 0 || !x.len().is_multiple_of(dim) {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!("x of {} is not [T, {dim}]", x.len()),
            });
        }
        let t = x.len() / dim;
        check_len(OP, "dy", x.len(), dy.len())?;
        check_len(OP, "dx", x.len(), dx.len())?;
        check_len(OP, "rstd", t, rstd.len())?;
        check_len(OP, "dgain", dim, dgain.len())?;
        let (t_i, d_i) = (to_i32(OP, "T", t)?, to_i32(OP, "dim", dim)?);
        let f = self.function(Kernel::RmsnormBackward)?;
        let _r = Range::new(OP);
        let col_blocks = dim.div_ceil(256);
        let cfg = LaunchConfig {
            grid_dim: ((t + col_blocks) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(dy)
            .arg(x)
            .arg(gain)
            .arg(rstd)
            .arg(&t_i)
            .arg(&d_i)
            .arg(&mut *dx)
            .arg(&mut *dgain);
        // SAFETY: (const float* ×4, int, int, float* ×2); blocks < T touch row t of dy, x, dx
        // and rstd[t]; the ceil(dim/256) column blocks touch column d < dim of dy, x and
        // dgain[d]; T·dim and dim were checked above.
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch rms_norm_backward"))?;
        Ok(())
    }

    /// `crate::train::rope::rope` (sign +1) or `rope_backward` (-1), in place, positions
    /// `pos0 .. pos0 + T` (pos0 > 0 for generation with a KV cache).
    pub fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        heads: usize,
        head_dim: usize,
        theta: f32,
        pos0: usize,
        backward: bool,
    ) -> Result<(), GpuError> {
        const OP: &str = "rope";
        let width = heads * head_dim;
        if head_dim == 0
            || !head_dim.is_multiple_of(2)
            || width == 0
            || !x.len().is_multiple_of(width)
        {
            return Err(GpuError::Invalid {
                op: OP,
                detail: format!(
                    "x of {} is not [T, {heads} × {head_dim}] with even head_dim",
                    x.len()
                ),
            });
        }
        let t = x.len() / width;
        let n = t * heads * head_dim / 2;
        if n == 0 {
            return Ok(());
        }
        let (t_i, h_i, hd_i, p_i) = (
            to_i32(OP, "T", t)?,
            to_i32(OP, "heads", heads)?,
            to_i32(OP, "hd", head_dim)?,
            to_i32(OP, "pos0", pos0)?,
        );
        to_i32(OP, "pairs", n)?;
        let f = self.function(if backward {
            Kernel::RopeBackward
        } else {
            Kernel::RopeForward
        })?;
        let _r = Range::new(if backward { "rope_backward" } else { "rope" });
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(&mut *x)
            .arg(&t_i)
            .arg(&h_i)
            .arg(&hd_i)
            .arg(&theta)
            .arg(&p_i);
        // SAFETY: (float*, int ×3, float, int); thread idx < T·heads·hd/2 touches
        // x[(idx / half)·hd + 2(idx % half) + {0,1}] < T·heads·hd = x.len().
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch rope"))?;
        Ok(())
    }

    /// `crate::train::swiglu::swiglu`: `act = silu(gate) ∘ up` (f32 or bf16 `act`).
    pub fn swiglu<A: ActElem>(
        &self,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        act: &mut CudaSlice<A>,
    ) -> Result<(), GpuError> {
        check_len("swiglu", "up", gate.len(), up.len())?;
        check_len("swiglu", "act", gate.len(), act.len())?;
        let n = gate.len() as i64;
        let f = self.function(A::SWIGLU)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(gate).arg(up).arg(&mut *act).arg(&n);
        // SAFETY: (const float* ×2, A*, i64) with A the kernel's output type; grid-stride
        // over n, all three of length n.
        unsafe { b.launch(elementwise(gate.len())) }.map_err(GpuError::driver("launch swiglu"))?;
        Ok(())
    }

    /// `crate::train::swiglu::swiglu_backward`: fills `dgate` and `dup`.
    pub fn swiglu_backward(
        &self,
        dact: &CudaSlice<f32>,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        dgate: &mut CudaSlice<f32>,
        dup: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let n = gate.len();
        for (what, len) in [
            ("dact", dact.len()),
            ("up", up.len()),
            ("dgate", dgate.len()),
            ("dup", dup.len()),
        ] {
            check_len("swiglu_backward", what, n, len)?;
        }
        let n_i = n as i64;
        let f = self.function(Kernel::SwigluBackward)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(dact)
            .arg(gate)
            .arg(up)
            .arg(&mut *dgate)
            .arg(&mut *dup)
            .arg(&n_i);
        // SAFETY: (const float* ×3, float* ×2, i64); grid-stride over n, all five of length n.
        unsafe { b.launch(elementwise(n)) }.map_err(GpuError::driver("launch swiglu_backward"))?;
        Ok(())
    }

    /// The residual `x += y`.
    pub fn add_in_place(&self, x: &mut CudaSlice<f32>, y: &CudaSlice<f32>) -> Result<(), GpuError> {
        check_len("add_in_place", "y", x.len(), y.len())?;
        let n = x.len() as i64;
        let cfg = elementwise(x.len());
        let f = self.function(Kernel::AddInPlace)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(&mut *x).arg(y).arg(&n);
        // SAFETY: (float*, const float*, i64); grid-stride over n = x.len() = y.len().
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch add_in_place"))?;
        Ok(())
    }

    /// `out[i] = bf16(x[rows[i]])` for the `[T, dim]` f32 `x`: the LM head's scoring rows
    /// as its bf16 operand. Every row index must be `< T` (checked on the host first).
    pub fn gather_rows_bf16(
        &self,
        x: &CudaSlice<f32>,
        dim: usize,
        rows: &[u32],
        out: &mut CudaSlice<bf16>,
    ) -> Result<RowIndex, GpuError> {
        const OP: &str = "gather_rows_bf16";
        let idx = self.row_index(OP, x.len(), dim, rows)?;
        check_len(OP, "out", rows.len() * dim, out.len())?;
        if rows.is_empty() {
            return Ok(idx);
        }
        let (n_i, d_i) = (to_i32(OP, "rows", rows.len())?, to_i32(OP, "dim", dim)?);
        let f = self.function(Kernel::GatherRowsBf16)?;
        let cfg = LaunchConfig {
            grid_dim: (n_i as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(x).arg(&idx.rows).arg(&n_i).arg(&d_i).arg(&mut *out);
        // SAFETY: (const float*, const u32*, int, int, u16*); block i < n reads rows[i]
        // (n entries) and row rows[i] < T of x (checked by row_index), writes row i of out
        // (n·dim, checked).
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch gather_rows_bf16"))?;
        Ok(idx)
    }

    /// `dx[rows[i]] += g[i]` for the `[T, dim]` f32 `dx`, with `rows` the index that
    /// [`Gpu::gather_rows_bf16`] returned (distinct rows, each `< T`).
    pub fn scatter_rows_add(
        &self,
        g: &CudaSlice<f32>,
        rows: &RowIndex,
        dim: usize,
        dx: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "scatter_rows_add";
        let n = rows.rows.len();
        check_len(OP, "g", n * dim, g.len())?;
        check_len(OP, "dx", rows.of * dim, dx.len())?;
        if n == 0 {
            return Ok(());
        }
        let (n_i, d_i) = (to_i32(OP, "rows", n)?, to_i32(OP, "dim", dim)?);
        let f = self.function(Kernel::ScatterRowsAdd)?;
        let cfg = LaunchConfig {
            grid_dim: (n_i as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(&f);
        b.arg(g).arg(&rows.rows).arg(&n_i).arg(&d_i).arg(&mut *dx);
        // SAFETY: (const float*, const u32*, int, int, float*); block i < n reads row i of g
        // (n·dim, checked) and writes row rows[i] < `of` of dx (`of`·dim elements,
        // checked); RowIndex's constructor checked every index < `of` and all distinct, so
        // no two blocks write the same element.
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch scatter_rows_add"))?;
        Ok(())
    }

    /// Uploads `rows` after checking each is a row of a `[len / dim, dim]` buffer and no
    /// row appears twice (the scatter writes each row from one block, without atomics).
    fn row_index(
        &self,
        op: &'static str,
        len: usize,
        dim: usize,
        rows: &[u32],
    ) -> Result<RowIndex, GpuError> {
        if dim == 0 || !len.is_multiple_of(dim) {
            return Err(GpuError::Invalid {
                op,
                detail: format!("buffer of {len} is not [T, {dim}]"),
            });
        }
        let t = len / dim;
        let mut seen = vec![false; t];
        for &r in rows {
            match seen.get_mut(r as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => {
                    return Err(GpuError::Invalid {
                        op,
                        detail: format!("row {r} given twice"),
                    });
                }
                None => {
                    return Err(GpuError::Invalid {
                        op,
                        detail: format!("row {r} outside 0..{t}"),
                    });
                }
            }
        }
        Ok(RowIndex {
            rows: self.upload(rows)?,
            of: t,
        })
    }
}
