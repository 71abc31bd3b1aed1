//! Dense f32 matrix products, row-major, multithreaded and SIMD.
//!
//! Owns the three product shapes a llama forward/backward needs:
//! [`matmul_nt`] (`x W^T`, the linear layer), [`matmul_nn`] (`dY W`, the input
//! gradient) and [`matmul_tn`] (`dY^T X`, the weight gradient). Does not own
//! quantized products (decode uses `infer::qweights`, which reads f16/Q8 weights).
//!
//! Why the `gemm` crate: it is the GEMM candle uses, detects AVX2/FMA and AVX-512
//! at run time, packs both operands itself (so a transposed operand is only a
//! stride change, no copy), and threads with rayon. Writing our own kernel would
//! need the same packing and blocking to reach the ~80 GFLOP/s prefill needs; revisit
//! only if a dependency-free build becomes a goal.

use gemm::Parallelism;

/// Below this many multiply-adds the rayon fork/join costs more than it saves
/// (measured: a `[1,576]x[576,576]` product is ~20 µs single-threaded).
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

fn parallelism(m: usize, k: usize, n: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_FLOPS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Strides of one operand in elements: (column stride, row stride), as `gemm` wants.
type Strides = (isize, isize);

#[allow(clippy::too_many_arguments)]
fn run(
    out: &mut [f32],
    a: &[f32],
    a_strides: Strides,
    b: &[f32],
    b_strides: Strides,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert_eq!(
        out.len(),
        m * n,
        "matmul: out has {} elements, want m*n = {}",
        out.len(),
        m * n
    );
    assert_eq!(
        a.len(),
        m * k,
        "matmul: a has {} elements, want m*k = {}",
        a.len(),
        m * k
    );
    assert_eq!(
        b.len(),
        k * n,
        "matmul: b has {} elements, want k*n = {}",
        b.len(),
        k * n
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // SAFETY: the three slices hold exactly m*n, m*k and k*n elements (asserted
    // above), and every stride pair passed describes an in-bounds walk of its slice:
    // element (i, j) of an operand with strides (cs, rs) is at `i*rs + j*cs`, whose
    // maximum is `(rows-1)*rs + (cols-1)*cs < len` for each layout chosen by the
    // callers. `out` is exclusively borrowed, so `gemm` may write it from several
    // threads without aliasing `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_strides.0,
            a_strides.1,
            b.as_ptr(),
            b_strides.0,
            b_strides.1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, k, n),
        );
    }
}

/// `out[m,n] (=|+=) a[m,k] · b[n,k]^T` (`x W^T` of a linear layer; `W` is `[out,in]`).
pub fn matmul_nt(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    // b^T as a [k,n] operand: element (kk, j) is b[j*k + kk].
    run(
        out,
        a,
        (1, k as isize),
        b,
        (k as isize, 1),
        m,
        k,
        n,
        accumulate,
    );
}

/// `out[m,n] (=|+=) a[m,k] · b[k,n]`.
pub fn matmul_nn(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    run(
        out,
        a,
        (1, k as isize),
        b,
        (1, n as isize),
        m,
        k,
        n,
        accumulate,
    );
}

/// `out[m,n] (=|+=) a[k,m]^T · b[k,n]` (weight gradients: `dW = dY^T X`).
pub fn matmul_tn(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    // a^T as an [m,k] operand: element (i, kk) is a[kk*m + i].
    run(
        out,
        a,
        (m as isize, 1),
        b,
        (1, n as isize),
        m,
        k,
        n,
        accumulate,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    /// Naive triple loop in f64; `at(i, kk)` and `bt(kk, j)` read the logical operands.
    fn naive(
        m: usize,
        k: usize,
        n: usize,
        at: impl Fn(usize, usize) -> f32,
        bt: impl Fn(usize, usize) -> f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|kk| at(i, kk) as f64 * bt(kk, j) as f64).sum();
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    /// f32 accumulation over k terms of magnitude <= 1: the rounding error grows
    /// like sqrt(k) * 2^-24 per term in practice; 1e-4 * sqrt(k) leaves a wide margin
    /// while still catching any indexing mistake (which gives O(1) errors).
    fn assert_close(got: &[f32], want: &[f32], k: usize) {
        let tol = 1e-4 * (k as f32).sqrt().max(1.0);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "element {i}: got {g}, want {w} (tol {tol})"
            );
        }
    }

    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (3, 5, 7),
        (1, 576, 192),
        (17, 64, 33),
        (128, 96, 130),
        (64, 300, 1),
    ];

    #[test]
    fn nt_matches_naive_and_accumulates() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (m, k, n) in SHAPES {
            let a = random(m * k, &mut rng);
            let b = random(n * k, &mut rng);
            let want = naive(m, k, n, |i, kk| a[i * k + kk], |kk, j| b[j * k + kk]);
            let mut out = vec![f32::NAN; m * n];
            matmul_nt(&mut out, &a, &b, m, k, n, false);
            assert_close(&out, &want, k);
            matmul_nt(&mut out, &a, &b, m, k, n, true);
            let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            assert_close(&out, &twice, k);
        }
    }

    #[test]
    fn nn_matches_naive_and_accumulates() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (m, k, n) in SHAPES {
            let a = random(m * k, &mut rng);
            let b = random(k * n, &mut rng);
            let want = naive(m, k, n, |i, kk| a[i * k + kk], |kk, j| b[kk * n + j]);
            let mut out = vec![f32::NAN; m * n];
            matmul_nn(&mut out, &a, &b, m, k, n, false);
            assert_close(&out, &want, k);
            matmul_nn(&mut out, &a, &b, m, k, n, true);
            let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            assert_close(&out, &twice, k);
        }
    }

    #[test]
    fn tn_matches_naive_and_accumulates() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (m, k, n) in SHAPES {
            let a = random(k * m, &mut rng);
            let b = random(k * n, &mut rng);
            let want = naive(m, k, n, |i, kk| a[kk * m + i], |kk, j| b[kk * n + j]);
            let mut out = vec![f32::NAN; m * n];
            matmul_tn(&mut out, &a, &b, m, k, n, false);
            assert_close(&out, &want, k);
            matmul_tn(&mut out, &a, &b, m, k, n, true);
            let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
            assert_close(&out, &twice, k);
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps() {
        let mut out = vec![5.0f32; 6];
        matmul_nt(&mut out, &[], &[], 2, 0, 3, true);
        assert_eq!(out, vec![5.0; 6]);
        matmul_nt(&mut out, &[], &[], 2, 0, 3, false);
        assert_eq!(out, vec![0.0; 6]);
    }
}
