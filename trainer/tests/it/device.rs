//! Device selection (`ssr_trainer::device`): `auto` picks the CPU on a machine without a
//! GPU and then trains and generates exactly as the CPU types do; an explicit `cuda`
//! there is the typed error, never a panic. On a GPU machine the same tests check that
//! `auto` picked the GPU and that its step agrees with the CPU step within tolerance.

use crate::engine::small_engine;
use crate::train::{random_weights, session_config, trajectories};
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{EngineError, GenerateOptions, Generation, Precision};
use ssr_trainer::testing::{Tolerance, assert_close};
use ssr_trainer::train::{Dataset, TrainError, TrainSession, Trainer};
use ssr_trainer::{ActiveDevice, Config, Device, DeviceError};

#[cfg(feature = "cuda")]
fn gpu_present() -> bool {
    ssr_trainer::gpu::Gpu::open().is_ok()
}

#[cfg(not(feature = "cuda"))]
fn gpu_present() -> bool {
    false
}

#[cfg(not(feature = "cuda"))]
fn assert_no_gpu_error(e: &DeviceError) {
    assert!(matches!(e, DeviceError::NotBuilt { ordinal: 0 }), "{e:?}");
    assert!(e.is_no_gpu());
}

#[cfg(feature = "cuda")]
fn assert_no_gpu_error(e: &DeviceError) {
    use ssr_trainer::gpu::GpuError;
    assert!(
        matches!(
            e,
            DeviceError::Cuda {
                ordinal: 0,
                source: GpuError::NoGpu { .. }
            }
        ),
        "expected DeviceError::Cuda {{ source: NoGpu }}, got {e:?}"
    );
    assert!(e.is_no_gpu());
}

/// A session with a reference model and minibatches (exercises the KL term and the
/// batch permutation), and its dataset.
fn session_and_data() -> (TrainSession, Dataset) {
    let config = Config::tiny();
    let w0 = random_weights(&config, 21);
    let data = Dataset::new(
        &trajectories(&w0, 22),
        &config,
        session_config().advantage,
        1e-6,
    )
    .unwrap();
    let mut s = TrainSession::new(w0.clone(), session_config());
    s.set_reference(w0).unwrap();
    (s, data)
}

#[test]
fn auto_trainer_trains_like_the_cpu_session() {
    let (session, data) = session_and_data();
    let mut cpu = session.clone();
    // The device dispatch is checked against the f32 reference; the bf16 mode (the
    // CUDA default) has its own parity tests in `gpu::bf16_mode`.
    #[cfg(feature = "cuda")]
    let mut auto =
        Trainer::with_precision(session, Device::Auto, ssr_trainer::gpu::GpuPrecision::F32)
            .unwrap();
    #[cfg(not(feature = "cuda"))]
    let mut auto = Trainer::new(session, Device::Auto).unwrap();
    let on_gpu = auto.device().is_cuda();
    if !on_gpu {
        assert!(
            matches!(
                auto.device(),
                ActiveDevice::Cpu {
                    fallback_reason: Some(_)
                }
            ),
            "auto on a machine without a GPU says why it fell back: {}",
            auto.device()
        );
    }
    for _ in 0..3 {
        let want = cpu.step(&data).unwrap();
        let got = auto.step(&data).unwrap();
        if on_gpu {
            // The GPU LM head is bf16 (8 mantissa bits): loss and norm within 3%, as in
            // gpu::train_step.
            assert_close(
                "loss, grad norm",
                &[got.loss, got.grad_norm],
                &[want.loss, want.grad_norm],
                Tolerance::new(1e-4, 3e-2),
            );
            assert_eq!(got.trained_tokens, want.trained_tokens);
        } else {
            assert_eq!(
                (got.loss, got.grad_norm, got.kl, got.trained_tokens),
                (want.loss, want.grad_norm, want.kl, want.trained_tokens)
            );
        }
    }
    assert_eq!(auto.step_count(), 3);
    let trained = auto.into_session().unwrap();
    if on_gpu {
        // Three Adam steps move each weight by at most ~3·lr; gradient errors can flip
        // a tiny gradient's sign: 7·lr bounds the difference.
        let lr = session_config().adamw.lr;
        for ((name, g), (_, c)) in trained
            .weights
            .tensors()
            .iter()
            .zip(cpu.weights.tensors().iter())
        {
            assert_close(name, g, c, Tolerance::new(7.0 * lr, 0.0));
        }
    } else {
        assert!(trained.weights == cpu.weights, "weights differ from CPU");
        assert!(
            trained.optimizer == cpu.optimizer,
            "moments differ from CPU"
        );
    }
}

#[test]
fn cpu_trainer_checkpoint_resumes_as_a_session() {
    let (session, data) = session_and_data();
    let reference = session.reference().cloned().unwrap();
    let mut t = Trainer::new(session, Device::Cpu).unwrap();
    assert_eq!(
        t.device(),
        &ActiveDevice::Cpu {
            fallback_reason: None
        }
    );
    t.step(&data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path()).unwrap();
    let mut resumed = Trainer::resume(dir.path(), Device::Cpu).unwrap();
    resumed.set_reference(reference).unwrap();
    assert_eq!(resumed.step_count(), 1);
    let a = t.step(&data).unwrap();
    let b = resumed.step(&data).unwrap();
    assert_eq!((a.loss, a.grad_norm), (b.loss, b.grad_norm));
    assert!(t.weights().unwrap() == resumed.weights().unwrap());
}

#[test]
fn trainer_without_reference_refuses_a_kl_step() {
    let (session, data) = session_and_data();
    let fresh = TrainSession::new(session.weights.clone(), session.config.clone());
    let mut t = Trainer::new(fresh, Device::Auto).unwrap();
    assert!(matches!(
        t.step(&data),
        Err(TrainError::MissingReference { .. })
    ));
}

#[test]
fn explicit_cuda_without_a_gpu_is_a_typed_error() {
    if gpu_present() {
        eprintln!("skipping explicit_cuda_without_a_gpu_is_a_typed_error: a GPU is present");
        return;
    }
    let (session, _) = session_and_data();
    let e = Trainer::new(session, Device::Cuda(0)).unwrap_err();
    assert_no_gpu_error(&e);

    let mut engine = small_engine(Precision::Fast);
    match engine.set_device(Device::Cuda(0)) {
        Err(EngineError::Device(e)) => assert_no_gpu_error(&e),
        other => panic!("expected a device error, got {other:?}"),
    }
    // The engine is left as it was: still generating on the CPU.
    assert!(!engine.device().is_cuda());
    let prompt: Vec<u32> = b"hi".iter().map(|&b| u32::from(b)).collect();
    let opts = GenerateOptions {
        max_tokens: 3,
        stop_at_eos: false,
        ..Default::default()
    };
    assert_eq!(engine.generate(&prompt, &opts).unwrap().token_ids.len(), 3);
}

fn without_timings(g: Generation) -> Generation {
    Generation {
        prefill_seconds: 0.0,
        decode_seconds: 0.0,
        ..g
    }
}

#[test]
fn auto_engine_generates_like_the_cpu_engine() {
    let cpu = small_engine(Precision::F32);
    let mut auto = small_engine(Precision::F32);
    let active = auto.set_device(Device::Auto).unwrap().clone();
    assert_eq!(&active, auto.device());
    let prompt: Vec<u32> = b"fn main() {".iter().map(|&b| u32::from(b)).collect();
    let opts = GenerateOptions {
        max_tokens: 10,
        sampling: SamplingOptions {
            temperature: 0.0,
            ..Default::default()
        },
        stop: vec!["}".into()],
        stop_at_eos: false,
        top_logprobs: 0,
    };
    let want = cpu.generate(&prompt, &opts).unwrap();
    let got = auto.generate(&prompt, &opts).unwrap();
    if active.is_cuda() {
        // f32 on both sides; greedy picks can differ only at near-ties, which a random
        // model of this size does not produce in 10 tokens: the ids must agree and the
        // log-probs within f32 reduction-order noise.
        assert_eq!(got.token_ids, want.token_ids);
        assert_close(
            "logprobs",
            &got.logprobs,
            &want.logprobs,
            Tolerance::new(1e-4, 1e-4),
        );
    } else {
        assert_eq!(without_timings(got), without_timings(want));
    }
    // Weights swapped after a training step reach the device too.
    let mut swapped = cpu.weights().clone();
    swapped.for_each_mut(|_, t| t.iter_mut().for_each(|x| *x *= 0.5));
    let mut cpu2 = small_engine(Precision::F32);
    cpu2.set_weights(swapped.clone()).unwrap();
    auto.set_weights(swapped).unwrap();
    let want = cpu2.generate(&prompt, &opts).unwrap();
    let got = auto.generate(&prompt, &opts).unwrap();
    assert_eq!(got.token_ids, want.token_ids);
}

/// Rejection-sampling fine-tuning in self-play: an RL step, a supervised step on the
/// same trainer (`Trainer::sft_step`: the host session, then the device model uploaded
/// again), another RL step. On the CPU it is exactly the session's sequence; on a GPU
/// the next RL step must start from the supervised step's weights, within tolerance.
#[test]
fn a_supervised_step_between_rl_steps_trains_like_the_cpu_session() {
    let (session, data) = session_and_data();
    let demos: Vec<ssr_trainer::train::Demo> = trajectories(&session.weights, 23)
        .into_iter()
        .map(|t| ssr_trainer::train::Demo {
            token_ids: t.token_ids,
            loss_mask: t.loss_mask,
            metadata: None,
        })
        .collect();
    let mut cpu = session.clone();
    #[cfg(feature = "cuda")]
    let mut auto =
        Trainer::with_precision(session, Device::Auto, ssr_trainer::gpu::GpuPrecision::F32)
            .unwrap();
    #[cfg(not(feature = "cuda"))]
    let mut auto = Trainer::new(session, Device::Auto).unwrap();
    let on_gpu = auto.device().is_cuda();
    let tolerance = if on_gpu {
        Tolerance::new(1e-4, 3e-2)
    } else {
        Tolerance::new(0.0, 0.0)
    };
    let (want, got) = (cpu.step(&data).unwrap(), auto.step(&data).unwrap());
    assert_close("rl 1", &[got.loss], &[want.loss], tolerance);
    let (want, got) = (
        cpu.sft_step(&demos).unwrap(),
        auto.sft_step(&demos).unwrap(),
    );
    assert_close("sft", &[got.loss], &[want.loss], tolerance);
    assert_eq!(got.step, 2);
    let (want, got) = (cpu.step(&data).unwrap(), auto.step(&data).unwrap());
    assert_close("rl 2", &[got.loss], &[want.loss], tolerance);
    assert_eq!(auto.step_count(), 3);
    let trained = auto.into_session().unwrap();
    let lr = session_config().adamw.lr;
    let bound = if on_gpu { 7.0 * lr } else { 0.0 };
    for ((name, g), (_, c)) in trained
        .weights
        .tensors()
        .iter()
        .zip(cpu.weights.tensors().iter())
    {
        assert_close(name, g, c, Tolerance::new(bound, 0.0));
    }
}
