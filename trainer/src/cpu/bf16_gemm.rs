//! A bf16 GEMM for prefill on CPUs with AVX-512 BF16 (`vdpbf16ps`).
//!
//! Owns [`Bf16Matrix`]: a weight matrix `W [n, k]` rounded to bf16 and packed for the
//! kernel, and `out[m, n] = x[m, k] W^T` with `x` rounded to bf16 on the fly and f32
//! accumulation. Does not own the f32 products (`cpu::matmul`) or quantized decode.
//!
//! Why: prefill is compute-bound, and `vdpbf16ps` does 32 multiply-adds per
//! instruction against 16 for an f32 FMA, so it doubles the arithmetic rate of the f32
//! GEMM on this kind of machine (AMD EPYC, Zen 4). The price is bf16 rounding of both
//! operands (8 significant bits) with f32 sums; the engine uses it only for prompt
//! prefill in generation, never for [`crate::infer::Engine::logits`] or training.
//!
//! Layout: columns in tiles of 16 (one 512-bit lane per column); for each tile, pairs
//! of `k` are interleaved so one 64-byte load holds `W[col, 2p..2p+2]` for 16 columns:
//! `packed[tile][p][col]` is a `u32` with `W[col, 2p]` in the low half.

use half::bf16;
use rayon::prelude::*;

const TILE: usize = 16;
/// Rows of `x` per kernel call (accumulators held in registers).
const ROWS: usize = 8;
/// Rows of `x` per parallel task: the tile of W (k/2 * 64 bytes) is reused this often
/// from L1/L2 while the task walks all tiles.
const TASK_ROWS: usize = 64;

/// `W [n, k]` packed as bf16 pairs.
#[derive(Clone, Debug)]
pub struct Bf16Matrix {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to even, halved: pairs per row.
    pairs: usize,
    packed: Vec<u32>,
}

fn pair(lo: f32, hi: f32) -> u32 {
    bf16::from_f32(lo).to_bits() as u32 | (bf16::from_f32(hi).to_bits() as u32) << 16
}

/// Whether this CPU has the instructions [`Bf16Matrix::matmul`] needs.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Bf16Matrix {
    /// Packs `w` (`[n, k]` row-major).
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        let pairs = k.div_ceil(2);
        let tiles = n.div_ceil(TILE);
        let mut packed = vec![0u32; tiles * pairs * TILE];
        packed
            .par_chunks_mut(pairs * TILE)
            .enumerate()
            .for_each(|(t, tile)| {
                for c in 0..TILE {
                    let col = t * TILE + c;
                    if col >= n {
                        continue;
                    }
                    let row = &w[col * k..(col + 1) * k];
                    for p in 0..pairs {
                        let hi = if 2 * p + 1 < k { row[2 * p + 1] } else { 0.0 };
                        tile[p * TILE + c] = pair(row[2 * p], hi);
                    }
                }
            });
        Bf16Matrix {
            n,
            k,
            pairs,
            packed,
        }
    }

    pub fn n_bytes(&self) -> usize {
        self.packed.len() * 4
    }

    /// `out[m, n] = x[m, k] W^T`. Panics when [`available`] is false (callers check).
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert!(available(), "bf16 GEMM needs AVX-512 BF16");
        assert_eq!(x.len(), m * self.k);
        assert_eq!(out.len(), m * self.n);
        let (k, n, pairs) = (self.k, self.n, self.pairs);
        out.par_chunks_mut(TASK_ROWS * n)
            .enumerate()
            .for_each(|(task, out_rows)| {
                let r0 = task * TASK_ROWS;
                let rows = out_rows.len() / n;
                // x rows as bf16 pairs, padded to a multiple of ROWS with zeros.
                let padded = rows.div_ceil(ROWS) * ROWS;
                let mut xb = vec![0u32; padded * pairs];
                for r in 0..rows {
                    to_bf16_pairs(
                        &x[(r0 + r) * k..(r0 + r + 1) * k],
                        &mut xb[r * pairs..(r + 1) * pairs],
                    );
                }
                let mut acc = [0.0f32; ROWS * TILE];
                for t in 0..n.div_ceil(TILE) {
                    let tile = &self.packed[t * pairs * TILE..(t + 1) * pairs * TILE];
                    for rb in (0..rows).step_by(ROWS) {
                        // SAFETY: `available()` was asserted; `tile` holds `pairs * 16` and
                        // `xb[rb*pairs..]` at least `ROWS * pairs` elements (padded).
                        unsafe {
                            kernel(tile, &xb[rb * pairs..(rb + ROWS) * pairs], pairs, &mut acc)
                        };
                        for r in 0..ROWS.min(rows - rb) {
                            let c0 = t * TILE;
                            let cols = TILE.min(n - c0);
                            out_rows[(rb + r) * n + c0..(rb + r) * n + c0 + cols]
                                .copy_from_slice(&acc[r * TILE..r * TILE + cols]);
                        }
                    }
                }
            });
    }
}

/// Rounds a row to bf16 (nearest even) into pairs: `out[p] = x[2p] | x[2p+1] << 16`,
/// which is the plain bf16 array of the row in memory.
fn to_bf16_pairs(x: &[f32], out: &mut [u32]) {
    let k = x.len();
    // SAFETY: only called from `matmul`, after `available()` confirmed AVX-512F and
    // BF16; the kernel reads `x[..k/32*32]` and writes `out[..k/32*16]`, in bounds
    // because `out.len() == k.div_ceil(2)`.
    #[cfg(target_arch = "x86_64")]
    let done = unsafe { to_bf16_pairs_avx512(x, out) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for p in done / 2..out.len() {
        let hi = if 2 * p + 1 < k { x[2 * p + 1] } else { 0.0 };
        out[p] = pair(x[2 * p], hi);
    }
}

/// Converts whole 32-float chunks; returns how many floats it converted.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn to_bf16_pairs_avx512(x: &[f32], out: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let chunks = x.len() / 32;
    for c in 0..chunks {
        // SAFETY: `c*32 + 32 <= x.len()` and `c*16 + 16 <= out.len()` (see caller).
        unsafe {
            let lo = _mm512_loadu_ps(x.as_ptr().add(c * 32));
            let hi = _mm512_loadu_ps(x.as_ptr().add(c * 32 + 16));
            // The lower 16 results come from the second operand.
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.as_mut_ptr().add(c * 16) as *mut _, v);
        }
    }
    chunks * 32
}

/// `acc[r][c] = sum_p dot2(x[r][p], tile[p][c])` for 8 rows and 16 columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(tile: &[u32], x: &[u32], pairs: usize, acc: &mut [f32; ROWS * TILE]) {
    use std::arch::x86_64::*;
    debug_assert!(tile.len() >= pairs * TILE && x.len() >= ROWS * pairs);
    let mut a = [_mm512_setzero_ps(); ROWS];
    let tp = tile.as_ptr();
    let xp = x.as_ptr();
    for p in 0..pairs {
        // SAFETY: `p < pairs`, so `tp + p*16 .. +16` and `xp + r*pairs + p` are in
        // bounds by the lengths asserted above; loads are unaligned.
        unsafe {
            let b: __m512bh = std::mem::transmute(_mm512_loadu_si512(tp.add(p * TILE) as *const _));
            for (r, ar) in a.iter_mut().enumerate() {
                let xv: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*xp.add(r * pairs + p) as i32));
                *ar = _mm512_dpbf16_ps(*ar, xv, b);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        // SAFETY: `acc` has ROWS*16 floats; row r's 16 lanes are at r*16.
        unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(r * TILE), *ar) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_: &[u32], _: &[u32], _: usize, _: &mut [f32; ROWS * TILE]) {
    unreachable!("available() is false off x86_64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matches_f64_product_of_bf16_rounded_operands() {
        if !available() {
            eprintln!("SKIP bf16 GEMM test: this CPU lacks AVX-512 BF16");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (m, k, n) in [(1, 2, 1), (9, 33, 17), (70, 64, 40), (130, 96, 16)] {
            let w: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b = Bf16Matrix::from_f32(&w, n, k);
            let mut out = vec![f32::NAN; m * n];
            b.matmul(&x, m, &mut out);
            let r = |v: f32| bf16::from_f32(v).to_f32() as f64;
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|c| r(x[i * k + c]) * r(w[j * k + c])).sum();
                    // Products of bf16 values are exact in f32; only the f32 sum rounds.
                    assert!(
                        (out[i * n + j] as f64 - want).abs() < 1e-4 * (k as f64).sqrt(),
                        "({m},{k},{n}) [{i},{j}]"
                    );
                }
            }
        }
    }
}
