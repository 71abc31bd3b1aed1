//! SwiGLU activation: `act = silu(gate) ∘ up` with `silu(x) = x σ(x)`, and its backward
//! (`silu'(x) = σ(x) (1 + x (1 - σ(x)))`).

use rayon::prelude::*;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `silu(gate) ∘ up`, element-wise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "gate and up must have the same shape");
    gate.par_iter()
        .zip(up.par_iter())
        .map(|(&g, &u)| g * sigmoid(g) * u)
        .collect()
}

/// Backward of [`swiglu`]: returns `(dgate, dup)`.
pub fn swiglu_backward(dact: &[f32], gate: &[f32], up: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert!(
        dact.len() == gate.len() && gate.len() == up.len(),
        "shapes differ"
    );
    dact.par_iter()
        .zip(gate.par_iter().zip(up.par_iter()))
        .map(|(&d, (&g, &u))| {
            let s = sigmoid(g);
            let silu = g * s;
            (d * u * s * (1.0 + g * (1.0 - s)), d * silu)
        })
        .unzip()
}
