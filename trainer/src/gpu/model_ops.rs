//! Launch code for `kernels/model.cu` and `kernels/attention.cu`: the llama block's ops on
//! f32 device buffers (embedding, RMSNorm, interleaved RoPE, SwiGLU, residual add, casts,
//! and tiled causal GQA attention forward and backward).
//!
//! CPU twins: `crate::train::{embedding, norm, rope, swiglu, attention}` (same names).
//! Does not own: the order of ops in the model or the GEMMs (`blas.rs`).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;

use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len, to_i32};
use super::nvtx::Range;

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

/// Shape of one attention call (mirrors `crate::train::attention::AttentionShape`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub seq: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn check(&self, op: &'static str) -> Result<(), GpuError> {
        if self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
            || self.head_dim == 0
        {
            return Err(GpuError::Invalid {
                op,
                detail: format!("bad head layout {self:?}"),
            });
        }
        // Shared memory: accumulators [32][hd+1] (two for dk/dv) plus tiles; hd ≤ 128 keeps
        // every attention kernel under the 48 KiB a block gets without opting in.
        if self.head_dim > 128 {
            return Err(GpuError::Invalid {
                op,
                detail: format!("head_dim {} > 128", self.head_dim),
            });
        }
        Ok(())
    }
    fn q_len(&self) -> usize {
        self.seq * self.n_heads * self.head_dim
    }
    fn kv_len(&self) -> usize {
        self.seq * self.n_kv_heads * self.head_dim
    }
}

/// Rows per attention block and tile sizes: must match `ROWS`, `TILE`, `QTILE` in
/// kernels/attention.cu.
const ATT_ROWS: usize = 32;
const ATT_TILE: usize = 16;
const ATT_QTILE: usize = 8;

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

    /// `crate::train::norm::rms_norm`: fills `y` (`[T, dim]`) and `rstd` (`[T]`).
    pub fn rms_norm(
        &self,
        x: &CudaSlice<f32>,
        gain: &CudaSlice<f32>,
        eps: f32,
        y: &mut CudaSlice<f32>,
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
        let f = self.function(Kernel::RmsnormForward)?;
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
        // SAFETY: (const float* ×2, int, int, float, float* ×2); block t < T touches row t of
        // x and y (T·dim each), gain[d < dim], rstd[t].
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

    /// `crate::train::swiglu::swiglu`: `act = silu(gate) ∘ up`.
    pub fn swiglu(
        &self,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        act: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        check_len("swiglu", "up", gate.len(), up.len())?;
        check_len("swiglu", "act", gate.len(), act.len())?;
        let n = gate.len() as i64;
        let f = self.function(Kernel::SwigluForward)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(gate).arg(up).arg(&mut *act).arg(&n);
        // SAFETY: (const float* ×2, float*, i64); grid-stride over n, all three of length n.
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

    /// `crate::train::attention::attention`: fills `out` (`[T, nh·hd]`) and `lse`
    /// (`[nh, T]`). Causal, grouped-query; the `[T, T]` scores never exist.
    pub fn attention(
        &self,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        shape: AttnShape,
        out: &mut CudaSlice<f32>,
        lse: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        check_len("attention", "k", shape.kv_len(), k.len())?;
        check_len("attention", "v", shape.kv_len(), v.len())?;
        self.attention_at(q, k, v, shape, 0, out, lse)
    }

    /// Attention of `shape.seq` query rows at positions `q0 ..` over the first
    /// `q0 + seq` rows of `k` and `v` (a KV cache of any capacity ≥ that): the decode
    /// path of generation. `q0 = 0` with `k`, `v` of exactly `seq` rows is `attention`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_at(
        &self,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        shape: AttnShape,
        q0: usize,
        out: &mut CudaSlice<f32>,
        lse: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "attention";
        shape.check(OP)?;
        let keys = (q0 + shape.seq) * shape.n_kv_heads * shape.head_dim;
        check_len(OP, "q", shape.q_len(), q.len())?;
        if k.len() < keys || v.len() < keys {
            return Err(GpuError::Shape {
                op: OP,
                what: "k/v rows (q0 + seq)",
                expected: keys,
                got: k.len().min(v.len()),
            });
        }
        check_len(OP, "out", shape.q_len(), out.len())?;
        check_len(OP, "lse", shape.n_heads * shape.seq, lse.len())?;
        if shape.seq == 0 {
            return Ok(());
        }
        let [t, nh, nkv, hd] = self.attn_ints(OP, &shape)?;
        let q0_i = to_i32(OP, "q0", q0)?;
        to_i32(OP, "keys", keys)?;
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        let smem = (ATT_ROWS * (shape.head_dim + 1) + 2 * ATT_TILE * shape.head_dim) * 4;
        let cfg = LaunchConfig {
            grid_dim: (shape.seq.div_ceil(ATT_ROWS) as u32, shape.n_heads as u32, 1),
            block_dim: (ATT_ROWS as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        let f = self.function(Kernel::AttentionForward)?;
        let _r = Range::new(OP);
        let mut b = self.stream().launch_builder(&f);
        b.arg(q)
            .arg(k)
            .arg(v)
            .arg(&t)
            .arg(&q0_i)
            .arg(&nh)
            .arg(&nkv)
            .arg(&hd)
            .arg(&scale);
        b.arg(&mut *out).arg(&mut *lse);
        // SAFETY: (const float* ×3, int ×5, float, float* ×2); block (x, h) handles rows
        // i = 32x + tid < T of head h < nh, reading q/out rows within T·nh·hd and k/v rows
        // j ≤ q0 + i < q0 + T of kv head h / (nh/nkv), within (q0 + T)·nkv·hd ≤ k.len(),
        // v.len() (checked); lse[h·T + i] < nh·T; dynamic shared memory = 32·(hd+1) +
        // 2·16·hd floats as the kernel lays it out, ≤ 48 KiB for hd ≤ 128 (checked).
        unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch attention"))?;
        Ok(())
    }

    /// `crate::train::attention::attention_backward`: fills `dq`, `dk`, `dv` from the
    /// upstream `dout`, the forward's `out` and `lse`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        dout: &CudaSlice<f32>,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        out: &CudaSlice<f32>,
        lse: &CudaSlice<f32>,
        shape: AttnShape,
        dq: &mut CudaSlice<f32>,
        dk: &mut CudaSlice<f32>,
        dv: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        const OP: &str = "attention_backward";
        shape.check(OP)?;
        for (what, want, got) in [
            ("dout", shape.q_len(), dout.len()),
            ("q", shape.q_len(), q.len()),
            ("out", shape.q_len(), out.len()),
            ("dq", shape.q_len(), dq.len()),
            ("k", shape.kv_len(), k.len()),
            ("v", shape.kv_len(), v.len()),
            ("dk", shape.kv_len(), dk.len()),
            ("dv", shape.kv_len(), dv.len()),
            ("lse", shape.n_heads * shape.seq, lse.len()),
        ] {
            check_len(OP, what, want, got)?;
        }
        if shape.seq == 0 {
            return Ok(());
        }
        let [t, nh, nkv, hd] = self.attn_ints(OP, &shape)?;
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        let _r = Range::new(OP);
        let mut dd = self.zeros::<f32>(shape.n_heads * shape.seq)?;
        {
            let f = self.function(Kernel::AttentionBackwardPreprocess)?;
            let n = shape.seq * shape.n_heads;
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.stream().launch_builder(&f);
            b.arg(dout).arg(out).arg(&t).arg(&nh).arg(&hd).arg(&mut dd);
            // SAFETY: (const float* ×2, int ×3, float*); thread idx < T·nh reads row
            // (idx / nh, head idx % nh) of dout and out (T·nh·hd) and writes D[h·T + i].
            unsafe { b.launch(cfg) }
                .map_err(GpuError::driver("launch attention_backward_preprocess"))?;
        }
        {
            let f = self.function(Kernel::AttentionBackwardDq)?;
            let smem = (ATT_ROWS * (shape.head_dim + 1) + 2 * ATT_TILE * shape.head_dim) * 4;
            let cfg = LaunchConfig {
                grid_dim: (shape.seq.div_ceil(ATT_ROWS) as u32, shape.n_heads as u32, 1),
                block_dim: (ATT_ROWS as u32, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = self.stream().launch_builder(&f);
            b.arg(q).arg(k).arg(v).arg(dout).arg(lse).arg(&dd);
            b.arg(&t)
                .arg(&nh)
                .arg(&nkv)
                .arg(&hd)
                .arg(&scale)
                .arg(&mut *dq);
            // SAFETY: (const float* ×6, int ×4, float, float*); as the forward: rows i < T
            // of head h < nh, keys j ≤ i, lse/D[h·T + i]; smem as laid out by the kernel.
            unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch attention_backward_dq"))?;
        }
        {
            let f = self.function(Kernel::AttentionBackward)?;
            let smem = (2 * ATT_ROWS * (shape.head_dim + 1)
                + 2 * ATT_QTILE * shape.head_dim
                + 2 * ATT_QTILE)
                * 4;
            let cfg = LaunchConfig {
                grid_dim: (
                    shape.seq.div_ceil(ATT_ROWS) as u32,
                    shape.n_kv_heads as u32,
                    1,
                ),
                block_dim: (ATT_ROWS as u32, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = self.stream().launch_builder(&f);
            b.arg(q).arg(k).arg(v).arg(dout).arg(lse).arg(&dd);
            b.arg(&t)
                .arg(&nh)
                .arg(&nkv)
                .arg(&hd)
                .arg(&scale)
                .arg(&mut *dk)
                .arg(&mut *dv);
            // SAFETY: (const float* ×6, int ×4, float, float* ×2); block (x, g) handles key
            // rows j = 32x + tid < T of kv head g < nkv, query rows i in [j, T) of the
            // group's heads; smem = 2·32·(hd+1) + 2·8·hd + 2·8 floats as laid out (≤ 41 KiB
            // for hd ≤ 128).
            unsafe { b.launch(cfg) }.map_err(GpuError::driver("launch attention_backward"))?;
        }
        Ok(())
    }

    fn attn_ints(&self, op: &'static str, s: &AttnShape) -> Result<[i32; 4], GpuError> {
        to_i32(op, "T·nh·hd", s.q_len())?;
        Ok([
            to_i32(op, "T", s.seq)?,
            to_i32(op, "nh", s.n_heads)?,
            to_i32(op, "nkv", s.n_kv_heads)?,
            to_i32(op, "hd", s.head_dim)?,
        ])
    }
}
