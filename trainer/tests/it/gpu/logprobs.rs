//! The log-prob row pass from logits (forward, and the fused in-place logits gradient)
//! against `rl::logprobs_from_logits` and its backward, in f32 and bf16.

use ssr_trainer::gpu::GpuError;
use ssr_trainer::rl::{self};
use ssr_trainer::testing::{Tolerance, assert_close};

use super::{from_bf16, gpu_or_skip, random_targets, to_bf16};
use crate::grad::{random_vec, rng};

// Tolerance for log-probs and entropies from f32 or bf16-valued logits of magnitude ≲ 10:
// the kernel sums ~vocab/512 exponentials per thread in f32 with fast-math __expf (≈2 ulp)
// then combines 512 partials; relative error of the sum ≈ 1e-6, so logprob = x − m − log s
// is off by ≲ 1e-5 absolute. 1e-4 absolute + 1e-4 relative leaves a 10× margin.
pub(super) const LOGPROB_TOL: Tolerance = Tolerance::new(1e-4, 1e-4);
// Logits gradient in f32: entries are p_j-sized (≈ 1/vocab); p_j = exp(lp) carries the
// logprob's ≲1e-5 absolute error as a relative one. 1e-3 relative + 1e-7 absolute.
const DLOGITS_F32_TOL: Tolerance = Tolerance::new(1e-7, 1e-3);
// Logits gradient stored as bf16: 8 mantissa bits, rounding ≤ 2^-9 ≈ 2e-3 relative, on
// top of the f32 error above: 5e-3 relative.
const DLOGITS_BF16_TOL: Tolerance = Tolerance::new(1e-7, 5e-3);

#[test]
fn logprobs_from_logits_matches_cpu_twin_f32_and_bf16() {
    let Some(gpu) = gpu_or_skip("logprobs_from_logits_matches_cpu_twin_f32_and_bf16") else {
        return;
    };
    let mut r = rng(101);
    // 61: scalar path (vocab % 4 != 0); 1024 and 49152: 16-byte vector path.
    for (rows, vocab) in [(37usize, 61usize), (33, 1024), (4, 49152)] {
        for temperature in [1.0f32, 0.7] {
            let logits = random_vec(&mut r, rows * vocab, 8.0);
            let targets = random_targets(&mut r, rows, vocab);
            let t_dev = gpu.upload(&targets).unwrap();
            // f32 logits
            let (lp_ref, h_ref) = rl::logprobs_from_logits(&logits, &targets, vocab, temperature);
            let mut lp = gpu.upload(&vec![f32::NAN; rows]).unwrap();
            let mut h = gpu.upload(&vec![f32::NAN; rows]).unwrap();
            let l_dev = gpu.upload(&logits).unwrap();
            gpu.logprobs_from_logits(&l_dev, &t_dev, vocab, temperature, &mut lp, &mut h)
                .unwrap();
            assert_close(
                "logprob f32",
                &gpu.download(&lp).unwrap(),
                &lp_ref,
                LOGPROB_TOL,
            );
            assert_close(
                "entropy f32",
                &gpu.download(&h).unwrap(),
                &h_ref,
                LOGPROB_TOL,
            );
            // bf16 logits: the twin sees the same bf16 values widened to f32.
            let lb = to_bf16(&logits);
            let (lp_ref, h_ref) =
                rl::logprobs_from_logits(&from_bf16(&lb), &targets, vocab, temperature);
            let lb_dev = gpu.upload(&lb).unwrap();
            gpu.logprobs_from_logits(&lb_dev, &t_dev, vocab, temperature, &mut lp, &mut h)
                .unwrap();
            assert_close(
                "logprob bf16",
                &gpu.download(&lp).unwrap(),
                &lp_ref,
                LOGPROB_TOL,
            );
            assert_close(
                "entropy bf16",
                &gpu.download(&h).unwrap(),
                &h_ref,
                LOGPROB_TOL,
            );
        }
    }
}

#[test]
fn logprobs_fused_gradient_matches_cpu_twin_in_place() {
    let Some(gpu) = gpu_or_skip("logprobs_fused_gradient_matches_cpu_twin_in_place") else {
        return;
    };
    let mut r = rng(102);
    for (rows, vocab) in [(19usize, 61usize), (24, 4096)] {
        let temperature = 0.8;
        let logits = random_vec(&mut r, rows * vocab, 6.0);
        let targets = random_targets(&mut r, rows, vocab);
        let dlp = random_vec(&mut r, rows, 1.0);
        let dent = random_vec(&mut r, rows, 0.1);
        let t_dev = gpu.upload(&targets).unwrap();
        let dlp_dev = gpu.upload(&dlp).unwrap();
        let dent_dev = gpu.upload(&dent).unwrap();
        let mut lp = gpu.upload(&vec![f32::NAN; rows]).unwrap();
        let mut h = gpu.upload(&vec![f32::NAN; rows]).unwrap();

        // f32, in place, with and without the entropy gradient.
        for with_entropy in [false, true] {
            let de = with_entropy.then_some(dent.as_slice());
            let want =
                rl::logprobs_from_logits_backward(&logits, &targets, vocab, temperature, &dlp, de);
            let mut l_dev = gpu.upload(&logits).unwrap();
            let de_dev = with_entropy.then_some(&dent_dev);
            gpu.logprobs_from_logits_fused(
                &mut l_dev,
                &t_dev,
                vocab,
                temperature,
                &dlp_dev,
                de_dev,
                &mut lp,
                &mut h,
            )
            .unwrap();
            assert_close(
                "dlogits f32 fused",
                &gpu.download(&l_dev).unwrap(),
                &want,
                DLOGITS_F32_TOL,
            );
            let (lp_ref, _) = rl::logprobs_from_logits(&logits, &targets, vocab, temperature);
            assert_close(
                "logprob (fused pass)",
                &gpu.download(&lp).unwrap(),
                &lp_ref,
                LOGPROB_TOL,
            );
        }
        // bf16, in place.
        let lb = to_bf16(&logits);
        let want = rl::logprobs_from_logits_backward(
            &from_bf16(&lb),
            &targets,
            vocab,
            temperature,
            &dlp,
            Some(&dent),
        );
        let mut lb_dev = gpu.upload(&lb).unwrap();
        gpu.logprobs_from_logits_fused(
            &mut lb_dev,
            &t_dev,
            vocab,
            temperature,
            &dlp_dev,
            Some(&dent_dev),
            &mut lp,
            &mut h,
        )
        .unwrap();
        assert_close(
            "dlogits bf16 fused",
            &from_bf16(&gpu.download(&lb_dev).unwrap()),
            &want,
            DLOGITS_BF16_TOL,
        );
        // Separate output buffer (not in place), f32.
        let want =
            rl::logprobs_from_logits_backward(&logits, &targets, vocab, temperature, &dlp, None);
        let l_dev = gpu.upload(&logits).unwrap();
        let mut dl = gpu.upload(&vec![f32::NAN; rows * vocab]).unwrap();
        gpu.logprobs_from_logits_backward(
            &l_dev,
            &t_dev,
            vocab,
            temperature,
            &dlp_dev,
            None,
            &mut dl,
            &mut lp,
            &mut h,
        )
        .unwrap();
        assert_close(
            "dlogits f32",
            &gpu.download(&dl).unwrap(),
            &want,
            DLOGITS_F32_TOL,
        );
    }
}

#[test]
fn logprobs_shape_errors_are_typed_and_launch_nothing() {
    let Some(gpu) = gpu_or_skip("logprobs_shape_errors_are_typed_and_launch_nothing") else {
        return;
    };
    let l = gpu.upload(&[0.0f32; 10]).unwrap();
    let t = gpu.upload(&[0u32; 3]).unwrap();
    let mut lp = gpu.zeros::<f32>(3).unwrap();
    let mut h = gpu.zeros::<f32>(3).unwrap();
    let e = gpu
        .logprobs_from_logits(&l, &t, 4, 1.0, &mut lp, &mut h)
        .unwrap_err();
    assert!(
        matches!(
            e,
            GpuError::Shape {
                expected: 12,
                got: 10,
                ..
            }
        ),
        "{e}"
    );
    let e = gpu
        .logprobs_from_logits(&l, &t, 0, 1.0, &mut lp, &mut h)
        .unwrap_err();
    assert!(matches!(e, GpuError::Invalid { .. }), "{e}");
}
