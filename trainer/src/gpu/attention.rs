//! Launch code for `kernels/attention.cu`: tiled causal grouped-query attention forward
//! (also with a query offset over a KV cache, for decoding) and backward, on f32 buffers;
//! the `[T, T]` score matrix never exists.
//!
//! CPU twin: `crate::train::attention` (same names). Does not own: the projections around
//! it (`model.rs`) or the KV cache (`generate.rs`).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::compile::Kernel;
use super::context::Gpu;
use super::error::{GpuError, check_len, to_i32};
use super::nvtx::Range;

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
        if self.head_dim > MAX_HEAD_DIM {
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
/// Threads per attention block (one query or key row each).
pub const ATTENTION_THREADS: u32 = ATT_ROWS as u32;
/// The largest head dimension the attention kernels take: every one stays under the
/// 48 KiB of dynamic shared memory a block gets without the opt-in attribute.
pub const MAX_HEAD_DIM: usize = 128;

/// Bytes of dynamic shared memory an attention kernel's block uses at `head_dim`, as the
/// kernel lays it out (0 for a kernel without any). The launches and the ptxas resource
/// check both read it.
pub fn attention_shared_bytes(k: Kernel, head_dim: usize) -> usize {
    match k {
        // Accumulators [32][hd+1] and a K and a V tile [16][hd].
        Kernel::AttentionForward | Kernel::AttentionBackwardDq => {
            (ATT_ROWS * (head_dim + 1) + 2 * ATT_TILE * head_dim) * 4
        }
        // dk and dv accumulators [32][hd+1], Q and dO tiles [8][hd], lse and D [8].
        Kernel::AttentionBackward => {
            (2 * ATT_ROWS * (head_dim + 1) + 2 * ATT_QTILE * head_dim + 2 * ATT_QTILE) * 4
        }
        _ => 0,
    }
}

impl Gpu {
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
        let smem = attention_shared_bytes(Kernel::AttentionForward, shape.head_dim);
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
            let smem = attention_shared_bytes(Kernel::AttentionBackwardDq, shape.head_dim);
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
            let smem = attention_shared_bytes(Kernel::AttentionBackward, shape.head_dim);
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
