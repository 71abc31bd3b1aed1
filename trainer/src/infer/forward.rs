//! The llama forward pass with a KV cache, in f32 (prefill) or Q8_0 weights (decode).
//!
//! Owns: RMSNorm, interleaved-pair RoPE (the GGUF layout of Q/K), grouped-query causal
//! attention over the cache, SwiGLU, the LM head, and the [`KvCache`].
//! Does not own: sampling or stopping (`infer::sampling`, `infer`), nor gradients (the
//! training engineer's CPU reference).
//!
//! Layout decisions:
//! - The cache stores each KV head contiguously (`[n_kv, capacity, head_dim]`), so the
//!   keys and values one head attends to are a plain `[T, head_dim]` matrix that the
//!   GEMM reads in place, with no copy per token.
//! - Prompts are processed in chunks of [`PREFILL_CHUNK`] tokens through the f32 GEMM:
//!   large enough for the GEMM to reach its speed, small enough that the attention
//!   scores (`chunk x T`) and activations stay a few MiB.
//! - Kernel per step size ([`ModelRef`]): steps of fewer than [`Q8_MAX_ROWS`] tokens
//!   (decode) use the Q8_0 matrix-vector kernel when a Q8_0 copy exists (memory-bound:
//!   fewer bytes per weight is faster); larger steps (prefill) use the bf16 GEMM when a
//!   bf16 copy exists (compute-bound: twice f32's arithmetic rate), else f32 GEMM.

use super::qweights::Q8Matrix;
use crate::config::Config;
use crate::cpu::bf16_gemm::Bf16Matrix;
use crate::cpu::matmul::{matmul_nn, matmul_nt};
use crate::weights::Weights;
use rayon::prelude::*;

/// Tokens per prefill GEMM call.
pub const PREFILL_CHUNK: usize = 256;
/// Decode attends heads in parallel from this context length on.
pub const PARALLEL_ATTENTION_MIN_CONTEXT: usize = 512;
/// Below this many rows the Q8_0 kernel is used when available.
pub const Q8_MAX_ROWS: usize = 8;
/// Below this many rows attention scores and outputs are plain loops, not GEMM calls.
/// Why: a decode step makes 2 x 9 heads x 30 layers GEMM calls of one row each, and
/// the GEMM crate's per-call set-up cost more than their arithmetic (about a fifth
/// of decode time at a 300-token context, measured with `perf` on the dev machine).
const DIRECT_ATTENTION_MAX_ROWS: usize = 4;

/// Keys and values of every processed position.
#[derive(Clone, Debug)]
pub struct KvCache {
    cap: usize,
    pub(super) len: usize,
    n_kv: usize,
    hd: usize,
    /// Per layer `[n_kv, cap, hd]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    /// A cache for up to `capacity` positions.
    pub fn new(c: &Config, capacity: usize) -> Self {
        let size = c.n_kv_heads * capacity * c.head_dim();
        KvCache {
            cap: capacity,
            len: 0,
            n_kv: c.n_kv_heads,
            hd: c.head_dim(),
            k: (0..c.n_layers).map(|_| vec![0.0; size]).collect(),
            v: (0..c.n_layers).map(|_| vec![0.0; size]).collect(),
        }
    }
    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Forgets positions from `len` on (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// Writes the keys and values of rows `pos0..` (`k`, `v`: `[n, n_kv * hd]`) of
    /// layer `layer`, head-major.
    pub(super) fn append(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let (hd, kvd) = (self.hd, self.n_kv * self.hd);
        for (r, (kr, vr)) in k.chunks_exact(kvd).zip(v.chunks_exact(kvd)).enumerate() {
            for g in 0..self.n_kv {
                let dst = g * self.cap * hd + (pos0 + r) * hd;
                self.k[layer][dst..dst + hd].copy_from_slice(&kr[g * hd..(g + 1) * hd]);
                self.v[layer][dst..dst + hd].copy_from_slice(&vr[g * hd..(g + 1) * hd]);
            }
        }
    }
    /// Range of KV head `g`'s first `t` positions in a layer buffer.
    fn head_range(&self, g: usize, t: usize) -> std::ops::Range<usize> {
        let start = g * self.cap * self.hd;
        start..start + t * self.hd
    }
}

/// A weight matrix in a kernel-specific format: `out[m, rows] = x[m, cols] W^T`.
pub trait PackedMatrix: Sync + Send + std::fmt::Debug {
    fn apply(&self, x: &[f32], m: usize, out: &mut [f32]);
    fn n_bytes(&self) -> usize;
}

impl PackedMatrix for Q8Matrix {
    fn apply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul(x, m, out)
    }
    fn n_bytes(&self) -> usize {
        Q8Matrix::n_bytes(self)
    }
}

impl PackedMatrix for Bf16Matrix {
    fn apply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul(x, m, out)
    }
    fn n_bytes(&self) -> usize {
        Bf16Matrix::n_bytes(self)
    }
}

/// One layer's matrices in a packed format, fused where they share an input.
#[derive(Clone, Debug)]
pub struct PackedLayer<M> {
    /// `[q_dim + 2*kv_dim, dim]`: Wq, Wk, Wv stacked.
    pub qkv: M,
    pub wo: M,
    /// `[2*ffn_dim, dim]`: gate then up.
    pub gate_up: M,
    pub down: M,
}

/// The whole model in a packed format; `lm_head` only where the format serves it.
#[derive(Clone, Debug)]
pub struct PackedModel<M> {
    pub layers: Vec<PackedLayer<M>>,
    pub lm_head: Option<M>,
}

/// Q8_0 decode weights.
pub type Q8Model = PackedModel<Q8Matrix>;
/// bf16 prefill weights.
pub type Bf16Model = PackedModel<Bf16Matrix>;

fn stack(parts: &[&[f32]]) -> Vec<f32> {
    parts.concat()
}

impl<M: PackedMatrix> PackedModel<M> {
    /// Packs `w` with `pack(matrix, rows, cols)`; `None` when `pack` refuses a shape.
    pub fn pack(
        w: &Weights,
        with_lm_head: bool,
        pack: impl Fn(&[f32], usize, usize) -> Option<M>,
    ) -> Option<Self> {
        let c = &w.config;
        let (d, qd, kv, ff) = (c.dim, c.n_heads * c.head_dim(), c.kv_dim(), c.ffn_dim);
        let layers = w
            .layers
            .iter()
            .map(|l| {
                Some(PackedLayer {
                    qkv: pack(&stack(&[&l.wq, &l.wk, &l.wv]), qd + 2 * kv, d)?,
                    wo: pack(&l.wo, d, qd)?,
                    gate_up: pack(&stack(&[&l.w_gate, &l.w_up]), 2 * ff, d)?,
                    down: pack(&l.w_down, d, ff)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let lm_head = if with_lm_head {
            Some(pack(w.lm_head(), c.vocab_size, d)?)
        } else {
            None
        };
        Some(PackedModel { layers, lm_head })
    }

    pub fn n_bytes(&self) -> usize {
        self.lm_head.as_ref().map_or(0, |h| h.n_bytes())
            + self
                .layers
                .iter()
                .map(|l| l.qkv.n_bytes() + l.wo.n_bytes() + l.gate_up.n_bytes() + l.down.n_bytes())
                .sum::<usize>()
    }
}

impl Q8Model {
    /// Quantizes `w`; `None` when a width is not a multiple of 32.
    pub fn from_weights(w: &Weights) -> Option<Self> {
        Self::pack(w, true, Q8Matrix::from_f32)
    }
}

impl Bf16Model {
    /// Packs `w` for the bf16 GEMM; `None` when the CPU lacks AVX-512 BF16.
    pub fn from_weights(w: &Weights) -> Option<Self> {
        if !crate::cpu::bf16_gemm::available() {
            return None;
        }
        Self::pack(w, false, |m, r, c| Some(Bf16Matrix::from_f32(m, r, c)))
    }
}

/// cos/sin of every (position, pair) for RoPE, computed in f64.
#[derive(Clone, Debug)]
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(c: &Config) -> Self {
        let hd = c.head_dim();
        let half = hd / 2;
        let n = c.max_seq_len * half;
        let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for p in 0..c.max_seq_len {
            for i in 0..half {
                let freq = (c.rope_theta as f64).powf(-((2 * i) as f64) / hd as f64);
                let a = p as f64 * freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    /// Rotates pairs `(2i, 2i+1)` of every head of every row; row `r` is at `pos0 + r`.
    pub(super) fn apply(&self, x: &mut [f32], row_len: usize, pos0: usize) {
        for (r, row) in x.chunks_exact_mut(row_len).enumerate() {
            let base = (pos0 + r) * self.half;
            let (cos, sin) = (
                &self.cos[base..base + self.half],
                &self.sin[base..base + self.half],
            );
            for head in row.chunks_exact_mut(2 * self.half) {
                for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cos[i] - x1 * sin[i];
                    pair[1] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

pub(super) fn rmsnorm(out: &mut [f32], x: &[f32], g: &[f32], eps: f32) {
    for (o, xr) in out.chunks_exact_mut(g.len()).zip(x.chunks_exact(g.len())) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / g.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(xr).zip(g) {
            *o = v * inv * w;
        }
    }
}

/// `gate = silu(gate) * up`, elementwise.
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Which logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// `[n_tokens, vocab]`.
    All,
    /// `[vocab]` of the last token.
    Last,
}

/// Everything the forward reads.
#[derive(Clone, Copy, Debug)]
pub struct ModelRef<'a> {
    pub w: &'a Weights,
    /// Used for steps of fewer than [`Q8_MAX_ROWS`] tokens (decode).
    pub q8: Option<&'a Q8Model>,
    /// Used for steps of at least [`Q8_MAX_ROWS`] tokens (prefill).
    pub bf16: Option<&'a Bf16Model>,
    pub rope: &'a RopeTable,
}

/// Runs `tokens` (ids checked by the caller) at positions `cache.len()..`, appends
/// their keys and values to the cache, and returns logits.
pub fn forward(m: ModelRef<'_>, cache: &mut KvCache, tokens: &[u32], want: LogitsFor) -> Vec<f32> {
    assert!(
        cache.len + tokens.len() <= cache.cap,
        "KV cache overflow (checked by the engine)"
    );
    let vocab = m.w.config.vocab_size;
    let mut logits = Vec::with_capacity(if want == LogitsFor::All {
        tokens.len() * vocab
    } else {
        vocab
    });
    let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last_chunk = i + 1 == chunks.len();
        let rows = match want {
            LogitsFor::All => RowsOut::All,
            LogitsFor::Last if last_chunk => RowsOut::Last,
            LogitsFor::Last => RowsOut::None,
        };
        forward_chunk(m, cache, chunk, rows, &mut logits);
    }
    logits
}

#[derive(Clone, Copy, PartialEq)]
enum RowsOut {
    All,
    Last,
    None,
}

// tidy: long-function: the forward pass of one chunk, layer by layer (norm, QKV, rope, cache
// write, attention, output projection, MLP), then the final norm and the logits of the rows
// asked for, over scratch buffers reused across layers; the order of the steps is the model,
// and a split would pass the scratch set and the cache positions through every piece.
fn forward_chunk(
    m: ModelRef<'_>,
    cache: &mut KvCache,
    tokens: &[u32],
    rows_out: RowsOut,
    logits: &mut Vec<f32>,
) {
    let c = &m.w.config;
    let (d, hd, nh, ff) = (c.dim, c.head_dim(), c.n_heads, c.ffn_dim);
    let (qd, kvd) = (nh * hd, c.kv_dim());
    let n = tokens.len();
    let pos0 = cache.len;
    let total = pos0 + n;
    // The packed layer set for this step's size, if any.
    let layer_set: Option<Vec<[&dyn PackedMatrix; 4]>> = if n < Q8_MAX_ROWS {
        m.q8.map(|q| {
            q.layers
                .iter()
                .map(|l| [&l.qkv as &dyn PackedMatrix, &l.wo, &l.gate_up, &l.down])
                .collect()
        })
    } else {
        m.bf16.map(|q| {
            q.layers
                .iter()
                .map(|l| [&l.qkv as &dyn PackedMatrix, &l.wo, &l.gate_up, &l.down])
                .collect()
        })
    };

    let mut x = Vec::with_capacity(n * d);
    for &t in tokens {
        x.extend_from_slice(&m.w.tok_embeddings[t as usize * d..(t as usize + 1) * d]);
    }
    let mut h = vec![0.0; n * d];
    let mut q = vec![0.0; n * qd];
    let mut k = vec![0.0; n * kvd];
    let mut v = vec![0.0; n * kvd];
    let mut att = vec![0.0; n * qd];
    let mut proj = vec![0.0; n * d];
    let mut gate = vec![0.0; n * ff];
    let mut up = vec![0.0; n * ff];
    let mut fused = Vec::new();

    for (li, l) in m.w.layers.iter().enumerate() {
        let pl = layer_set.as_ref().map(|set| set[li]);
        rmsnorm(&mut h, &x, &l.attn_norm, c.norm_eps);
        match pl {
            Some([qkv, ..]) => {
                fused.resize(n * (qd + 2 * kvd), 0.0);
                qkv.apply(&h, n, &mut fused);
                for (r, row) in fused.chunks_exact(qd + 2 * kvd).enumerate() {
                    q[r * qd..(r + 1) * qd].copy_from_slice(&row[..qd]);
                    k[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
                    v[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
                }
            }
            None => {
                matmul_nt(&mut q, &h, &l.wq, n, d, qd, false);
                matmul_nt(&mut k, &h, &l.wk, n, d, kvd, false);
                matmul_nt(&mut v, &h, &l.wv, n, d, kvd, false);
            }
        }
        m.rope.apply(&mut q, qd, pos0);
        m.rope.apply(&mut k, kvd, pos0);
        cache.append(li, pos0, &k, &v);
        attention(&mut att, &q, cache, li, n, pos0, total, nh);
        match pl {
            Some([_, wo, ..]) => wo.apply(&att, n, &mut proj),
            None => matmul_nt(&mut proj, &att, &l.wo, n, qd, d, false),
        }
        x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);

        rmsnorm(&mut h, &x, &l.ffn_norm, c.norm_eps);
        match pl {
            Some([_, _, gate_up, _]) => {
                fused.resize(n * 2 * ff, 0.0);
                gate_up.apply(&h, n, &mut fused);
                for (r, row) in fused.chunks_exact(2 * ff).enumerate() {
                    gate[r * ff..(r + 1) * ff].copy_from_slice(&row[..ff]);
                    up[r * ff..(r + 1) * ff].copy_from_slice(&row[ff..]);
                }
            }
            None => {
                matmul_nt(&mut gate, &h, &l.w_gate, n, d, ff, false);
                matmul_nt(&mut up, &h, &l.w_up, n, d, ff, false);
            }
        }
        swiglu(&mut gate, &up);
        match pl {
            Some([.., down]) => down.apply(&gate, n, &mut proj),
            None => matmul_nt(&mut proj, &gate, &l.w_down, n, ff, d, false),
        }
        x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
    }
    cache.len = total;

    let (first, rows) = match rows_out {
        RowsOut::None => return,
        RowsOut::Last => (n - 1, 1),
        RowsOut::All => (0, n),
    };
    let mut hn = vec![0.0; rows * d];
    rmsnorm(&mut hn, &x[first * d..], &m.w.final_norm, c.norm_eps);
    let start = logits.len();
    logits.resize(start + rows * c.vocab_size, 0.0);
    // Few rows (decode, or the last prompt row): the Q8_0 head when present.
    match m
        .q8
        .and_then(|q| q.lm_head.as_ref())
        .filter(|_| rows < Q8_MAX_ROWS)
    {
        Some(head) => head.matmul(&hn, rows, &mut logits[start..]),
        None => matmul_nt(
            &mut logits[start..],
            &hn,
            m.w.lm_head(),
            rows,
            d,
            c.vocab_size,
            false,
        ),
    }
}

/// Causal grouped-query attention of `n` new rows (positions `pos0..`) over the
/// cache's first `total` positions; `att` is `[n, n_heads*hd]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    att: &mut [f32],
    q: &[f32],
    cache: &KvCache,
    layer: usize,
    n: usize,
    pos0: usize,
    total: usize,
    nh: usize,
) {
    let hd = cache.hd;
    let group = nh / cache.n_kv;
    let qd = nh * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    // Per-thread scratch (the query rows of one head and its scores), reused across
    // heads: fresh `n x total` buffers per head made page zeroing a visible cost.
    let head = |h: usize, scratch: &mut (Vec<f32>, Vec<f32>), o: &mut [f32]| {
        let (qh, s) = scratch;
        let g = h / group;
        let kg = &cache.k[layer][cache.head_range(g, total)];
        let vg = &cache.v[layer][cache.head_range(g, total)];
        qh.resize(n * hd, 0.0);
        for r in 0..n {
            qh[r * hd..(r + 1) * hd].copy_from_slice(&q[r * qd + h * hd..r * qd + (h + 1) * hd]);
        }
        s.resize(n * total, 0.0);
        if n < DIRECT_ATTENTION_MAX_ROWS {
            row_dots(s, qh, kg, n, hd, total);
        } else {
            matmul_nt(s, qh, kg, n, hd, total, false);
        }
        for (r, row) in s.chunks_exact_mut(total).enumerate() {
            let visible = pos0 + r + 1;
            let (row, masked) = row.split_at_mut(visible);
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b * scale));
            let mut sum = 0.0;
            for x in row.iter_mut() {
                *x = (*x * scale - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            masked.fill(0.0);
        }
        if n < DIRECT_ATTENTION_MAX_ROWS {
            weighted_rows(o, s, vg, n, hd, total);
        } else {
            matmul_nn(o, s, vg, n, total, hd, false);
        }
    };
    // Head-major outputs `[nh, n, hd]`.
    let mut outs = vec![0.0f32; nh * n * hd];
    // Few rows (decode) over a long context: heads in parallel, each GEMM
    // single-threaded. Short contexts: heads in turn on this thread (the work, ~T*64*9
    // multiply-adds, is smaller than a fork/join, which also stalls when the machine is
    // busy). Many rows (prefill): heads in turn, each GEMM threaded.
    if n < Q8_MAX_ROWS && total >= PARALLEL_ATTENTION_MIN_CONTEXT {
        outs.par_chunks_mut(n * hd).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |scratch, (h, o)| head(h, scratch, o),
        );
    } else {
        let mut scratch = (Vec::new(), Vec::new());
        for (h, o) in outs.chunks_mut(n * hd).enumerate() {
            head(h, &mut scratch, o);
        }
    }
    for (h, o) in outs.chunks(n * hd).enumerate() {
        for r in 0..n {
            att[r * qd + h * hd..r * qd + (h + 1) * hd].copy_from_slice(&o[r * hd..(r + 1) * hd]);
        }
    }
}

/// `s[r, j] = q[r] . k[j]` for the `n` rows of `q` (`[n, hd]`) and the first `t` rows
/// of `k` (`[t, hd]`); `s` is `[n, t]`. The one-row attention of a decode step.
fn row_dots(s: &mut [f32], q: &[f32], k: &[f32], n: usize, hd: usize, t: usize) {
    for r in 0..n {
        let qr = &q[r * hd..(r + 1) * hd];
        for (j, out) in s[r * t..(r + 1) * t].iter_mut().enumerate() {
            *out = lane_dot(qr, &k[j * hd..(j + 1) * hd]);
        }
    }
}

/// `o[r] = sum_j p[r, j] v[j]` for `p` `[n, t]` and `v` `[t, hd]`; `o` is `[n, hd]`.
fn weighted_rows(o: &mut [f32], p: &[f32], v: &[f32], n: usize, hd: usize, t: usize) {
    for r in 0..n {
        let or = &mut o[r * hd..(r + 1) * hd];
        or.fill(0.0);
        for (j, &w) in p[r * t..(r + 1) * t].iter().enumerate() {
            if w != 0.0 {
                for (a, &b) in or.iter_mut().zip(&v[j * hd..(j + 1) * hd]) {
                    *a += w * b;
                }
            }
        }
    }
}

/// A dot product in eight independent lanes (so the compiler vectorizes it without
/// reordering a single sum), then the lanes added.
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_attention_loops_match_the_gemm() {
        let (n, hd, t) = (2, 20, 37);
        let val = |i: usize| ((i * 7919) % 113) as f32 / 50.0 - 1.1;
        let q: Vec<f32> = (0..n * hd).map(val).collect();
        let k: Vec<f32> = (0..t * hd).map(|i| val(i + 3)).collect();
        let (mut direct, mut gemm) = (vec![0.0; n * t], vec![0.0; n * t]);
        row_dots(&mut direct, &q, &k, n, hd, t);
        matmul_nt(&mut gemm, &q, &k, n, hd, t, false);
        for (a, b) in direct.iter().zip(&gemm) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let (mut direct, mut gemm) = (vec![1.0; n * hd], vec![0.0; n * hd]);
        weighted_rows(&mut direct, &gemm_input(n, t), &k, n, hd, t);
        matmul_nn(&mut gemm, &gemm_input(n, t), &k, n, t, hd, false);
        for (a, b) in direct.iter().zip(&gemm) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    /// Attention-like weights with zeros (masked positions) in them.
    fn gemm_input(n: usize, t: usize) -> Vec<f32> {
        (0..n * t)
            .map(|i| {
                if i % 5 == 0 {
                    0.0
                } else {
                    (i % 11) as f32 / 11.0
                }
            })
            .collect()
    }
}
