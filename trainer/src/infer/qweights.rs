//! Q8_0 weight matrices and their SIMD matrix-vector products: the decode path.
//!
//! Owns: converting an f32 `[rows, cols]` matrix into Q8_0 blocks (32 weights, one
//! f32 scale; llama.cpp's symmetric scheme) and `y = W x` over them with AVX-512F or
//! AVX2/FMA (runtime-detected; a scalar loop elsewhere), threaded over output rows.
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
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols);
        assert_eq!(out.len(), m * self.rows);
        let bpr = self.cols / QK;
        // Rows per task: enough work (~64 KiB of weights) to amortise rayon's hand-off.
        let chunk = (65536 / self.cols).clamp(8, 1024);
        for (xi, oi) in x
            .chunks_exact(self.cols)
            .zip(out.chunks_exact_mut(self.rows))
        {
            oi.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
                let r0 = c * chunk;
                for (j, y) in o.iter_mut().enumerate() {
                    let r = r0 + j;
                    *y = dot(
                        &self.qs[r * self.cols..(r + 1) * self.cols],
                        &self.scales[r * bpr..(r + 1) * bpr],
                        xi,
                    );
                }
            });
        }
    }
}

/// `sum_b scale[b] * sum_j q[b*32+j] * x[b*32+j]`.
fn dot(q: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above); same bounds as below.
            return unsafe { dot_avx512(q, scales, x) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above); the kernel
            // reads `q` and `x` only within `scales.len() * 32` elements, and the caller
            // passes slices of exactly that length (one row).
            return unsafe { dot_avx2(q, scales, x) };
        }
    }
    dot_scalar(q, scales, x)
}

fn dot_scalar(q: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for ((qb, xb), s) in q.chunks_exact(QK).zip(x.chunks_exact(QK)).zip(scales) {
        let block: f32 = qb.iter().zip(xb).map(|(a, b)| *a as f32 * b).sum();
        total += s * block;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(q: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(q.len() >= scales.len() * QK && x.len() >= scales.len() * QK);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let qp = q.as_ptr();
    let xp = x.as_ptr();
    for (b, &s) in scales.iter().enumerate() {
        let o = b * QK;
        // SAFETY: `o + 32 <= q.len()` and `o + 32 <= x.len()` for every block `b`
        // (asserted lengths); unaligned loads are used throughout.
        unsafe {
            let lo = _mm_loadu_si128(qp.add(o) as *const __m128i);
            let hi = _mm_loadu_si128(qp.add(o + 16) as *const __m128i);
            let w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
            let w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
            let w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
            let w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
            let mut s0 = _mm256_mul_ps(w0, _mm256_loadu_ps(xp.add(o)));
            let mut s1 = _mm256_mul_ps(w1, _mm256_loadu_ps(xp.add(o + 8)));
            s0 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xp.add(o + 16)), s0);
            s1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xp.add(o + 24)), s1);
            let d = _mm256_set1_ps(s);
            acc0 = _mm256_fmadd_ps(s0, d, acc0);
            acc1 = _mm256_fmadd_ps(s1, d, acc1);
        }
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let hi = _mm256_extractf128_ps(acc, 1);
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// AVX-512 twin of [`dot_avx2`]: one block is two 16-lane halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(q: &[i8], scales: &[f32], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(q.len() >= scales.len() * QK && x.len() >= scales.len() * QK);
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let qp = q.as_ptr();
    let xp = x.as_ptr();
    for (b, &s) in scales.iter().enumerate() {
        let o = b * QK;
        // SAFETY: `o + 32 <= q.len()` and `o + 32 <= x.len()` for every block `b`
        // (asserted lengths); unaligned loads are used throughout.
        unsafe {
            let w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                qp.add(o) as *const __m128i
            )));
            let w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                qp.add(o + 16) as *const __m128i
            )));
            let d = _mm512_set1_ps(s);
            acc0 = _mm512_fmadd_ps(_mm512_mul_ps(w0, _mm512_loadu_ps(xp.add(o))), d, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_mul_ps(w1, _mm512_loadu_ps(xp.add(o + 16))), d, acc1);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matmul_matches_dequantized_f32() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (rows, cols, m) = (70, 96, 3);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let q = Q8Matrix::from_f32(&w, rows, cols).unwrap();
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
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: features checked; slices are one full row.
                    let v = unsafe {
                        dot_avx2(
                            &q.qs[r * cols..(r + 1) * cols],
                            &q.scales[r * cols / QK..(r + 1) * cols / QK],
                            &x[i * cols..(i + 1) * cols],
                        )
                    };
                    assert!((v as f64 - want).abs() < 1e-4);
                }
                let scalar = dot_scalar(
                    &q.qs[r * cols..(r + 1) * cols],
                    &q.scales[r * cols / QK..(r + 1) * cols / QK],
                    &x[i * cols..(i + 1) * cols],
                );
                assert!((scalar as f64 - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn rejects_partial_blocks() {
        assert!(Q8Matrix::from_f32(&[0.0; 40], 2, 20).is_none());
    }
}
