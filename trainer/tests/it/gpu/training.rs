//! Whole-model work on the device: AdamW steps, one sequence's backward, the NCCL
//! communicator at world size 1, the decoder's logits, and a train step, each against
//! the CPU path.

use ssr_trainer::cpu::matmul::matmul_nt;
use ssr_trainer::gpu::{GpuPrecision, LibraryProbe};
use ssr_trainer::testing::{Tolerance, assert_close};

use super::{gpu_or_skip, random_targets};
use crate::grad::{random_vec, rng};

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
        super::skip(
            "nccl_communicator_world_size_one_all_reduce_is_identity",
            "libnccl not found",
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
    // The f32 reference mode (GpuDecoder::new is bf16 by default; see gpu::bf16 for it).
    let mut dec = GpuDecoder::with_precision(&gpu, &w, 32, GpuPrecision::F32).unwrap();
    // Prefill 12 tokens, then decode the remaining 8 one at a time (attention over the
    // cache with a query offset).
    let got = dec.forward_last(&gpu, &tokens[..12]).unwrap();
    // f32 throughout, fast-math exp in attention: 1e-4 on logits of order 1.
    let tol = GpuPrecision::F32.tolerance().logits;
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

/// tokens, trained positions, behaviour log-probs, advantage.
type BatchItem = (Vec<u32>, Vec<usize>, Vec<f32>, f32);

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
    let seqs: Vec<BatchItem> = [(30usize, 1.0f32), (22, -0.5)]
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

    // The f32 reference mode (GpuTrainer::new is bf16 by default; see gpu::bf16 for it).
    let mut trainer =
        GpuTrainer::with_precision(&gpu, &w, None, tc.clone(), None, None, GpuPrecision::F32)
            .unwrap();
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
    let tol = GpuPrecision::F32.tolerance();
    assert_close("loss", &[got.loss], &[want_loss.loss], tol.loss);
    assert_close(
        "grad norm",
        &[got.grad_norm],
        &[want_stats.grad_norm],
        tol.grad_norm,
    );
    assert_eq!(got.trained_tokens, want_loss.tokens);
    // A first Adam step moves each weight by about lr · sign(g): a gradient error can at
    // worst flip a tiny gradient's sign, a 2·lr difference; 2.5·lr bounds it.
    let host = trainer.weights_to_host(&gpu).unwrap();
    for ((name, g), (_, c)) in host.tensors().iter().zip(cpu_w.tensors().iter()) {
        assert_close(name, g, c, Tolerance::new(2.5e-3, 0.0));
    }
}
