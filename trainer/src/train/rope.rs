//! Rotary position embedding in the interleaved-pair layout (GGUF / llama.cpp
//! `rope_type = normal`): within each head, elements `(2i, 2i+1)` form a pair rotated
//! by angle `pos · θ^(-2i/head_dim)`.
//!
//! The rotation is orthogonal, so the backward is the rotation by the opposite angle.
//! Angles and their sines are computed in f64 and rounded once.

/// Cosines and sines for positions `0..len`, `[len, head_dim / 2]` each.
#[derive(Clone, Debug)]
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(len: usize, head_dim: usize, theta: f32) -> Self {
        assert!(head_dim.is_multiple_of(2), "head_dim must be even for RoPE");
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in 0..len {
            for i in 0..half {
                let freq = (theta as f64).powf(-2.0 * i as f64 / head_dim as f64);
                let a = pos as f64 * freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }
}

fn rotate(x: &mut [f32], heads: usize, table: &RopeTable, sign: f32) {
    let half = table.half;
    let width = heads * half * 2;
    assert_eq!(x.len() % width, 0, "x must be [T, heads * head_dim]");
    assert!(
        x.len() / width <= table.cos.len() / half.max(1),
        "RoPE table too short"
    );
    for (pos, row) in x.chunks_exact_mut(width).enumerate() {
        let cos = &table.cos[pos * half..(pos + 1) * half];
        let sin = &table.sin[pos * half..(pos + 1) * half];
        for head in row.chunks_exact_mut(half * 2) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (c, s) = (cos[i], sign * sin[i]);
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }
}

/// Rotates `x` (`[T, heads * head_dim]`, position = row index) in place.
pub fn rope(x: &mut [f32], heads: usize, table: &RopeTable) {
    rotate(x, heads, table, 1.0);
}

/// Backward of [`rope`]: rotates the gradient `dx` back in place.
pub fn rope_backward(dx: &mut [f32], heads: usize, table: &RopeTable) {
    rotate(dx, heads, table, -1.0);
}
