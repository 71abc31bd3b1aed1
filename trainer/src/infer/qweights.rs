//! Q8_0 weight matrices and their SIMD matrix-vector products: the decode path.
//!
//! Owns: converting an f32 `[rows, cols]` matrix into Q8_0 blocks (32 weights, one
//! f32 scale; llama.cpp's symmetric scheme) and `y = W x` over them with AVX-512F or
//! AVX2/FMA (runtime-detected; a scalar loop elsewhere), threaded over output rows,
//! each weight row read once for every input row of the call (the batched decode of
//! several sequences), and batch-invariant (an input's outputs are bit-for-bit the
//! same whatever else shares the call).
//! Does not own: the f32 master weights (`crate::weights`) or prefill (which uses the
//! f32 GEMM of `crate::cpu::matmul`).
//!
//! Why Q8_0 for decode: one token reads every weight once, so decode speed is set by
//! bytes per weight: f32 is 4 bytes, Q8_0 1.125. Only the weights are rounded; the
//! activations stay f32 (llama.cpp also quantizes them to 8 bits for integer dot
//! products: faster, but a second source of error we did not need for the speed
//! target). Measured on SmolLM2-135M: decode logits differ from the f32 forward by at
//! most 1.1 (logits up to ~35), the greedy token's log-probability by at most 0.11
//! (test `smollm2_answers_and_decode_tracks_prefill`).

use crate::gguf::quant::quantize_q8_block;
use rayon::prelude::*;

/// Elements per block.
pub const QK: usize = 32;

/// A row-major `[rows, cols]` matrix in Q8_0 blocks (`cols % 32 == 0`).
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `[rows * cols / 32]`, one per block.
    scales: Vec<f32>,
    /// `[rows * cols]`.
    qs: Vec<i8>,
}

impl Q8Matrix {
    /// Quantizes `w` (`[rows, cols]`); `None` when `cols` is not a multiple of 32.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || w.len() != rows * cols {
            return None;
        }
        let n_blocks = w.len() / QK;
        let mut scales = vec![0.0f32; n_blocks];
        let mut qs = vec![0i8; w.len()];
        scales
            .par_iter_mut()
            .zip(qs.par_chunks_mut(QK))
            .zip(w.par_chunks(QK))
            .for_each(|((s, q), block)| {
                let (d, codes) = quantize_q8_block(block);
                *s = d;
                q.copy_from_slice(&codes);
            });
        Some(Q8Matrix {
            rows,
            cols,
            scales,
            qs,
        })
    }

    /// Stacks matrices with the same column count (fused QKV, fused gate/up).
    pub fn concat(parts: &[Q8Matrix]) -> Self {
        let cols = parts[0].cols;
        assert!(
            parts.iter().all(|p| p.cols == cols),
            "concat needs equal column counts"
        );
        Q8Matrix {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols,
            scales: parts
                .iter()
                .flat_map(|p| p.scales.iter().copied())
                .collect(),
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
        }
    }

    /// Bytes held (for reports).
    pub fn n_bytes(&self) -> usize {
        self.qs.len() + 4 * self.scales.len()
    }

    /// `out[i, r] = sum_c W[r, c] x[i, c]` for `m` input rows (`x` is `[m, cols]`).
    ///
    /// Each weight row is read once for all `m` inputs (a tile of up to
    /// [`ROWS_PER_TILE`] inputs is kept in registers), so `m` decoding sequences cost
    /// about one pass over the weights. Batch-invariant: every output is computed by the
    /// same instructions in the same order whatever `m` and wherever the input sits in
    /// the tile, so a sequence decoded in a batch gets bit-for-bit the logits it gets
    /// alone (test `batched_rows_are_bit_identical_to_single_rows`).
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols);
        assert_eq!(out.len(), m * self.rows);
        let cols = self.cols;
        let bpr = cols / QK;
        // Rows per task: enough work (~64 KiB of weights) to amortise rayon's hand-off.
        let chunk = (65536 / cols).clamp(8, 1024);
        let kernel = Kernel::detect();
        let row_outputs = |r: usize, o: &mut [f32]| {
            let q = &self.qs[r * cols..(r + 1) * cols];
            let s = &self.scales[r * bpr..(r + 1) * bpr];
            kernel.dots(q, s, x, cols, o);
        };
        if m == 1 {
            out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
                for (j, y) in o.chunks_exact_mut(1).enumerate() {
                    row_outputs(c * chunk + j, y);
                }
            });
            return;
        }
        // Several inputs: outputs are computed row-major (`[rows, m]`, one weight row's
        // outputs together) and transposed after; the copy is `rows * m` floats, tiny
        // next to the weights.
        let mut by_row = vec![0.0f32; self.rows * m];
        by_row
            .par_chunks_mut(chunk * m)
            .enumerate()
            .for_each(|(c, o)| {
                for (j, y) in o.chunks_exact_mut(m).enumerate() {
                    row_outputs(c * chunk + j, y);
                }
            });
        for (r, ys) in by_row.chunks_exact(m).enumerate() {
            for (i, &y) in ys.iter().enumerate() {
                out[i * self.rows + r] = y;
            }
        }
    }
}

/// Inputs whose dot products with one weight row are computed together: the
/// accumulators of 8 inputs (16 AVX-512 registers) plus the dequantized block fit in
/// the 32 vector registers; AVX2 has 16 registers, so its tile is 4.
pub const ROWS_PER_TILE: usize = 8;

/// The dot-product kernel this CPU runs (detected once per call, not per row).
#[derive(Clone, Copy, Debug)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// `out[i] = dot(row, x[i])` for every input row of `x` (`[out.len(), cols]`).
    fn dots(self, q: &[i8], scales: &[f32], x: &[f32], cols: usize, out: &mut [f32]) {
        debug_assert!(q.len() == cols && scales.len() * QK == cols);
        debug_assert!(x.len() == out.len() * cols);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                for (xs, o) in x
                    .chunks(ROWS_PER_TILE * cols)
                    .zip(out.chunks_mut(ROWS_PER_TILE))
                {
                    // SAFETY: AVX-512F was detected in `Kernel::detect`; `q` holds
                    // `scales.len() * 32` codes (one row) and `xs` holds `o.len()` rows of
                    // `cols = scales.len() * 32` floats (asserted above).
                    unsafe { tile_avx512(q, scales, xs, cols, o) }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                for (xs, o) in x.chunks(4 * cols).zip(out.chunks_mut(4)) {
                    // SAFETY: AVX2 and FMA were detected in `Kernel::detect`; same
                    // lengths as the AVX-512 arm.
                    unsafe { tile_avx2(q, scales, xs, cols, o) }
                }
            }
            Kernel::Scalar => {
                for (xi, o) in x.chunks_exact(cols).zip(out.iter_mut()) {
                    *o = dot_scalar(q, scales, xi);
                }
            }
        }
    }
}

/// `sum_b sum_j (scale[b] * q[b*32+j]) * x[b*32+j]`: the dequantized weight times the
/// input, one accumulator.
fn dot_scalar(q: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for ((qb, xb), s) in q.chunks_exact(QK).zip(x.chunks_exact(QK)).zip(scales) {
        for (a, b) in qb.iter().zip(xb) {
            total += (s * *a as f32) * b;
        }
    }
    total
}

/// Dispatches a tile of `o.len()` (1..=8) inputs to the kernel specialised for it, so
/// the accumulators stay in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(q: &[i8], scales: &[f32], xs: &[f32], cols: usize, o: &mut [f32]) {
    // SAFETY (all arms): the caller's contract, passed on unchanged.
    unsafe {
        match o.len() {
            1 => dots_avx512::<1>(q, scales, xs, cols, o),
            2 => dots_avx512::<2>(q, scales, xs, cols, o),
            3 => dots_avx512::<3>(q, scales, xs, cols, o),
            4 => dots_avx512::<4>(q, scales, xs, cols, o),
            5 => dots_avx512::<5>(q, scales, xs, cols, o),
            6 => dots_avx512::<6>(q, scales, xs, cols, o),
            7 => dots_avx512::<7>(q, scales, xs, cols, o),
            _ => dots_avx512::<8>(q, scales, xs, cols, o),
        }
    }
}

/// One weight row against `M` inputs: each 32-weight block is dequantized once
/// (codes to f32, times the block's scale) and multiplied into every input's two
/// 16-lane accumulators. Per input the operation sequence does not depend on `M`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dots_avx512<const M: usize>(
    q: &[i8],
    scales: &[f32],
    xs: &[f32],
    cols: usize,
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(q.len() >= scales.len() * QK && xs.len() >= M * cols && o.len() >= M);
    let mut acc0 = [_mm512_setzero_ps(); M];
    let mut acc1 = [_mm512_setzero_ps(); M];
    let qp = q.as_ptr();
    let xp = xs.as_ptr();
    for (b, &s) in scales.iter().enumerate() {
        let off = b * QK;
        // SAFETY: `off + 32 <= q.len()` for every block `b`, and `i * cols + off + 32 <=
        // xs.len()` for every input `i < M` (asserted lengths); loads are unaligned.
        unsafe {
            let d = _mm512_set1_ps(s);
            let w0 = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                    qp.add(off) as *const __m128i
                ))),
                d,
            );
            let w1 = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                    qp.add(off + 16) as *const __m128i
                ))),
                d,
            );
            for i in 0..M {
                let xi = xp.add(i * cols + off);
                acc0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xi), acc0[i]);
                acc1[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xi.add(16)), acc1[i]);
            }
        }
    }
    for i in 0..M {
        o[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i]));
    }
}

/// AVX2 twin of [`tile_avx512`], tiles of up to 4 inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(q: &[i8], scales: &[f32], xs: &[f32], cols: usize, o: &mut [f32]) {
    // SAFETY (all arms): the caller's contract, passed on unchanged.
    unsafe {
        match o.len() {
            1 => dots_avx2::<1>(q, scales, xs, cols, o),
            2 => dots_avx2::<2>(q, scales, xs, cols, o),
            3 => dots_avx2::<3>(q, scales, xs, cols, o),
            _ => dots_avx2::<4>(q, scales, xs, cols, o),
        }
    }
}

/// AVX2 twin of [`dots_avx512`]: a block is four 8-lane quarters, two accumulators
/// per input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<const M: usize>(
    q: &[i8],
    scales: &[f32],
    xs: &[f32],
    cols: usize,
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(q.len() >= scales.len() * QK && xs.len() >= M * cols && o.len() >= M);
    let mut acc0 = [_mm256_setzero_ps(); M];
    let mut acc1 = [_mm256_setzero_ps(); M];
    let qp = q.as_ptr();
    let xp = xs.as_ptr();
    for (b, &s) in scales.iter().enumerate() {
        let off = b * QK;
        // SAFETY: as in `dots_avx512`: every load is within one block of one row of `q`
        // and of each input row of `xs`.
        unsafe {
            let d = _mm256_set1_ps(s);
            let lo = _mm_loadu_si128(qp.add(off) as *const __m128i);
            let hi = _mm_loadu_si128(qp.add(off + 16) as *const __m128i);
            let w = [
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d),
                _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))),
                    d,
                ),
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d),
                _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))),
                    d,
                ),
            ];
            for i in 0..M {
                let xi = xp.add(i * cols + off);
                acc0[i] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xi), acc0[i]);
                acc1[i] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xi.add(8)), acc1[i]);
                acc0[i] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xi.add(16)), acc0[i]);
                acc1[i] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xi.add(24)), acc1[i]);
            }
        }
    }
    for i in 0..M {
        let acc = _mm256_add_ps(acc0[i], acc1[i]);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        o[i] = _mm_cvtss_f32(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, cols: usize, m: usize, seed: u64) -> (Q8Matrix, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        (Q8Matrix::from_f32(&w, rows, cols).unwrap(), x)
    }

    #[test]
    fn matmul_matches_dequantized_f32() {
        let (rows, cols, m) = (70, 96, 3);
        let (q, x) = random(rows, cols, m, 7);
        let mut out = vec![0.0; m * rows];
        q.matmul(&x, m, &mut out);
        // Exact reference over the dequantized weights: only summation order differs.
        for i in 0..m {
            for r in 0..rows {
                let mut want = 0.0f64;
                for c in 0..cols {
                    let wq = q.scales[(r * cols + c) / QK] as f64 * q.qs[r * cols + c] as f64;
                    want += wq * x[i * cols + c] as f64;
                }
                let got = out[i * rows + r] as f64;
                assert!((got - want).abs() < 1e-4, "row {r}: {got} vs {want}");
                let (qr, sr) = (
                    &q.qs[r * cols..(r + 1) * cols],
                    &q.scales[r * cols / QK..(r + 1) * cols / QK],
                );
                let xi = &x[i * cols..(i + 1) * cols];
                let scalar = dot_scalar(qr, sr, xi);
                assert!((scalar as f64 - want).abs() < 1e-4);
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    let mut v = [0.0f32];
                    Kernel::Avx2.dots(qr, sr, xi, cols, &mut v);
                    assert!((v[0] as f64 - want).abs() < 1e-4);
                }
            }
        }
    }

    /// The batch invariance continuous batching relies on: an input's outputs do not
    /// depend on how many other inputs share the call, nor on its place in a tile.
    #[test]
    fn batched_rows_are_bit_identical_to_single_rows() {
        let (rows, cols, m) = (37, 128, 19);
        let (q, x) = random(rows, cols, m, 11);
        let mut kernels = vec![Kernel::Scalar, Kernel::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx2);
        }
        for k in kernels {
            for r in 0..rows {
                let (qr, sr) = (
                    &q.qs[r * cols..(r + 1) * cols],
                    &q.scales[r * cols / QK..(r + 1) * cols / QK],
                );
                let mut together = vec![0.0f32; m];
                k.dots(qr, sr, &x, cols, &mut together);
                for (i, t) in together.iter().enumerate() {
                    let mut alone = [0.0f32];
                    k.dots(qr, sr, &x[i * cols..(i + 1) * cols], cols, &mut alone);
                    assert_eq!(t.to_bits(), alone[0].to_bits(), "{k:?} row {r} input {i}");
                }
            }
        }
        let mut batched = vec![0.0f32; m * rows];
        q.matmul(&x, m, &mut batched);
        for i in 0..m {
            let mut alone = vec![0.0f32; rows];
            q.matmul(&x[i * cols..(i + 1) * cols], 1, &mut alone);
            let got: Vec<u32> = batched[i * rows..(i + 1) * rows]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let want: Vec<u32> = alone.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "input {i}");
        }
    }

    #[test]
    fn rejects_partial_blocks() {
        assert!(Q8Matrix::from_f32(&[0.0; 40], 2, 20).is_none());
    }
}
