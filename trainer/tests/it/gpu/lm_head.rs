//! The fused LM head (chunked GEMM, row pass, loss gradient, hidden and weight
//! gradients) against the same composition on the CPU.

use ssr_trainer::cpu::matmul::{matmul_nn, matmul_nt, matmul_tn};
use ssr_trainer::gpu::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use ssr_trainer::rl::{self};
use ssr_trainer::testing::{Tolerance, assert_close};

use super::logprobs::LOGPROB_TOL;
use super::{from_bf16, gpu_or_skip, random_targets, to_bf16};
use crate::grad::{random_vec, rng};

/// CPU composition of the fused LM head: logits = h Wᵀ, the twin's row pass, then
/// dh = dlogits W and dW = dlogitsᵀ h, all in f32 from the same bf16 inputs.
struct LmHeadRef {
    logprob: Vec<f32>,
    entropy: Vec<f32>,
    dhidden: Vec<f32>,
    dweight: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn lm_head_reference(
    h: &[f32],
    w: &[f32],
    targets: &[u32],
    n: usize,
    d: usize,
    v: usize,
    temperature: f32,
    dlp: &[f32],
    dent: Option<&[f32]>,
) -> LmHeadRef {
    let mut logits = vec![0.0; n * v];
    matmul_nt(&mut logits, h, w, n, d, v, false);
    let (logprob, entropy) = rl::logprobs_from_logits(&logits, targets, v, temperature);
    let dl = rl::logprobs_from_logits_backward(&logits, targets, v, temperature, dlp, dent);
    let mut dhidden = vec![0.0; n * d];
    matmul_nn(&mut dhidden, &dl, w, n, v, d, false);
    let mut dweight = vec![0.0; v * d];
    matmul_tn(&mut dweight, &dl, h, v, n, d, false);
    LmHeadRef {
        logprob,
        entropy,
        dhidden,
        dweight,
    }
}

fn scaled_tol(reference: &[f32], frac: f32) -> Tolerance {
    let max = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    Tolerance::new(frac * max, frac)
}

#[test]
fn lm_head_loss_matches_cpu_composition_across_chunks() {
    let Some(gpu) = gpu_or_skip("lm_head_loss_matches_cpu_composition_across_chunks") else {
        return;
    };
    let mut r = rng(103);
    // vocab 1000: vector path; 998: scalar path (998 % 4 != 0). 70 tokens in chunks of 32
    // rows (a budget of 32 rows), so the last chunk is partial and dW accumulates over 3.
    for (n, d, v) in [(70usize, 64usize, 1000usize), (45, 32, 998)] {
        let temperature = 1.0;
        let h = from_bf16(&to_bf16(&random_vec(&mut r, n * d, 1.0)));
        let w = from_bf16(&to_bf16(&random_vec(&mut r, v * d, 0.5)));
        let targets = random_targets(&mut r, n, v);
        let dlp = random_vec(&mut r, n, 1.0);
        let dent = random_vec(&mut r, n, 0.1);
        let want = lm_head_reference(&h, &w, &targets, n, d, v, temperature, &dlp, Some(&dent));

        let h_dev = gpu.upload(&to_bf16(&h)).unwrap();
        let w_dev = gpu.upload(&to_bf16(&w)).unwrap();
        let t_dev = gpu.upload(&targets).unwrap();
        let dlp_dev = gpu.upload(&dlp).unwrap();
        let dent_dev = gpu.upload(&dent).unwrap();
        let mut lp = gpu.upload(&vec![f32::NAN; n]).unwrap();
        let mut en = gpu.upload(&vec![f32::NAN; n]).unwrap();
        let mut dh = gpu.upload(&vec![f32::NAN; n * d]).unwrap();
        let mut dw = gpu.zeros::<f32>(v * d).unwrap();
        let mut ws = LmHeadWorkspace::new(&gpu, v, 32 * v * 6).unwrap();
        assert_eq!(ws.chunk_rows, 32);
        let shape = LmHeadShape {
            tokens: n,
            dim: d,
            vocab: v,
            temperature,
        };
        let inp = LmHeadInputs {
            hidden: &h_dev,
            weight: &w_dev,
            targets: &t_dev,
            dlogprob: Some(&dlp_dev),
            dentropy: Some(&dent_dev),
        };
        let mut out = LmHeadOutputs {
            logprob: &mut lp,
            entropy: &mut en,
            dhidden: Some(&mut dh),
            dweight: Some(&mut dw),
        };
        gpu.lm_head_loss(&shape, &inp, &mut out, &mut ws).unwrap();

        // Logits come from a bf16×bf16 GEMM with f32 accumulation over d ≤ 64 terms: exact
        // products, ~1e-6 relative sums, so the log-prob tolerance above applies.
        assert_close(
            "lm_head logprob",
            &gpu.download(&lp).unwrap(),
            &want.logprob,
            LOGPROB_TOL,
        );
        assert_close(
            "lm_head entropy",
            &gpu.download(&en).unwrap(),
            &want.entropy,
            LOGPROB_TOL,
        );
        // The backward GEMMs read the bf16-rounded logits gradient (≤ 2^-9 relative per
        // element, random signs, summed over vocab or token terms): 2% of the largest
        // entry absolute plus 2% relative bounds that with margin.
        assert_close(
            "lm_head dhidden",
            &gpu.download(&dh).unwrap(),
            &want.dhidden,
            scaled_tol(&want.dhidden, 2e-2),
        );
        assert_close(
            "lm_head dweight",
            &gpu.download(&dw).unwrap(),
            &want.dweight,
            scaled_tol(&want.dweight, 2e-2),
        );

        // Forward only: same log-probs, no gradient buffers.
        let inp = LmHeadInputs {
            dlogprob: None,
            dentropy: None,
            ..inp
        };
        let mut lp2 = gpu.upload(&vec![f32::NAN; n]).unwrap();
        let mut out = LmHeadOutputs {
            logprob: &mut lp2,
            entropy: &mut en,
            dhidden: None,
            dweight: None,
        };
        gpu.lm_head_loss(&shape, &inp, &mut out, &mut ws).unwrap();
        assert_close(
            "lm_head logprob (forward only)",
            &gpu.download(&lp2).unwrap(),
            &want.logprob,
            LOGPROB_TOL,
        );
    }
}
