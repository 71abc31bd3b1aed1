//! The Bf16 precision mode (`gpu::precision`) against the CPU reference on the tiny random
//! model: the bf16-output kernels and the bf16 GEMM on their own, then logits and loss,
//! a sequence's gradients, and three optimizer steps with the bf16 weight copies checked
//! after each; and the LM head's single-GEMM forward-then-backward against two passes.
//!
//! # How the tolerances were chosen (before any GPU run: this session had none)
//! bf16 has 8 significant bits, so one rounding moves a value by at most u = 2^-8 ≈ 3.9e-3
//! relative. A GEMM with both operands rounded and f32 accumulation gives each output a
//! relative error of about u·√2 (two roundings per product; the products' errors have
//! random signs, so over k terms they grow like √k while the output grows like √k too).
//! Independent roundings along a path add in quadrature: an output that went through r
//! roundings is off by about u·√r relative (rel-L2 over a tensor). The tiny model (2
//! layers, dim 16) puts about r ≈ 18 roundings on the path to the logits (per layer: four
//! activation operands xn, attn, hn, act and the weights they meet; plus the LM head's two)
//! → u·√18 ≈ 1.7e-2; the backward also rounds each upstream gradient before its two GEMMs,
//! about doubling r → u·√40 ≈ 2.5e-2. Each bound below is about 3× its estimate, because
//! the tiny random model's small sums (k = 16) cancel more than a trained model's and the
//! estimate is a typical, not a worst, case. A numpy emulation of this mode on the tiny
//! model (`kernels/bf16_emulation.py`: bf16 rounding at the same points, 200 random
//! models, forward only; not a GPU run) gave logits rel-L2 ≤ 1.4e-2 (median 6.1e-3),
//! max |Δ logit| ≤ 5.6e-2, max |Δ log-prob| ≤ 3.0e-2 and |Δ mean log-prob| ≤ 3.4e-3:
//! inside the bounds below with margins of 2.7× to 9× over the worst of the 200. The first GPU run should print the measured
//! errors (`--nocapture`) and tighten them.

use half::bf16;
use ssr_trainer::gpu::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use ssr_trainer::gpu::model::DeviceWeights;
use ssr_trainer::gpu::precision::{GemmInput, Matrix};
use ssr_trainer::gpu::{Gpu, GpuPrecision};
use ssr_trainer::testing::{Tolerance, assert_close, check_close};

use super::{from_bf16, gpu_or_skip, random_targets, to_bf16};
use crate::grad::{random_vec, rng};

/// The tiny model with weights of order 0.3 (norm gains near 1).
fn tiny_weights(seed: u64) -> (ssr_trainer::Weights, rand_chacha::ChaCha8Rng) {
    let mut r = rng(seed);
    let cfg = ssr_trainer::Config::tiny();
    let mut w = ssr_trainer::Weights::zeros(&cfg);
    w.for_each_mut(|name, t| {
        let base = if name.contains("norm") { 1.0 } else { 0.0 };
        t.iter_mut()
            .for_each(|x| *x = base + rand::Rng::gen_range(&mut r, -0.3..0.3));
    });
    (w, r)
}

/// Relative L2 error of `got` against `want` (no element-wise bound).
fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    check_close(got, want, Tolerance::new(f32::INFINITY, 0.0))
        .unwrap()
        .rel_l2
}

/// Largest distance in bf16 steps between two bf16 vectors of the same sign pattern.
fn max_bf16_steps(a: &[bf16], b: &[bf16]) -> u16 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.to_bits().abs_diff(y.to_bits()))
        .max()
        .unwrap_or(0)
}

#[test]
fn bf16_output_kernels_round_their_f32_result_once() {
    let Some(gpu) = gpu_or_skip("bf16_output_kernels_round_their_f32_result_once") else {
        return;
    };
    let mut r = rng(120);
    let (t, dim) = (37usize, 96usize);
    let x = gpu.upload(&random_vec(&mut r, t * dim, 2.0)).unwrap();
    let gain = gpu
        .upload(
            &random_vec(&mut r, dim, 0.5)
                .iter()
                .map(|g| 1.0 + g)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut y32 = gpu.zeros::<f32>(t * dim).unwrap();
    let mut yb = gpu.zeros::<bf16>(t * dim).unwrap();
    let (mut r32, mut rb) = (gpu.zeros::<f32>(t).unwrap(), gpu.zeros::<f32>(t).unwrap());
    gpu.rms_norm(&x, &gain, 1e-5, &mut y32, &mut r32).unwrap();
    gpu.rms_norm(&x, &gain, 1e-5, &mut yb, &mut rb).unwrap();
    // The same f32 arithmetic, then one round-to-nearest-even: identical, or one bf16
    // step apart if the compiler contracted the two instantiations differently.
    let want = to_bf16(&gpu.download(&y32).unwrap());
    assert!(max_bf16_steps(&gpu.download(&yb).unwrap(), &want) <= 1);
    assert_eq!(gpu.download(&rb).unwrap(), gpu.download(&r32).unwrap());

    let n = 1000;
    let gate = gpu.upload(&random_vec(&mut r, n, 4.0)).unwrap();
    let up = gpu.upload(&random_vec(&mut r, n, 2.0)).unwrap();
    let mut a32 = gpu.zeros::<f32>(n).unwrap();
    let mut ab = gpu.zeros::<bf16>(n).unwrap();
    gpu.swiglu(&gate, &up, &mut a32).unwrap();
    gpu.swiglu(&gate, &up, &mut ab).unwrap();
    let want = to_bf16(&gpu.download(&a32).unwrap());
    assert!(max_bf16_steps(&gpu.download(&ab).unwrap(), &want) <= 1);

    // Gather to bf16 and scatter-add back: exact (a copy with one rounding, and adds into
    // zeros).
    let hidden = random_vec(&mut r, t * dim, 1.0);
    let h_dev = gpu.upload(&hidden).unwrap();
    let rows = [3u32, 0, 36, 17];
    let mut g = gpu.zeros::<bf16>(rows.len() * dim).unwrap();
    let idx = gpu.gather_rows_bf16(&h_dev, dim, &rows, &mut g).unwrap();
    let got = gpu.download(&g).unwrap();
    for (i, &row) in rows.iter().enumerate() {
        let row = row as usize;
        assert_eq!(
            got[i * dim..(i + 1) * dim],
            to_bf16(&hidden[row * dim..(row + 1) * dim])[..]
        );
    }
    let grad = random_vec(&mut r, rows.len() * dim, 1.0);
    let mut dx = gpu.zeros::<f32>(t * dim).unwrap();
    gpu.scatter_rows_add(&gpu.upload(&grad).unwrap(), &idx, dim, &mut dx)
        .unwrap();
    let dx = gpu.download(&dx).unwrap();
    for (i, &row) in rows.iter().enumerate() {
        let row = row as usize;
        assert_eq!(dx[row * dim..(row + 1) * dim], grad[i * dim..(i + 1) * dim]);
    }
    let mut two_rows = gpu.zeros::<bf16>(2 * dim).unwrap();
    assert!(
        gpu.gather_rows_bf16(&h_dev, dim, &[1, 1], &mut two_rows)
            .is_err(),
        "a repeated row is a typed error"
    );
    assert!(
        gpu.gather_rows_bf16(&h_dev, dim, &[1, t as u32], &mut two_rows)
            .is_err(),
        "a row outside the buffer is a typed error"
    );
}

#[test]
fn bf16_linear_matches_f32_product_of_rounded_operands() {
    let Some(gpu) = gpu_or_skip("bf16_linear_matches_f32_product_of_rounded_operands") else {
        return;
    };
    let mut r = rng(121);
    let (rows, inp, out) = (33usize, 80usize, 48usize);
    let x = from_bf16(&to_bf16(&random_vec(&mut r, rows * inp, 1.0)));
    let w = from_bf16(&to_bf16(&random_vec(&mut r, out * inp, 0.5)));
    let mut want = vec![0.0; rows * out];
    ssr_trainer::cpu::matmul::matmul_nt(&mut want, &x, &w, rows, inp, out, false);
    let w32 = gpu.upload(&w).unwrap();
    let wb = gpu.upload(&to_bf16(&w)).unwrap();
    let xb = GemmInput::Bf16(gpu.upload(&to_bf16(&x)).unwrap());
    let got = gpu
        .linear_from(&xb, Matrix::new(&w32, Some(&wb)), rows, out)
        .unwrap();
    // Operands already bf16-exact, so only the f32 summation order differs (k = 80
    // terms of order 0.5): 1e-5 absolute.
    assert_close(
        "bf16 linear",
        &gpu.download(&got).unwrap(),
        &want,
        Tolerance::new(1e-5, 1e-5),
    );
    // A bf16 operand against weights without a bf16 copy is a typed error.
    assert!(
        gpu.linear_from(&xb, Matrix::new(&w32, None), rows, out)
            .is_err()
    );
}

#[test]
fn bf16_logits_and_loss_match_cpu_on_tiny_model() {
    use ssr_trainer::cpu::matmul::matmul_nt;
    use ssr_trainer::gpu::generate::GpuDecoder;
    let Some(gpu) = gpu_or_skip("bf16_logits_and_loss_match_cpu_on_tiny_model") else {
        return;
    };
    let (w, mut r) = tiny_weights(122);
    let cfg = w.config.clone();
    let v = cfg.vocab_size;
    let tokens = random_targets(&mut r, 24, v);
    let acts = ssr_trainer::train::forward(&w, &tokens);
    let mut want = vec![0.0; tokens.len() * v];
    matmul_nt(
        &mut want,
        &acts.hidden,
        w.lm_head(),
        tokens.len(),
        cfg.dim,
        v,
        false,
    );

    // Logits through the decoder (default precision: bf16), prefill then decode. About 18
    // roundings on the path (module doc): rel-L2 ≈ 1.7e-2, bound 5e-2; element-wise 0.15
    // absolute on logits of order 1 (emulated worst 5.6e-2).
    let mut dec = GpuDecoder::new(&gpu, &w, 32).unwrap();
    assert_eq!(dec.precision(), GpuPrecision::Bf16);
    let mut got = vec![dec.forward_last(&gpu, &tokens[..16]).unwrap()];
    for i in 16..tokens.len() {
        got.push(dec.forward_last(&gpu, &tokens[i..=i]).unwrap());
    }
    for (j, g) in got.iter().enumerate() {
        let i = 15 + j;
        let want_i = &want[i * v..(i + 1) * v];
        let m = check_close(g, want_i, GpuPrecision::Bf16.tolerance().logits)
            .unwrap_or_else(|m| panic!("logits at {i}: {m:?}"));
        eprintln!("bf16 logits at {i}: {m:?}");
        assert!(m.rel_l2 < 5e-2, "logits at {i}: rel-L2 {:.2e}", m.rel_l2);
    }

    // Log-probs of the sequence's own tokens and their mean (the NLL loss). A log-prob
    // moves by its logit's error plus the softmax-weighted mean of the others' (≈ √2 ×
    // 1.7e-2 of logits of order 1): 0.08 per token, 0.03 on the mean.
    let positions: Vec<usize> = (1..tokens.len()).collect();
    let (cpu_lp, cpu_en) = ssr_trainer::train::next_token_logprobs(&w, &tokens, &positions, 1.0);
    let dw = DeviceWeights::upload_with(&gpu, &w, GpuPrecision::Bf16).unwrap();
    let (lp, en) = gpu
        .next_token_logprobs(&dw, &tokens, &positions, 1.0)
        .unwrap();
    assert_close("bf16 log-probs", &lp, &cpu_lp, Tolerance::new(0.08, 0.0));
    assert_close("bf16 entropies", &en, &cpu_en, Tolerance::new(0.08, 0.0));
    let mean = |x: &[f32]| x.iter().map(|&a| f64::from(a)).sum::<f64>() / x.len() as f64;
    let (lg, lc) = (mean(&lp), mean(&cpu_lp));
    eprintln!("bf16 loss gpu {:.5} cpu {:.5}", -lg, -lc);
    assert!((lg - lc).abs() < 0.03, "loss gpu {} vs cpu {}", -lg, -lc);
}

#[test]
fn bf16_sequence_backward_gradients_match_cpu_on_tiny_model() {
    let Some(gpu) = gpu_or_skip("bf16_sequence_backward_gradients_match_cpu_on_tiny_model") else {
        return;
    };
    let (w, mut r) = tiny_weights(123);
    let cfg = w.config.clone();
    let tokens = random_targets(&mut r, 40, cfg.vocab_size);
    let positions: Vec<usize> = (5..40).step_by(2).collect();
    let dlp = random_vec(&mut r, positions.len(), 1.0);
    let mut grads = ssr_trainer::Weights::zeros(&cfg);
    let want = ssr_trainer::train::sequence_backward(
        &w,
        &tokens,
        &positions,
        0.9,
        |_| dlp.clone(),
        &mut grads,
    );
    let dw = DeviceWeights::upload_with(&gpu, &w, GpuPrecision::Bf16).unwrap();
    let mut dg = DeviceWeights::zeros(&gpu, &cfg).unwrap();
    let got = gpu
        .sequence_backward(&dw, &tokens, &positions, 0.9, |_| dlp.clone(), &mut dg)
        .unwrap();
    // Forward quantities: as the logits test (0.08 per token).
    assert_close(
        "bf16 sequence logprob",
        &got.logprob,
        &want.logprob,
        Tolerance::new(0.08, 0.0),
    );
    // Gradients: about 40 roundings on the backward path → rel-L2 ≈ 2.5e-2 per tensor;
    // bound 8e-2. Accumulation is f32 on both sides, so the error is the operands'.
    let host = dg.to_host(&gpu).unwrap();
    for ((name, g), (_, want_g)) in host.tensors().iter().zip(grads.tensors().iter()) {
        let e = rel_l2(g, want_g);
        eprintln!("bf16 gradient {name}: rel-L2 {e:.2e}");
        assert!(e < 8e-2, "{name}: relative L2 error {e:.2e}");
    }
}

/// tokens, trained positions, behaviour log-probs, advantage.
type BatchItem = (Vec<u32>, Vec<usize>, Vec<f32>, f32);

#[test]
fn bf16_three_train_steps_match_cpu_and_keep_bf16_copies_current() {
    use ssr_trainer::gpu::train::{GpuTrainer, TrainSequence};
    use ssr_trainer::optim::AdamW;
    use ssr_trainer::rl::{PolicyLossOutput, aggregation_weights, weighted_policy_loss};
    const TEST: &str = "bf16_three_train_steps_match_cpu_and_keep_bf16_copies_current";
    let Some(gpu) = gpu_or_skip(TEST) else {
        return;
    };
    let (w, mut r) = tiny_weights(124);
    let cfg = w.config.clone();
    let mut tc = ssr_trainer::train::TrainConfig::default();
    tc.adamw.lr = 1e-3;
    tc.adamw.warmup_steps = 0;
    // No clipping in the trust region's reach: a clipped token's gradient jumps from 0 to
    // w·ρ·A when its ratio crosses the boundary, so a bf16 perturbation of ~1e-2 in a
    // log-prob near a boundary would change the gradient by a whole token's share, not by
    // rounding error. Clipping itself is checked in f32 (`gpu::training`, `gpu::rl`).
    tc.loss.clip_low = 0.999;
    tc.loss.clip_high = 1e3;
    let seqs: Vec<BatchItem> = [(30usize, 1.0f32), (22, -0.5), (17, 0.7)]
        .iter()
        .map(|&(len, adv)| {
            let toks = random_targets(&mut r, len, cfg.vocab_size);
            let pos: Vec<usize> = (len / 2..len).collect();
            let old = random_vec(&mut r, pos.len(), 0.5)
                .iter()
                .map(|x| x - 4.0)
                .collect();
            (toks, pos, old, adv)
        })
        .collect();
    let mut offsets = vec![0usize];
    for s in &seqs {
        offsets.push(offsets[offsets.len() - 1] + s.1.len());
    }
    let agg = aggregation_weights(
        &vec![1.0; offsets[seqs.len()]],
        &offsets,
        tc.loss.aggregation,
    );

    let mut cpu_w = w.clone();
    let mut opt = AdamW::new(tc.adamw, &cfg);
    let mut trainer =
        GpuTrainer::with_precision(&gpu, &w, None, tc.clone(), None, None, GpuPrecision::Bf16)
            .unwrap();
    assert_eq!(trainer.precision(), GpuPrecision::Bf16);
    let batch: Vec<TrainSequence<'_>> = seqs
        .iter()
        .map(|(t, p, o, a)| TrainSequence {
            tokens: t,
            positions: p,
            old_logp: o,
            advantage: *a,
        })
        .collect();
    for step in 1..=3u64 {
        // The CPU twin of one session step on this batch.
        let mut grads = ssr_trainer::Weights::zeros(&cfg);
        let mut parts = Vec::new();
        for (i, (toks, pos, old, adv)) in seqs.iter().enumerate() {
            let advs = vec![*adv; pos.len()];
            let mask = vec![1.0; pos.len()];
            let ws = &agg[offsets[i]..offsets[i + 1]];
            ssr_trainer::train::sequence_backward(
                &cpu_w,
                toks,
                pos,
                tc.temperature,
                |lp| {
                    let o = weighted_policy_loss(lp, old, None, &advs, &mask, ws, &tc.loss);
                    let d = o.dlogp.clone();
                    parts.push(o);
                    d
                },
                &mut grads,
            );
        }
        let want_loss = PolicyLossOutput::merge(parts);
        let want_stats = opt.step(&mut cpu_w, &mut grads);
        let got = trainer.step(&gpu, &batch).unwrap();
        eprintln!(
            "step {step}: loss gpu {} cpu {}, grad norm gpu {} cpu {}",
            got.loss, want_loss.loss, got.grad_norm, want_stats.grad_norm
        );
        assert_eq!(got.step, step);
        assert_eq!(got.trained_tokens, want_loss.tokens);
        assert_eq!(want_loss.clipped_tokens, 0, "the bounds above clip nothing");
        // The trainer's stated bf16 step tolerance (GpuPrecision::tolerance says why).
        let tol = GpuPrecision::Bf16.tolerance();
        assert_close(
            &format!("loss at step {step}"),
            &[got.loss],
            &[want_loss.loss],
            tol.loss,
        );
        assert_close(
            &format!("grad norm at step {step}"),
            &[got.grad_norm],
            &[want_stats.grad_norm],
            tol.grad_norm,
        );
        // Masters: each Adam step moves a weight by about lr·sign(g) whatever the
        // gradient's size, so a gradient error can at worst flip a small gradient's sign
        // (2·lr); the f32 test's per-step bound 2.5·lr, summed over the steps taken.
        let host = trainer.weights_to_host(&gpu).unwrap();
        for ((name, g), (_, c)) in host.tensors().iter().zip(cpu_w.tensors().iter()) {
            assert_close(
                &format!("{name} after step {step}"),
                g,
                c,
                Tolerance::new(2.5e-3 * step as f32, 0.0),
            );
        }
        // The bf16 copies are the masters rounded to nearest even, after every step (the
        // AdamW kernel rewrites them in its own pass); the tied LM head's copy included.
        let masters = host.tensors();
        let copies = trainer.device_weights().bf16_copies_to_host(&gpu).unwrap();
        assert_eq!(
            copies.len(),
            1 + 7 * cfg.n_layers,
            "embeddings + 7 per layer"
        );
        for (name, copy) in copies {
            let master = masters
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t)
                .unwrap();
            assert_eq!(copy, to_bf16(master), "{name}: bf16 copy after step {step}");
        }
    }
}

#[test]
fn lm_head_single_gemm_pass_matches_two_passes_across_chunks() {
    let Some(gpu) = gpu_or_skip("lm_head_single_gemm_pass_matches_two_passes_across_chunks") else {
        return;
    };
    let mut r = rng(125);
    // 45 rows in chunks of 16: the last chunk (13 rows) is retained, the two others are
    // recomputed in the backward; (10, 16) fits one chunk (no recompute at all).
    for (n, chunk) in [(45usize, 16usize), (10, 16)] {
        let (d, v) = (32usize, 1000usize);
        let h = gpu
            .upload(&to_bf16(&random_vec(&mut r, n * d, 1.0)))
            .unwrap();
        let w = gpu
            .upload(&to_bf16(&random_vec(&mut r, v * d, 0.5)))
            .unwrap();
        let t = gpu.upload(&random_targets(&mut r, n, v)).unwrap();
        let dlp = random_vec(&mut r, n, 1.0);
        let shape = LmHeadShape {
            tokens: n,
            dim: d,
            vocab: v,
            temperature: 0.8,
        };
        let mut ws = LmHeadWorkspace::new(&gpu, v, chunk * v * 6).unwrap();
        assert_eq!(ws.chunk_rows, chunk);
        let run = |gpu: &Gpu, ws: &mut LmHeadWorkspace, single: bool| {
            let mut lp = gpu.zeros::<f32>(n).unwrap();
            let mut en = gpu.zeros::<f32>(n).unwrap();
            let mut dh = gpu.zeros::<f32>(n * d).unwrap();
            let mut dw = gpu.zeros::<f32>(v * d).unwrap();
            let mut seen = Vec::new();
            let inp = LmHeadInputs {
                hidden: &h,
                weight: &w,
                targets: &t,
                dlogprob: None,
                dentropy: None,
            };
            if single {
                let mut out = LmHeadOutputs {
                    logprob: &mut lp,
                    entropy: &mut en,
                    dhidden: Some(&mut dh),
                    dweight: Some(&mut dw),
                };
                gpu.lm_head_loss_and_backward(&shape, &inp, &mut out, ws, |l| {
                    seen = l.to_vec();
                    dlp.clone()
                })
                .unwrap();
            } else {
                let mut out = LmHeadOutputs {
                    logprob: &mut lp,
                    entropy: &mut en,
                    dhidden: None,
                    dweight: None,
                };
                gpu.lm_head_loss(&shape, &inp, &mut out, ws).unwrap();
                seen = gpu.download(&lp).unwrap();
                let dlp_dev = gpu.upload(&dlp).unwrap();
                let inp = LmHeadInputs {
                    dlogprob: Some(&dlp_dev),
                    ..inp
                };
                let mut out = LmHeadOutputs {
                    logprob: &mut lp,
                    entropy: &mut en,
                    dhidden: Some(&mut dh),
                    dweight: Some(&mut dw),
                };
                gpu.lm_head_loss(&shape, &inp, &mut out, ws).unwrap();
            }
            (
                seen,
                gpu.download(&en).unwrap(),
                gpu.download(&dh).unwrap(),
                gpu.download(&dw).unwrap(),
            )
        };
        let one = run(&gpu, &mut ws, true);
        let two = run(&gpu, &mut ws, false);
        // Same GEMMs on the same operands and the same row pass: equal up to cuBLAS
        // choosing another algorithm for another call (1e-6 relative).
        let tol = Tolerance::new(1e-6, 1e-6);
        assert_close("logprob seen by the loss", &one.0, &two.0, tol);
        assert_close("entropy", &one.1, &two.1, tol);
        assert_close("dhidden", &one.2, &two.2, tol);
        assert_close("dweight", &one.3, &two.3, tol);
        // A given dlogprob is refused (the loss closure provides it).
        let dlp_dev = gpu.upload(&dlp).unwrap();
        let (mut lp, mut en) = (gpu.zeros::<f32>(n).unwrap(), gpu.zeros::<f32>(n).unwrap());
        let (mut dh, mut dw) = (
            gpu.zeros::<f32>(n * d).unwrap(),
            gpu.zeros::<f32>(v * d).unwrap(),
        );
        let inp = LmHeadInputs {
            hidden: &h,
            weight: &w,
            targets: &t,
            dlogprob: Some(&dlp_dev),
            dentropy: None,
        };
        let mut out = LmHeadOutputs {
            logprob: &mut lp,
            entropy: &mut en,
            dhidden: Some(&mut dh),
            dweight: Some(&mut dw),
        };
        assert!(
            gpu.lm_head_loss_and_backward(&shape, &inp, &mut out, &mut ws, |_| dlp.clone())
                .is_err()
        );
    }
}
