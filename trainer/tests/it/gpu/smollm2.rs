//! SmolLM2-135M on the device against the CPU for a short sequence: the decoder's
//! logits (f32 on both sides) and the training path's per-token log-probs and loss
//! (bf16 LM head on the device), then the same in the bf16 precision. Needs a GPU and the model file; skips otherwise.
//!
//! The tolerances were set before any GPU run (this session had none), from the error
//! analysis in each comment; the first GPU run should print the measured errors
//! (`--nocapture`) and tighten them.

use ssr_trainer::gguf::load_model;
use ssr_trainer::gpu::GpuPrecision;
use ssr_trainer::gpu::generate::GpuDecoder;
use ssr_trainer::gpu::model::DeviceWeights;
use ssr_trainer::infer::Engine;
use ssr_trainer::testing::{Tolerance, check_close};

use super::gpu_or_skip;

const PROMPT: &str = "<|im_start|>user\nWrite a Rust function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn smollm2_logits_and_loss_match_cpu_on_a_short_sequence() {
    const TEST: &str = "smollm2_logits_and_loss_match_cpu_on_a_short_sequence";
    let Some(gpu) = gpu_or_skip(TEST) else {
        return;
    };
    let Some(path) = super::smollm2_or_skip(TEST) else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let ids = engine.tokenizer().encode(PROMPT);
    assert!(ids.len() > 16, "prompt of {} tokens", ids.len());
    let v = engine.config().vocab_size;

    // Logits: CPU f32 forward vs the device decoder (f32 weights, cuBLAS f32 GEMMs),
    // prompt prefilled then the last 4 tokens decoded one by one. f32 rounding in a
    // different summation order is ~1e-6 relative per op; through 30 residual layers
    // that grows to ~1e-4 relative on logits of magnitude up to ~35, i.e. ~4e-3
    // absolute: 2e-2 absolute leaves a 5x margin.
    let want = engine.logits(&ids).unwrap();
    let (_, w) = load_model(&path).unwrap();
    let mut dec = GpuDecoder::with_precision(&gpu, &w, ids.len(), GpuPrecision::F32).unwrap();
    let split = ids.len() - 4;
    let tol = Tolerance::new(2e-2, 0.0);
    let mut rows = vec![(split - 1, dec.forward_last(&gpu, &ids[..split]).unwrap())];
    for i in split..ids.len() {
        rows.push((i, dec.forward_last(&gpu, &ids[i..=i]).unwrap()));
    }
    for (i, got) in rows {
        let m = check_close(&got, &want[i * v..(i + 1) * v], tol)
            .unwrap_or_else(|m| panic!("logits at {i}: {m:?}"));
        eprintln!("{TEST}: logits at {i}: {m:?}");
    }

    // Log-probs of the sequence's own next tokens and their mean (the loss): the
    // device path puts the LM head in bf16 (hidden and weight rounded to 8 mantissa
    // bits, f32 accumulation): each logit moves by ~2^-9·sqrt(576)·|h_i w_i| ≲ 0.03,
    // the log-prob by about twice that. 0.15 per token, 0.05 on the mean.
    let positions: Vec<usize> = (1..ids.len()).collect();
    let (cpu_lp, _) = ssr_trainer::train::next_token_logprobs(&w, &ids, &positions, 1.0);
    let dw = DeviceWeights::upload(&gpu, &w).unwrap();
    let (gpu_lp, _) = gpu.next_token_logprobs(&dw, &ids, &positions, 1.0).unwrap();
    let m = check_close(&gpu_lp, &cpu_lp, Tolerance::new(0.15, 0.0))
        .unwrap_or_else(|m| panic!("per-token log-probs: {m:?}"));
    eprintln!("{TEST}: log-probs: {m:?}");
    let mean = |x: &[f32]| x.iter().map(|&a| f64::from(a)).sum::<f64>() / x.len() as f64;
    let (lg, lc) = (mean(&gpu_lp), mean(&cpu_lp));
    eprintln!("{TEST}: loss (mean -logprob) gpu {:.5} cpu {:.5}", -lg, -lc);
    assert!((lg - lc).abs() < 0.05, "loss gpu {} vs cpu {}", -lg, -lc);
}

#[test]
fn smollm2_bf16_logits_and_loss_stay_close_to_cpu() {
    const TEST: &str = "smollm2_bf16_logits_and_loss_stay_close_to_cpu";
    let Some(gpu) = gpu_or_skip(TEST) else {
        return;
    };
    let Some(path) = super::smollm2_or_skip(TEST) else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let ids = engine.tokenizer().encode(PROMPT);
    let v = engine.config().vocab_size;
    let want = engine.logits(&ids).unwrap();
    let (_, w) = load_model(&path).unwrap();

    // Logits in the bf16 precision (bf16 weight copies and GEMM operands, f32
    // accumulation and residual stream). One rounding is ≤ 2^-8 relative; 30 layers put
    // about 30·8 + 2 ≈ 240 independent roundings on the path, ≈ 2^-8·√240 ≈ 6e-2
    // relative (rel-L2 over the vocabulary). Bound 0.15 (2.5×: a trained model's
    // outlier features make some roundings count more than others).
    let mut dec = GpuDecoder::new(&gpu, &w, ids.len()).unwrap();
    assert_eq!(dec.precision(), GpuPrecision::Bf16);
    let split = ids.len() - 4;
    let mut rows = vec![(split - 1, dec.forward_last(&gpu, &ids[..split]).unwrap())];
    for i in split..ids.len() {
        rows.push((i, dec.forward_last(&gpu, &ids[i..=i]).unwrap()));
    }
    for (i, got) in rows {
        let m = check_close(
            &got,
            &want[i * v..(i + 1) * v],
            Tolerance::new(f32::INFINITY, 0.0),
        )
        .unwrap();
        eprintln!("{TEST}: logits at {i}: {m:?}");
        assert!(m.rel_l2 < 0.15, "logits at {i}: rel-L2 {:.3e}", m.rel_l2);
    }

    // Per-token log-probs and their mean (the loss): a log-prob carries about √2 times
    // its logits' error, ≈ 0.1–0.3 nats on logits of magnitude ~10; 0.6 per token, and
    // 0.1 on the mean, where the errors' random signs mostly cancel.
    let positions: Vec<usize> = (1..ids.len()).collect();
    let (cpu_lp, _) = ssr_trainer::train::next_token_logprobs(&w, &ids, &positions, 1.0);
    let dw = DeviceWeights::upload_with(&gpu, &w, GpuPrecision::Bf16).unwrap();
    let (gpu_lp, _) = gpu.next_token_logprobs(&dw, &ids, &positions, 1.0).unwrap();
    let m = check_close(&gpu_lp, &cpu_lp, Tolerance::new(0.6, 0.0))
        .unwrap_or_else(|m| panic!("per-token log-probs: {m:?}"));
    eprintln!("{TEST}: log-probs: {m:?}");
    let mean = |x: &[f32]| x.iter().map(|&a| f64::from(a)).sum::<f64>() / x.len() as f64;
    let (lg, lc) = (mean(&gpu_lp), mean(&cpu_lp));
    eprintln!("{TEST}: loss (mean -logprob) gpu {:.5} cpu {:.5}", -lg, -lc);
    assert!((lg - lc).abs() < 0.1, "loss gpu {} vs cpu {}", -lg, -lc);
}
