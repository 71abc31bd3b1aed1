//! Training end to end on tiny random models: supervised loss falls, the training
//! forward agrees with the inference engine, checkpoints resume bit-for-bit, and RL
//! on a trajectory file moves log-likelihoods in the direction of the advantages.

use crate::grad::{random_vec, rng};
use rand::Rng;
use ssr_trainer::checkpoint;
use ssr_trainer::infer::forward::{KvCache, LogitsFor, ModelRef, RopeTable, forward};
use ssr_trainer::optim::{AdamW, AdamWConfig};
use ssr_trainer::rl::{Aggregation, LossConfig, logprobs_from_logits};
use ssr_trainer::train::{
    Dataset, TrainConfig, TrainJob, TrainOverrides, TrainSession, next_token_logprobs,
    next_token_loss, run_job,
};
use ssr_trainer::trajectory::{Role, Trajectory, write_trajectories};
use ssr_trainer::{Config, Device, Weights};
use std::collections::BTreeMap;

pub(crate) fn random_weights(config: &Config, seed: u64) -> Weights {
    let mut r = rng(seed);
    let mut w = Weights::zeros(config);
    w.for_each_mut(|name, t| {
        let v: Vec<f32> = if name.contains("norm") {
            vec![1.0; t.len()]
        } else {
            random_vec(&mut r, t.len(), 0.3)
        };
        t.copy_from_slice(&v);
    });
    w
}

#[test]
fn training_forward_agrees_with_the_inference_engine() {
    let config = Config::tiny();
    let w = random_weights(&config, 1);
    let tokens = [3u32, 14, 15, 9, 26, 5, 35, 8, 9, 7];
    let positions: Vec<usize> = (1..tokens.len()).collect();
    let (train_lp, _) = next_token_logprobs(&w, &tokens, &positions, 1.0);
    let rope = RopeTable::new(&config);
    let mut cache = KvCache::new(&config, tokens.len());
    let logits = forward(
        ModelRef {
            w: &w,
            q8: None,
            bf16: None,
            rope: &rope,
        },
        &mut cache,
        &tokens,
        LogitsFor::All,
    );
    let v = config.vocab_size;
    let (infer_lp, _) =
        logprobs_from_logits(&logits[..(tokens.len() - 1) * v], &tokens[1..], v, 1.0);
    for (a, b) in train_lp.iter().zip(&infer_lp) {
        // Same maths, different summation orders in f32.
        assert!((a - b).abs() < 1e-4, "{train_lp:?} vs {infer_lp:?}");
    }
}

#[test]
fn supervised_loss_falls_on_a_fixed_batch() {
    let config = Config::tiny();
    let mut w = random_weights(&config, 2);
    let batch: [&[u32]; 2] = [
        &[1, 7, 3, 9, 7, 3, 9, 7, 3, 9],
        &[2, 5, 5, 8, 5, 5, 8, 5, 5],
    ];
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: 1e-2,
            warmup_steps: 5,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        &config,
    );
    let mut losses = Vec::new();
    for _ in 0..40 {
        let mut grads = Weights::zeros(&config);
        let loss: f32 = batch
            .iter()
            .map(|t| next_token_loss(&w, t, &mut grads))
            .sum::<f32>()
            / 2.0;
        grads.for_each_mut(|_, g| g.iter_mut().for_each(|x| *x /= 2.0));
        opt.step(&mut w, &mut grads);
        losses.push(loss);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    // Uniform over 64 tokens is ln 64 ≈ 4.16; the sequences are periodic, so a model
    // that learns them goes far below.
    assert!(
        first > 3.5 && last < 0.5 * first,
        "loss {first} -> {last}: {losses:?}"
    );
}

/// A group of on-policy trajectories: a shared prompt, then different continuations.
pub(crate) fn trajectories(w: &Weights, seed: u64) -> Vec<Trajectory> {
    let mut r = rng(seed);
    let vocab = w.config.vocab_size as u32;
    let mut out = Vec::new();
    for g in 0..2 {
        let prompt: Vec<u32> = (0..4).map(|_| r.gen_range(0..vocab)).collect();
        for k in 0..4 {
            let mut tokens = prompt.clone();
            tokens.extend((0..5).map(|_| r.gen_range(0..vocab)));
            let mask: Vec<u8> = (0..tokens.len())
                .map(|i| u8::from(i >= prompt.len()))
                .collect();
            let positions: Vec<usize> = (prompt.len()..tokens.len()).collect();
            let (lp, _) = next_token_logprobs(w, &tokens, &positions, 1.0);
            let mut logprobs = vec![0.0; tokens.len()];
            for (&p, l) in positions.iter().zip(lp) {
                logprobs[p] = l;
            }
            out.push(Trajectory {
                role: if g == 0 { Role::Solver } else { Role::Injector },
                group_id: format!("group-{g}"),
                token_ids: tokens,
                loss_mask: mask,
                logprobs,
                reward: if k % 2 == 0 { 1.0 } else { -1.0 },
                advantage: None,
                temperature: None,
                top_p: None,
                metadata: serde_json::json!({ "k": k }),
            });
        }
    }
    out
}

pub(crate) fn session_config() -> TrainConfig {
    TrainConfig {
        adamw: AdamWConfig {
            lr: 3e-3,
            warmup_steps: 3,
            ..AdamWConfig::default()
        },
        loss: LossConfig {
            kl_coef: 0.05,
            aggregation: Aggregation::SequenceMean,
            ..LossConfig::default()
        },
        batch_size: 3, // minibatches of 3 out of 8: exercises the permutation across epochs
        seed: 9,
        ..TrainConfig::default()
    }
}

#[test]
fn resumed_training_equals_uninterrupted_training_bit_for_bit() {
    let config = Config::tiny();
    let w0 = random_weights(&config, 3);
    let data = Dataset::new(
        &trajectories(&w0, 4),
        &config,
        session_config().advantage,
        1e-6,
    )
    .unwrap();
    let (n, m) = (3, 4);

    let mut straight = TrainSession::new(w0.clone(), session_config());
    straight.set_reference(w0.clone()).unwrap();
    for _ in 0..n + m {
        straight.step(&data).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let mut first = TrainSession::new(w0.clone(), session_config());
    first.set_reference(w0.clone()).unwrap();
    for _ in 0..n {
        first.step(&data).unwrap();
    }
    first.save(dir.path()).unwrap();
    drop(first);
    let mut resumed = TrainSession::resume(dir.path()).unwrap();
    assert_eq!(resumed.step_count(), n);
    resumed.set_reference(w0.clone()).unwrap();
    for _ in 0..m {
        resumed.step(&data).unwrap();
    }
    assert_eq!(resumed.step_count(), n + m);
    assert!(
        resumed.weights == straight.weights,
        "weights differ after resume"
    );
    assert!(
        resumed.optimizer == straight.optimizer,
        "optimizer state differs after resume"
    );
    assert_ne!(straight.weights, w0, "training changed nothing");
}

#[test]
fn minibatches_cover_the_dataset_and_depend_only_on_seed_and_step() {
    let config = Config::tiny();
    let w = random_weights(&config, 5);
    let data = Dataset::new(
        &trajectories(&w, 6),
        &config,
        session_config().advantage,
        1e-6,
    )
    .unwrap();
    let first_epoch: Vec<usize> = (1..=2).flat_map(|s| data.batch_for_step(s, 4, 1)).collect();
    let mut sorted = first_epoch.clone();
    sorted.sort();
    assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    assert_eq!(data.batch_for_step(7, 3, 1), data.batch_for_step(7, 3, 1));
    assert_eq!(data.batch_for_step(1, 0, 1), (0..8).collect::<Vec<_>>());
}

fn mean_logp(w: &Weights, t: &Trajectory) -> f64 {
    let positions: Vec<usize> = (0..t.token_ids.len())
        .filter(|&i| t.loss_mask[i] == 1)
        .collect();
    let (lp, _) = next_token_logprobs(w, &t.token_ids, &positions, 1.0);
    lp.iter().map(|&x| x as f64).sum::<f64>() / lp.len() as f64
}

/// What `ssr train` does, through the same library entry point: a trajectory file
/// written here, a tiny model saved as a weights-only checkpoint, a few steps.
#[test]
fn rl_training_from_a_file_raises_positive_and_lowers_negative_sequences() {
    let config = Config::tiny();
    let w0 = random_weights(&config, 7);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    checkpoint::save(&model, &w0, None, 0, &BTreeMap::new()).unwrap();
    let trajs = trajectories(&w0, 8);
    let file = dir.path().join("trajectories.jsonl");
    write_trajectories(&file, &trajs).unwrap();
    let out = dir.path().join("out");
    let job = TrainJob {
        trajectories: file,
        model,
        out: out.clone(),
        steps: 6,
        overrides: TrainOverrides {
            lr: Some(2e-3),
            warmup_steps: Some(0),
            ..Default::default()
        },
        reference: None,
        save_every: None,
        keep_checkpoints: None,
        device: Device::Auto,
    };
    let mut seen = Vec::new();
    let summary = run_job(&job, |m| seen.push(m.clone())).unwrap();
    assert_eq!(summary.final_step, 6);
    assert_eq!(seen.len(), 6);
    assert!(
        seen[0].ratio_mean > 0.999 && seen[0].ratio_mean < 1.001,
        "first step is on-policy"
    );
    assert!(
        seen.iter()
            .all(|m| m.grad_norm.is_finite() && m.grad_norm > 0.0)
    );
    let trained = TrainSession::resume(&out).unwrap().weights;
    for t in &trajs {
        let (before, after) = (mean_logp(&w0, t), mean_logp(&trained, t));
        if t.reward > 0.0 {
            assert!(
                after > before + 0.05,
                "positive sequence: {before} -> {after}"
            );
        } else {
            assert!(
                after < before - 0.05,
                "negative sequence: {before} -> {after}"
            );
        }
    }
    // Running again from the output continues the run (resume), not a fresh start.
    let again = TrainJob {
        model: out.clone(),
        steps: 1,
        overrides: TrainOverrides::default(),
        ..job
    };
    let s = run_job(&again, |_| {}).unwrap();
    assert!(s.resumed);
    assert_eq!(s.final_step, 7);
}

/// A one-step job over `trajs` from a weights-only checkpoint of `w0` in `dir`.
fn job_in(dir: &std::path::Path, w0: &Weights, trajs: &[Trajectory]) -> TrainJob {
    let model = dir.join("model");
    checkpoint::save(&model, w0, None, 0, &BTreeMap::new()).unwrap();
    let file = dir.join("trajectories.jsonl");
    write_trajectories(&file, trajs).unwrap();
    TrainJob {
        trajectories: file,
        model,
        out: dir.join("out"),
        steps: 1,
        overrides: TrainOverrides::default(),
        reference: None,
        save_every: None,
        keep_checkpoints: None,
        device: Device::Auto,
    }
}

/// Regression (issue 14): trajectories sampled at 0.7 were trained at 1.0 (clip
/// fraction 24% and mean ratio 1.06 on the first, on-policy step). The recorded
/// temperature is now used, and a conflicting explicit one is refused.
#[test]
fn trajectories_train_at_their_recorded_temperature_and_refuse_another() {
    let config = Config::tiny();
    let w0 = random_weights(&config, 31);
    let t = 0.7f32;
    let trajs: Vec<Trajectory> = trajectories(&w0, 32)
        .into_iter()
        .map(|mut tr| {
            // On-policy log-probs at the sampling temperature.
            let positions: Vec<usize> = (0..tr.token_ids.len())
                .filter(|&i| tr.loss_mask[i] == 1)
                .collect();
            let (lp, _) = next_token_logprobs(&w0, &tr.token_ids, &positions, t);
            for (&p, l) in positions.iter().zip(lp) {
                tr.logprobs[p] = l;
            }
            tr.temperature = Some(t);
            tr
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let job = job_in(dir.path(), &w0, &trajs);
    let mut seen = Vec::new();
    run_job(&job, |m| seen.push(m.clone())).unwrap();
    let first = &seen[0];
    assert!(
        (first.ratio_mean - 1.0).abs() < 1e-3 && first.clip_fraction == 0.0,
        "on-policy at the recorded temperature: ratio {} clip {}",
        first.ratio_mean,
        first.clip_fraction
    );
    let saved = TrainSession::resume(&job.out).unwrap();
    assert_eq!(saved.config.temperature, t);
    // The same value given explicitly is fine; another is refused before any step.
    let same = TrainJob {
        overrides: TrainOverrides {
            temperature: Some(t),
            ..Default::default()
        },
        ..job.clone()
    };
    run_job(&same, |_| {}).unwrap();
    let conflicting = TrainJob {
        overrides: TrainOverrides {
            temperature: Some(1.0),
            ..Default::default()
        },
        ..job
    };
    match run_job(&conflicting, |_| panic!("no step may run")) {
        Err(ssr_trainer::train::RunError::TemperatureConflict {
            given, recorded, ..
        }) => assert_eq!((given, recorded), (1.0, t)),
        other => panic!("expected a temperature conflict, got {other:?}"),
    }
}

#[test]
fn keep_checkpoints_bounds_the_checkpoints_on_disk() {
    let config = Config::tiny();
    let w0 = random_weights(&config, 41);
    let dir = tempfile::tempdir().unwrap();
    let job = TrainJob {
        steps: 5,
        save_every: Some(1),
        keep_checkpoints: std::num::NonZeroUsize::new(2),
        ..job_in(dir.path(), &w0, &trajectories(&w0, 42))
    };
    // Something else in the directory is not the series' to delete.
    std::fs::create_dir_all(job.out.join("notes")).unwrap();
    let summary = run_job(&job, |_| {}).unwrap();
    let steps: Vec<u64> = checkpoint::list_steps(&job.out)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![4, 5]);
    assert_eq!(summary.checkpoint, job.out.join("step-000005"));
    assert!(job.out.join("notes").is_dir());
    // The directory resumes from its newest checkpoint.
    let again = TrainJob {
        model: job.out.clone(),
        steps: 1,
        save_every: None,
        ..job
    };
    let s = run_job(&again, |_| {}).unwrap();
    assert!(s.resumed);
    assert_eq!(s.final_step, 6);
    let steps: Vec<u64> = checkpoint::list_steps(&again.out)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![5, 6]);
}

/// The warm start's loss: supervised steps on a demonstration lower its masked loss,
/// through the trainer's own forward, backward and AdamW; the unmasked tokens (prompt,
/// observations) are not what it learns.
#[test]
fn sft_on_a_demo_lowers_its_masked_loss() {
    use ssr_trainer::train::{Demo, SftMetrics, read_demos};
    let config = Config::tiny();
    let w0 = random_weights(&config, 51);
    // A "prompt" (mask 0), an "assistant answer" (mask 1), an "observation" (mask 0).
    let tokens: Vec<u32> = vec![1, 9, 4, 22, 23, 24, 25, 26, 27, 5, 6, 7, 30, 31, 32];
    let mask: Vec<u8> = (0..tokens.len())
        .map(|i| u8::from((3..9).contains(&i) || i >= 12))
        .collect();
    let demo = Demo {
        token_ids: tokens.clone(),
        loss_mask: mask.clone(),
        metadata: None,
    };
    // Through the file format, as `ssr sft --demos` reads it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demos.jsonl");
    std::fs::write(
        &file,
        format!("{}\n\n", serde_json::to_string(&demo).unwrap()),
    )
    .unwrap();
    let demos = read_demos(&file, config.vocab_size).unwrap();
    assert_eq!(demos, vec![demo]);
    let mut s = TrainSession::new(
        w0.clone(),
        TrainConfig {
            adamw: AdamWConfig {
                lr: 1e-2,
                warmup_steps: 0,
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            ..TrainConfig::default()
        },
    );
    let steps: Vec<SftMetrics> = (0..15).map(|_| s.sft_step(&demos).unwrap()).collect();
    let (first, last) = (steps[0].loss, steps.last().unwrap().loss);
    assert_eq!(steps[0].trained_tokens, 9);
    assert!(last < 0.5 * first, "masked loss {first} -> {last}");
    // The reported loss is the mean NLL of the masked tokens under the weights before
    // the step.
    let positions: Vec<usize> = (0..tokens.len()).filter(|&i| mask[i] == 1).collect();
    let (lp, _) = next_token_logprobs(&w0, &tokens, &positions, 1.0);
    let want = -lp.iter().sum::<f32>() / lp.len() as f32;
    assert!((first - want).abs() < 1e-4, "{first} vs {want}");
    // A demonstration with nothing to learn is a typed error, not a silent step.
    let empty = Demo {
        token_ids: tokens.clone(),
        loss_mask: vec![0; tokens.len()],
        metadata: None,
    };
    assert!(matches!(
        s.sft_step(&[empty]),
        Err(ssr_trainer::train::TrainError::NoTrainableTokens)
    ));
    // Bad lines name their line.
    std::fs::write(&file, "{\"token_ids\":[1,2],\"loss_mask\":[1,0]}\n").unwrap();
    let e = read_demos(&file, config.vocab_size).unwrap_err();
    assert!(e.to_string().contains(":1: invalid demonstration"), "{e}");
}
