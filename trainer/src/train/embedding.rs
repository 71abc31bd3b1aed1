//! Token embedding: a row gather from the `[vocab, dim]` table, and its backward, a
//! scatter-add of the output gradient into the rows that were read.

/// `out[t] = table[tokens[t]]`, `[T, dim]`.
///
/// # Panics
/// If a token is outside the table (callers validate token ids first).
pub fn embedding(table: &[f32], dim: usize, tokens: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(tokens.len() * dim);
    for &t in tokens {
        let t = t as usize;
        out.extend_from_slice(&table[t * dim..(t + 1) * dim]);
    }
    out
}

/// `dtable[tokens[t]] += dout[t]` for every position, in position order (a token that
/// appears twice gets both gradients, summed deterministically).
pub fn embedding_backward(dtable: &mut [f32], dim: usize, tokens: &[u32], dout: &[f32]) {
    assert_eq!(dout.len(), tokens.len() * dim, "dout must be [T, dim]");
    for (&t, d) in tokens.iter().zip(dout.chunks_exact(dim)) {
        let t = t as usize;
        for (a, &b) in dtable[t * dim..(t + 1) * dim].iter_mut().zip(d) {
            *a += b;
        }
    }
}
