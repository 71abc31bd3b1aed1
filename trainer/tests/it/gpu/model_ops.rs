//! The model's ops on the device (embedding, RMSNorm, RoPE, SwiGLU, attention forward
//! and backward) against their `train::*` twins.

use half::bf16;
use ssr_trainer::testing::{Tolerance, assert_close};

use super::{from_bf16, gpu_or_skip, random_targets, to_bf16};
use crate::grad::{random_vec, rng};

// ---- model ops (GPU training path) against trainer::train ----

// f32 element-wise ops with fast-math exp (SwiGLU's sigmoid) or the same f32 arithmetic
// as the twin (embedding, RoPE with f64 angles, RMSNorm with f64 sums): a few ulps apart.
const ELEMENTWISE_TOL: Tolerance = Tolerance::new(1e-6, 1e-5);

#[test]
fn embedding_rmsnorm_rope_swiglu_match_cpu_twins() {
    use ssr_trainer::train::{embedding, norm, rope, swiglu};
    let Some(gpu) = gpu_or_skip("embedding_rmsnorm_rope_swiglu_match_cpu_twins") else {
        return;
    };
    let mut r = rng(106);
    let (vocab, dim, t) = (50usize, 96usize, 37usize);
    // Embedding, with repeated tokens so the backward's scatter-add order matters.
    let table = random_vec(&mut r, vocab * dim, 1.0);
    let mut tokens = random_targets(&mut r, t, vocab);
    tokens[5] = tokens[3];
    let (table_d, tok_d) = (gpu.upload(&table).unwrap(), gpu.upload(&tokens).unwrap());
    let mut out = gpu.upload(&vec![f32::NAN; t * dim]).unwrap();
    gpu.embedding(&table_d, dim, &tok_d, &mut out).unwrap();
    assert_eq!(
        gpu.download(&out).unwrap(),
        embedding::embedding(&table, dim, &tokens),
        "a gather is exact"
    );
    let dout = random_vec(&mut r, t * dim, 1.0);
    let mut dtable = random_vec(&mut r, vocab * dim, 0.1);
    let mut dtable_d = gpu.upload(&dtable).unwrap();
    embedding::embedding_backward(&mut dtable, dim, &tokens, &dout);
    gpu.embedding_backward(&mut dtable_d, dim, &tok_d, &gpu.upload(&dout).unwrap())
        .unwrap();
    assert_eq!(
        gpu.download(&dtable_d).unwrap(),
        dtable,
        "same adds in the same order: bit-exact"
    );

    // RMSNorm forward and backward.
    let x = random_vec(&mut r, t * dim, 2.0);
    let gain = random_vec(&mut r, dim, 1.0);
    let (y_ref, rstd_ref) = norm::rms_norm(&x, &gain, 1e-5);
    let (x_d, g_d) = (gpu.upload(&x).unwrap(), gpu.upload(&gain).unwrap());
    let mut y = gpu.upload(&vec![f32::NAN; t * dim]).unwrap();
    let mut rstd = gpu.upload(&vec![f32::NAN; t]).unwrap();
    gpu.rms_norm(&x_d, &g_d, 1e-5, &mut y, &mut rstd).unwrap();
    assert_close(
        "rms_norm y",
        &gpu.download(&y).unwrap(),
        &y_ref,
        ELEMENTWISE_TOL,
    );
    assert_close(
        "rms_norm rstd",
        &gpu.download(&rstd).unwrap(),
        &rstd_ref,
        ELEMENTWISE_TOL,
    );
    let dy = random_vec(&mut r, t * dim, 1.0);
    let mut dgain_ref = random_vec(&mut r, dim, 0.1);
    let mut dgain_d = gpu.upload(&dgain_ref).unwrap();
    let dx_ref = norm::rms_norm_backward(&dy, &x, &gain, &rstd_ref, &mut dgain_ref);
    let mut dx = gpu.upload(&vec![f32::NAN; t * dim]).unwrap();
    gpu.rms_norm_backward(
        &gpu.upload(&dy).unwrap(),
        &x_d,
        &g_d,
        &gpu.upload(&rstd_ref).unwrap(),
        &mut dx,
        &mut dgain_d,
    )
    .unwrap();
    // dx subtracts two terms of similar size: 1e-5 absolute on values of order 1.
    assert_close(
        "rms_norm dx",
        &gpu.download(&dx).unwrap(),
        &dx_ref,
        Tolerance::new(1e-5, 1e-5),
    );
    assert_close(
        "rms_norm dgain",
        &gpu.download(&dgain_d).unwrap(),
        &dgain_ref,
        Tolerance::new(1e-5, 1e-5),
    );

    // RoPE forward and backward (interleaved pairs), 3 heads of 32.
    let (heads, hd, theta) = (3usize, 32usize, 10000.0f32);
    let q = random_vec(&mut r, t * heads * hd, 1.0);
    let table_r = rope::RopeTable::new(t, hd, theta);
    let mut q_ref = q.clone();
    rope::rope(&mut q_ref, heads, &table_r);
    let mut q_d = gpu.upload(&q).unwrap();
    gpu.rope(&mut q_d, heads, hd, theta, 0, false).unwrap();
    // Angles up to 36 rad: f64 sin/cos on both sides, rounded once to f32.
    assert_close(
        "rope",
        &gpu.download(&q_d).unwrap(),
        &q_ref,
        ELEMENTWISE_TOL,
    );
    rope::rope_backward(&mut q_ref, heads, &table_r);
    gpu.rope(&mut q_d, heads, hd, theta, 0, true).unwrap();
    assert_close(
        "rope_backward",
        &gpu.download(&q_d).unwrap(),
        &q_ref,
        ELEMENTWISE_TOL,
    );

    // SwiGLU forward and backward.
    let n = t * 64;
    let (gate, up, dact) = (
        random_vec(&mut r, n, 4.0),
        random_vec(&mut r, n, 2.0),
        random_vec(&mut r, n, 1.0),
    );
    let (gate_d, up_d) = (gpu.upload(&gate).unwrap(), gpu.upload(&up).unwrap());
    let mut act = gpu.upload(&vec![f32::NAN; n]).unwrap();
    gpu.swiglu(&gate_d, &up_d, &mut act).unwrap();
    assert_close(
        "swiglu",
        &gpu.download(&act).unwrap(),
        &swiglu::swiglu(&gate, &up),
        ELEMENTWISE_TOL,
    );
    let (dg_ref, du_ref) = swiglu::swiglu_backward(&dact, &gate, &up);
    let mut dg = gpu.upload(&vec![f32::NAN; n]).unwrap();
    let mut du = gpu.upload(&vec![f32::NAN; n]).unwrap();
    gpu.swiglu_backward(
        &gpu.upload(&dact).unwrap(),
        &gate_d,
        &up_d,
        &mut dg,
        &mut du,
    )
    .unwrap();
    assert_close(
        "swiglu dgate",
        &gpu.download(&dg).unwrap(),
        &dg_ref,
        ELEMENTWISE_TOL,
    );
    assert_close(
        "swiglu dup",
        &gpu.download(&du).unwrap(),
        &du_ref,
        ELEMENTWISE_TOL,
    );

    // Residual add and the bf16 casts.
    let mut a_d = gpu.upload(&gate).unwrap();
    gpu.add_in_place(&mut a_d, &up_d).unwrap();
    let sum: Vec<f32> = gate.iter().zip(&up).map(|(a, b)| a + b).collect();
    assert_eq!(gpu.download(&a_d).unwrap(), sum);
    let mut b16 = gpu.zeros::<bf16>(n).unwrap();
    gpu.cast_f32_to_bf16(&gate_d, &mut b16).unwrap();
    assert_eq!(
        gpu.download(&b16).unwrap(),
        to_bf16(&gate),
        "round to nearest even, as half"
    );
    let mut back = gpu.zeros::<f32>(n).unwrap();
    gpu.cast_bf16_to_f32(&b16, &mut back).unwrap();
    assert_eq!(gpu.download(&back).unwrap(), from_bf16(&to_bf16(&gate)));
}

#[test]
fn attention_forward_backward_match_cpu_twin_gqa_causal() {
    use ssr_trainer::gpu::model_ops::AttnShape;
    use ssr_trainer::train::attention::{AttentionShape, attention, attention_backward};
    let Some(gpu) = gpu_or_skip("attention_forward_backward_match_cpu_twin_gqa_causal") else {
        return;
    };
    let mut r = rng(107);
    // seq 45 spans two 32-row blocks and partial key tiles; head_dim 64 (SmolLM2) and 128
    // (7B-like, the kernels' limit); 6 query heads over 2 or 3 kv heads.
    for (seq, nh, nkv, hd) in [
        (45usize, 6usize, 2usize, 64usize),
        (33, 6, 3, 128),
        (1, 2, 1, 16),
    ] {
        let shape = AttentionShape {
            seq,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
        };
        let gshape = AttnShape {
            seq,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
        };
        let q = random_vec(&mut r, seq * nh * hd, 1.0);
        let k = random_vec(&mut r, seq * nkv * hd, 1.0);
        let v = random_vec(&mut r, seq * nkv * hd, 1.0);
        let dout = random_vec(&mut r, seq * nh * hd, 1.0);
        let (o_ref, lse_ref) = attention(&q, &k, &v, shape);
        let (dq_ref, dk_ref, dv_ref) = attention_backward(&dout, &q, &k, &v, &lse_ref, shape);
        let (q_d, k_d, v_d) = (
            gpu.upload(&q).unwrap(),
            gpu.upload(&k).unwrap(),
            gpu.upload(&v).unwrap(),
        );
        let mut o = gpu.upload(&vec![f32::NAN; q.len()]).unwrap();
        let mut lse = gpu.upload(&vec![f32::NAN; nh * seq]).unwrap();
        gpu.attention(&q_d, &k_d, &v_d, gshape, &mut o, &mut lse)
            .unwrap();
        // f32 dot products of hd ≤ 128 terms and an online softmax with fast-math exp
        // against the twin's two-pass softmax with f64 sums: ~1e-6 relative per score.
        let tol = Tolerance::new(2e-5, 1e-4);
        assert_close("attention out", &gpu.download(&o).unwrap(), &o_ref, tol);
        assert_close("attention lse", &gpu.download(&lse).unwrap(), &lse_ref, tol);
        let mut dq = gpu.upload(&vec![f32::NAN; q.len()]).unwrap();
        let mut dk = gpu.upload(&vec![f32::NAN; k.len()]).unwrap();
        let mut dv = gpu.upload(&vec![f32::NAN; v.len()]).unwrap();
        gpu.attention_backward(
            &gpu.upload(&dout).unwrap(),
            &q_d,
            &k_d,
            &v_d,
            &o,
            &lse,
            gshape,
            &mut dq,
            &mut dk,
            &mut dv,
        )
        .unwrap();
        // Gradients sum up to seq × group terms; D is computed as dO·O instead of the
        // twin's rowsum(P∘dP) (equal in exact arithmetic): 1e-4 absolute and relative.
        let gtol = Tolerance::new(1e-4, 1e-4);
        assert_close("attention dq", &gpu.download(&dq).unwrap(), &dq_ref, gtol);
        assert_close("attention dk", &gpu.download(&dk).unwrap(), &dk_ref, gtol);
        assert_close("attention dv", &gpu.download(&dv).unwrap(), &dv_ref, gtol);
    }
}
