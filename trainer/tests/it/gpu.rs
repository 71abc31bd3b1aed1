//! GPU parity tests: every kernel against its CPU twin on fresh random inputs, with a
//! tolerance per dtype (each commented with how it was chosen). Without a GPU each test
//! prints why it skipped and passes; the no-GPU behaviour itself is tested here too.
//!
//! Run on a GPU machine with `scripts/gpu_check.sh` (the carried test binary).
#![cfg(feature = "cuda")]

use half::bf16;
use ssr_trainer::cpu::matmul::{matmul_nn, matmul_nt, matmul_tn};
use ssr_trainer::gpu::lm_head::{LmHeadInputs, LmHeadOutputs, LmHeadShape, LmHeadWorkspace};
use ssr_trainer::gpu::rl::{AdvantageCode, ClipSettings, PolicyLossInputs};
use ssr_trainer::gpu::{Gpu, GpuError, LibraryProbe};
use ssr_trainer::rl::{self, AdvantageKind, Aggregation, LossConfig};
use ssr_trainer::testing::{Tolerance, assert_close};

use crate::grad::{random_vec, rng};

/// The GPU, or `None` after printing why the test is skipped. Any failure other than
/// "no GPU" is a real failure of the backend and fails the test.
fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match Gpu::open() {
        Ok(g) => Some(g),
        Err(e @ GpuError::NoGpu { .. }) => {
            eprintln!("skipping {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: opening the GPU failed: {e}"),
    }
}

fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

fn from_bf16(x: &[bf16]) -> Vec<f32> {
    x.iter().map(|v| v.to_f32()).collect()
}

fn random_targets(r: &mut rand_chacha::ChaCha8Rng, n: usize, vocab: usize) -> Vec<u32> {
    use rand::Rng;
    (0..n).map(|_| r.gen_range(0..vocab as u32)).collect()
}

#[test]
fn open_without_gpu_is_a_typed_error_not_a_panic() {
    // On a machine without CUDA this must be NoGpu; on a GPU machine it must open.
    match Gpu::open() {
        Ok(g) => {
            assert!(g.info().compute_capability.0 >= 7, "{:?}", g.info());
            assert!(g.arch().starts_with("--gpu-architecture=sm_"));
        }
        Err(e) => assert!(e.is_no_gpu(), "expected NoGpu, got {e}"),
    }
    let probe = LibraryProbe::run();
    if !probe.driver {
        assert!(
            probe
                .require_compute()
                .unwrap_err()
                .to_string()
                .contains("libcuda")
        );
    }
}

#[test]
fn every_kernel_source_compiles_with_nvrtc() {
    // Needs only libnvrtc (no GPU): `pip download nvidia-cuda-nvrtc==13.0.*`, unzip, and put
    // its lib folder on LD_LIBRARY_PATH to run this on a CPU-only machine.
    if !LibraryProbe::run().nvrtc {
        eprintln!("skipping every_kernel_source_compiles_with_nvrtc: libnvrtc not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let arch = ssr_trainer::gpu::compile::arch_flag(9, 0);
    for src in ssr_trainer::gpu::compile::KernelSource::ALL {
        let ptx = ssr_trainer::gpu::compile::compile(src, &arch, dir.path())
            .unwrap_or_else(|e| panic!("{}: {e}", src.file_name()));
        assert!(ptx.contains(".target sm_90"), "{}", src.file_name());
        // The second call is served from the cache.
        let again = ssr_trainer::gpu::compile::compile(src, &arch, dir.path()).unwrap();
        assert_eq!(ptx, again);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        ssr_trainer::gpu::compile::KernelSource::ALL.len()
    );
}

// Tolerance for log-probs and entropies from f32 or bf16-valued logits of magnitude ≲ 10:
// the kernel sums ~vocab/512 exponentials per thread in f32 with fast-math __expf (≈2 ulp)
// then combines 512 partials; relative error of the sum ≈ 1e-6, so logprob = x − m − log s
// is off by ≲ 1e-5 absolute. 1e-4 absolute + 1e-4 relative leaves a 10× margin.
const LOGPROB_TOL: Tolerance = Tolerance::new(1e-4, 1e-4);
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

#[test]
fn advantages_match_cpu_twin_on_ragged_groups() {
    let Some(gpu) = gpu_or_skip("advantages_match_cpu_twin_on_ragged_groups") else {
        return;
    };
    let mut r = rng(104);
    // Ragged: an empty group, a group of one, equal rewards, and ordinary groups.
    let offsets = [0usize, 0, 1, 5, 9, 17, 17, 30];
    let mut rewards = random_vec(&mut r, 30, 1.0);
    rewards[5..9].fill(0.5);
    let r_dev = gpu.upload(&rewards).unwrap();
    for (kind, code) in [
        (AdvantageKind::Grpo, AdvantageCode::Grpo),
        (AdvantageKind::DrGrpo, AdvantageCode::DrGrpo),
        (AdvantageKind::Rloo, AdvantageCode::Rloo),
    ] {
        let want = rl::advantages(&rewards, &offsets, kind, 1e-6);
        let mut out = gpu.upload(&[f32::NAN; 30]).unwrap();
        gpu.advantages(&r_dev, &offsets, code, 1e-6, &mut out)
            .unwrap();
        // Both sides compute in f64 and round once to f32: at most 1 ulp apart.
        assert_close(
            &format!("advantages {kind:?}"),
            &gpu.download(&out).unwrap(),
            &want,
            Tolerance::new(1e-7, 1e-6),
        );
    }
    let mut out = gpu.zeros::<f32>(30).unwrap();
    let e = gpu
        .advantages(&r_dev, &[0, 5, 3, 30], AdvantageCode::Grpo, 1e-6, &mut out)
        .unwrap_err();
    assert!(matches!(e, GpuError::Invalid { .. }), "{e}");
}

#[test]
fn policy_loss_matches_cpu_twin_ppo_dapo_kl() {
    let Some(gpu) = gpu_or_skip("policy_loss_matches_cpu_twin_ppo_dapo_kl") else {
        return;
    };
    let mut r = rng(105);
    let n = 3000;
    let seq_offsets = [0usize, 700, 1500, 1501, 3000];
    let logp = random_vec(&mut r, n, 1.0)
        .iter()
        .map(|x| x - 2.0)
        .collect::<Vec<_>>();
    // Ratios spread over [e^-0.4, e^0.4] so both clip sides are hit.
    let old: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.4))
        .map(|(l, d)| l + d)
        .collect();
    let refl: Vec<f32> = logp
        .iter()
        .zip(random_vec(&mut r, n, 0.3))
        .map(|(l, d)| l + d)
        .collect();
    let adv = random_vec(&mut r, n, 1.5);
    let mask: Vec<f32> = random_vec(&mut r, n, 1.0)
        .iter()
        .map(|&x| if x > -0.5 { 1.0 } else { 0.0 })
        .collect();
    let dev = |x: &[f32]| gpu.upload(x).unwrap();
    let (lp_d, old_d, ref_d, adv_d, mask_d) =
        (dev(&logp), dev(&old), dev(&refl), dev(&adv), dev(&mask));
    for (clip_low, clip_high, kl_coef, agg) in [
        (0.2f32, 0.2f32, 0.0f32, Aggregation::TokenMean), // PPO
        (0.2, 0.28, 0.0, Aggregation::TokenMean),         // DAPO clip-higher
        (0.2, 0.28, 0.05, Aggregation::SequenceMean),     // with k3 KL
        (0.2, 0.28, 0.05, Aggregation::TokenSum { divisor: 4096.0 }),
    ] {
        let cfg = LossConfig {
            clip_low,
            clip_high,
            kl_coef,
            aggregation: agg,
        };
        let refp = (kl_coef > 0.0).then_some(refl.as_slice());
        let want = rl::policy_loss(&logp, &old, refp, &adv, &mask, &seq_offsets, &cfg);
        let weights = rl::aggregation_weights(&mask, &seq_offsets, agg);
        let w_d = dev(&weights);
        let inp = PolicyLossInputs {
            logp: &lp_d,
            old_logp: &old_d,
            ref_logp: (kl_coef > 0.0).then_some(&ref_d),
            advantages: &adv_d,
            mask: &mask_d,
            weights: &w_d,
        };
        let mut dlogp = gpu.upload(&vec![f32::NAN; n]).unwrap();
        let got = gpu
            .weighted_policy_loss(
                &inp,
                &ClipSettings {
                    clip_low,
                    clip_high,
                    kl_coef,
                },
                &mut dlogp,
            )
            .unwrap();
        // f32 ratio via fast-math __expf (≈2 ulp) against the twin's f64: 1e-5 relative
        // per token, plus 1e-9 absolute for weights ~1/tokens.
        assert_close(
            "dlogp",
            &gpu.download(&dlogp).unwrap(),
            &want.dlogp,
            Tolerance::new(1e-9, 1e-5),
        );
        // Sums of 3000 terms (f64 accumulation on both sides) of f32 per-token values.
        let tol = Tolerance::new(1e-6, 1e-5);
        assert_close(
            "loss",
            &[got.loss, got.pg_loss, got.kl, got.ratio_mean],
            &[want.loss, want.pg_loss, want.kl, want.ratio_mean],
            tol,
        );
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(
            got.clipped_tokens, want.clipped_tokens,
            "a ratio on the clip boundary would differ; none is drawn here"
        );
        assert!(got.clipped_tokens > 0, "inputs must exercise the clip");
    }
}

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

#[test]
fn adamw_three_steps_with_clipping_match_cpu_twin() {
    use ssr_trainer::gpu::optim::{GpuAdamW, GpuParam};
    use ssr_trainer::optim::{AdamW, AdamWConfig};
    let Some(gpu) = gpu_or_skip("adamw_three_steps_with_clipping_match_cpu_twin") else {
        return;
    };
    let mut r = rng(108);
    let cfg = ssr_trainer::Config::tiny();
    let mut weights = ssr_trainer::Weights::zeros(&cfg);
    weights.for_each_mut(|_, w| {
        w.iter_mut()
            .for_each(|x| *x = rand::Rng::gen_range(&mut r, -1.0..1.0))
    });
    let config = AdamWConfig {
        lr: 1e-2,
        warmup_steps: 2,
        max_grad_norm: Some(0.5),
        ..AdamWConfig::default()
    };
    let mut cpu = AdamW::new(config, &cfg);
    let names: Vec<String> = weights.tensors().iter().map(|(n, _)| n.clone()).collect();
    let lens: Vec<usize> = weights.tensors().iter().map(|(_, t)| t.len()).collect();
    let mut w_dev: Vec<_> = weights
        .tensors()
        .iter()
        .map(|(_, t)| gpu.upload(t).unwrap())
        .collect();
    let mut gpu_opt = GpuAdamW::new(&gpu, config, &lens).unwrap();
    for step in 0..3 {
        let mut grads = ssr_trainer::Weights::zeros(&cfg);
        grads.for_each_mut(|_, g| {
            g.iter_mut()
                .for_each(|x| *x = rand::Rng::gen_range(&mut r, -0.3..0.3))
        });
        let g_dev: Vec<_> = grads
            .tensors()
            .iter()
            .map(|(_, t)| gpu.upload(t).unwrap())
            .collect();
        let want = cpu.step(&mut weights, &mut grads);
        let mut params: Vec<GpuParam<'_>> = names
            .iter()
            .zip(w_dev.iter_mut())
            .zip(&g_dev)
            .map(|((name, w), g)| GpuParam {
                name,
                weight: w,
                grad: g,
                weight_bf16: None,
            })
            .collect();
        let got = gpu_opt.step(&gpu, &mut params).unwrap();
        assert_eq!(
            (got.step, got.clipped),
            (want.step, want.clipped),
            "step {step}"
        );
        assert_close(
            "grad_norm",
            &[got.grad_norm],
            &[want.grad_norm],
            Tolerance::new(0.0, 1e-6),
        );
        for ((name, t), d) in weights.tensors().iter().zip(&w_dev) {
            // Same f32/f64 operations in the same order (no fast math in optim.cu); the
            // clip scale comes from a norm summed in another order (≤1e-15 relative), so
            // results agree to an ulp or two of the update.
            assert_close(
                name,
                &gpu.download(d).unwrap(),
                t,
                Tolerance::new(1e-7, 1e-6),
            );
        }
    }
}

#[test]
fn sequence_backward_matches_cpu_twin_on_tiny_model() {
    use ssr_trainer::gpu::model::DeviceWeights;
    let Some(gpu) = gpu_or_skip("sequence_backward_matches_cpu_twin_on_tiny_model") else {
        return;
    };
    let mut r = rng(109);
    let cfg = ssr_trainer::Config::tiny();
    let mut w = ssr_trainer::Weights::zeros(&cfg);
    w.for_each_mut(|name, t| {
        let scale = if name.contains("norm") { 0.2 } else { 0.3 };
        t.iter_mut().for_each(|x| {
            *x = if name.contains("norm") { 1.0 } else { 0.0 }
                + rand::Rng::gen_range(&mut r, -scale..scale)
        });
    });
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

    let dw = DeviceWeights::upload(&gpu, &w).unwrap();
    let mut dg = DeviceWeights::zeros(&gpu, &cfg).unwrap();
    let got = gpu
        .sequence_backward(&dw, &tokens, &positions, 0.9, |_| dlp.clone(), &mut dg)
        .unwrap();
    // The LM head runs on bf16 hidden states and weights (8 mantissa bits): log-probs of
    // a 64-entry vocabulary move by ≲ 1e-2 absolute.
    assert_close(
        "sequence logprob",
        &got.logprob,
        &want.logprob,
        Tolerance::new(2e-2, 1e-2),
    );
    assert_close(
        "sequence entropy",
        &got.entropy,
        &want.entropy,
        Tolerance::new(2e-2, 1e-2),
    );
    // Gradients carry the bf16 LM head's error through every layer: compare by relative
    // L2 norm per tensor (METHOD: bf16 operands land between 1e-3 and 1e-2).
    let host = dg.to_host(&gpu).unwrap();
    for ((name, g), (_, want_g)) in host.tensors().iter().zip(grads.tensors().iter()) {
        let m = ssr_trainer::testing::check_close(g, want_g, Tolerance::new(f32::INFINITY, 0.0))
            .unwrap();
        assert!(
            m.rel_l2 < 3e-2,
            "{name}: relative L2 error {:.2e}",
            m.rel_l2
        );
    }
}

#[test]
fn nccl_communicator_world_size_one_all_reduce_is_identity() {
    use ssr_trainer::gpu::nccl::{Communicator, new_unique_id};
    let Some(gpu) = gpu_or_skip("nccl_communicator_world_size_one_all_reduce_is_identity") else {
        return;
    };
    if !LibraryProbe::run().nccl {
        eprintln!(
            "skipping nccl_communicator_world_size_one_all_reduce_is_identity: libnccl not found"
        );
        return;
    }
    let id = new_unique_id().unwrap();
    assert_eq!(id.len(), 256);
    let comm = Communicator::init(&gpu, 0, 1, &id).unwrap();
    let x = random_vec(&mut rng(110), 1000, 1.0);
    let mut d = gpu.upload(&x).unwrap();
    comm.all_reduce_mean(&mut d).unwrap();
    assert_eq!(
        gpu.download(&d).unwrap(),
        x,
        "the mean over one rank is the input"
    );
    assert!(
        Communicator::init(&gpu, 1, 1, &id).is_err(),
        "rank outside the world is a typed error"
    );
}

#[test]
fn gpu_decoder_prefill_and_decode_match_cpu_forward_logits() {
    use ssr_trainer::gpu::generate::GpuDecoder;
    use ssr_trainer::infer::sampling::SamplingOptions;
    let Some(gpu) = gpu_or_skip("gpu_decoder_prefill_and_decode_match_cpu_forward_logits") else {
        return;
    };
    let mut r = rng(111);
    let cfg = ssr_trainer::Config::tiny();
    let mut w = ssr_trainer::Weights::zeros(&cfg);
    w.for_each_mut(|name, t| {
        let base = if name.contains("norm") { 1.0 } else { 0.0 };
        t.iter_mut()
            .for_each(|x| *x = base + rand::Rng::gen_range(&mut r, -0.3..0.3));
    });
    let tokens = random_targets(&mut r, 20, cfg.vocab_size);
    // CPU: logits of every position from the training forward.
    let acts = ssr_trainer::train::forward(&w, &tokens);
    let mut want = vec![0.0; tokens.len() * cfg.vocab_size];
    matmul_nt(
        &mut want,
        &acts.hidden,
        w.lm_head(),
        tokens.len(),
        cfg.dim,
        cfg.vocab_size,
        false,
    );
    let v = cfg.vocab_size;
    let mut dec = GpuDecoder::new(&gpu, &w, 32).unwrap();
    // Prefill 12 tokens, then decode the remaining 8 one at a time (attention over the
    // cache with a query offset).
    let got = dec.forward_last(&gpu, &tokens[..12]).unwrap();
    // f32 throughout, fast-math exp in attention: 1e-4 on logits of order 1.
    let tol = Tolerance::new(1e-4, 1e-4);
    assert_close("prefill logits", &got, &want[11 * v..12 * v], tol);
    for i in 12..tokens.len() {
        let got = dec.forward_last(&gpu, &tokens[i..=i]).unwrap();
        assert_close(
            &format!("decode logits at {i}"),
            &got,
            &want[i * v..(i + 1) * v],
            tol,
        );
    }
    assert_eq!(dec.len(), tokens.len());
    assert!(
        dec.forward_last(&gpu, &[0; 13]).is_err(),
        "over capacity is a typed error"
    );
    // Greedy generation is deterministic and stops at max_tokens.
    let greedy = SamplingOptions {
        temperature: 0.0,
        ..SamplingOptions::default()
    };
    let a = dec
        .generate(&gpu, &tokens[..5], 6, greedy.clone(), &[])
        .unwrap();
    let b = dec.generate(&gpu, &tokens[..5], 6, greedy, &[]).unwrap();
    assert_eq!(a.token_ids, b.token_ids);
    assert_eq!(a.token_ids.len(), 6);
}

#[test]
fn gpu_train_step_matches_cpu_step_on_tiny_model() {
    use ssr_trainer::gpu::train::{GpuTrainer, TrainSequence};
    use ssr_trainer::optim::AdamW;
    use ssr_trainer::rl::{PolicyLossOutput, aggregation_weights, weighted_policy_loss};
    let Some(gpu) = gpu_or_skip("gpu_train_step_matches_cpu_step_on_tiny_model") else {
        return;
    };
    let mut r = rng(112);
    let cfg = ssr_trainer::Config::tiny();
    let mut w = ssr_trainer::Weights::zeros(&cfg);
    w.for_each_mut(|name, t| {
        let base = if name.contains("norm") { 1.0 } else { 0.0 };
        t.iter_mut()
            .for_each(|x| *x = base + rand::Rng::gen_range(&mut r, -0.3..0.3));
    });
    let mut tc = ssr_trainer::train::TrainConfig::default();
    tc.adamw.lr = 1e-3;
    tc.adamw.warmup_steps = 0;
    let seqs: Vec<(Vec<u32>, Vec<usize>, Vec<f32>, f32)> = [(30usize, 1.0f32), (22, -0.5)]
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

    // The CPU twin of one session step on this batch.
    let mut offsets = vec![0usize];
    for s in &seqs {
        offsets.push(offsets[offsets.len() - 1] + s.1.len());
    }
    let weights = aggregation_weights(&vec![1.0; offsets[2]], &offsets, tc.loss.aggregation);
    let mut grads = ssr_trainer::Weights::zeros(&cfg);
    let mut parts = Vec::new();
    let mut cpu_w = w.clone();
    for (i, (toks, pos, old, adv)) in seqs.iter().enumerate() {
        let advs = vec![*adv; pos.len()];
        let mask = vec![1.0; pos.len()];
        let ws = &weights[offsets[i]..offsets[i + 1]];
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
    let mut opt = AdamW::new(tc.adamw, &cfg);
    let want_stats = opt.step(&mut cpu_w, &mut grads);

    let mut trainer = GpuTrainer::new(&gpu, &w, None, tc.clone(), None, None).unwrap();
    let batch: Vec<TrainSequence<'_>> = seqs
        .iter()
        .map(|(t, p, o, a)| TrainSequence {
            tokens: t,
            positions: p,
            old_logp: o,
            advantage: *a,
        })
        .collect();
    let got = trainer.step(&gpu, &batch).unwrap();
    // bf16 LM head on the GPU (8 mantissa bits): the loss and norm within 3%.
    let tol = Tolerance::new(1e-4, 3e-2);
    assert_close(
        "loss",
        &[got.loss, got.grad_norm],
        &[want_loss.loss, want_stats.grad_norm],
        tol,
    );
    assert_eq!(got.trained_tokens, want_loss.tokens);
    // A first Adam step moves each weight by about lr · sign(g): a gradient error can at
    // worst flip a tiny gradient's sign, a 2·lr difference; 2.5·lr bounds it.
    let host = trainer.weights_to_host(&gpu).unwrap();
    for ((name, g), (_, c)) in host.tensors().iter().zip(cpu_w.tensors().iter()) {
        assert_close(name, g, c, Tolerance::new(2.5e-3, 0.0));
    }
}
