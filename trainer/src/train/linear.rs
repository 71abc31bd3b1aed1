//! Linear layer `y = x Wᵀ` (`x` `[T, in]`, `W` `[out, in]`, `y` `[T, out]`) and its
//! backward, on the shared GEMMs of `crate::cpu::matmul`.

use crate::cpu::matmul::{matmul_nn, matmul_nt, matmul_tn};

/// `x Wᵀ` for `rows` rows of width `w.len() / out`.
pub fn linear(x: &[f32], w: &[f32], rows: usize, out: usize) -> Vec<f32> {
    let inp = w.len() / out;
    let mut y = vec![0.0f32; rows * out];
    matmul_nt(&mut y, x, w, rows, inp, out, false);
    y
}

/// Backward of [`linear`]: returns `dx = dy W` and adds `dyᵀ x` into `dw`.
pub fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    dw: &mut [f32],
    rows: usize,
    out: usize,
) -> Vec<f32> {
    let inp = w.len() / out;
    let mut dx = vec![0.0f32; rows * inp];
    matmul_nn(&mut dx, dy, w, rows, out, inp, false);
    matmul_tn(dw, dy, x, out, rows, inp, true);
    dx
}
