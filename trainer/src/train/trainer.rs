//! [`Trainer`]: RL training steps on the device [`crate::device::resolve`] picks (CUDA
//! when present, else the CPU), with the interface of the CPU [`TrainSession`].
//!
//! The CPU case is a `TrainSession`, untouched: same steps, bit for bit. The CUDA case
//! keeps the weights, gradients, AdamW moments and reference model on the device
//! (`crate::gpu::train::GpuTrainer`) and a host `TrainSession` as a mirror: its
//! settings are always current, its weights and moments are refreshed from the device
//! only when read ([`Trainer::weights`], [`Trainer::save`], [`Trainer::into_session`]),
//! so a step costs no host copy. Under data parallelism (`SSR_WORLD_SIZE` > 1, see
//! `crate::gpu::nccl`) the CUDA trainer joins the NCCL communicator from the
//! environment and averages gradients across ranks. The CUDA model runs in
//! `crate::gpu::GpuPrecision::Bf16` (bf16 GEMM operands, f32 master weights and
//! accumulation) unless [`Trainer::with_precision`] asks for the f32 reference.
//!
//! Does not own: the step's maths (`TrainSession::step` and its GPU twin), batching
//! (`Dataset::batch_for_step`, shared by both), checkpoint files (`crate::checkpoint`).

use super::session::{Dataset, StepMetrics, TrainConfig, TrainError, TrainSession};
use crate::device::{ActiveDevice, Device, DeviceError, Resolved, resolve};
use crate::weights::Weights;
use std::path::Path;

/// The GPU precision argument: the real setting with the `cuda` feature, nothing without.
#[cfg(feature = "cuda")]
type GpuPrecisionArg = crate::gpu::GpuPrecision;
#[cfg(not(feature = "cuda"))]
type GpuPrecisionArg = NoGpuPrecision;

/// Stands in for the GPU precision in a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
#[derive(Clone, Copy, Debug, Default)]
struct NoGpuPrecision;

/// The device-side state of a CUDA trainer.
#[cfg(feature = "cuda")]
struct CudaState {
    gpu: Box<crate::gpu::Gpu>,
    trainer: crate::gpu::train::GpuTrainer,
    /// The mirror's weights and moments are older than the device's.
    host_stale: bool,
}

/// A policy being trained on a CPU or a CUDA device.
pub struct Trainer {
    /// CPU: the live state. CUDA: the mirror (module doc).
    session: TrainSession,
    active: ActiveDevice,
    #[cfg(feature = "cuda")]
    cuda: Option<CudaState>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("device", &self.active)
            .field("step", &self.step_count())
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Moves `session` (fresh or resumed, with its reference model if set) to `device`.
    /// `Device::Cuda` without a usable GPU is `DeviceError::Cuda` with
    /// `GpuError::NoGpu` as its source; `Device::Auto` then uses the CPU.
    pub fn new(session: TrainSession, device: Device) -> Result<Self, DeviceError> {
        Self::open(session, device, GpuPrecisionArg::default())
    }

    /// [`Trainer::new`] with the CUDA model in `precision` (ignored on the CPU, which is
    /// always f32): `GpuPrecision::F32` is the exact reference, `Bf16` the default.
    #[cfg(feature = "cuda")]
    pub fn with_precision(
        session: TrainSession,
        device: Device,
        precision: crate::gpu::GpuPrecision,
    ) -> Result<Self, DeviceError> {
        Self::open(session, device, precision)
    }

    /// The CUDA model's precision; `None` on the CPU.
    #[cfg(feature = "cuda")]
    pub fn gpu_precision(&self) -> Option<crate::gpu::GpuPrecision> {
        self.cuda.as_ref().map(|c| c.trainer.precision())
    }

    fn open(
        session: TrainSession,
        device: Device,
        precision: GpuPrecisionArg,
    ) -> Result<Self, DeviceError> {
        #[cfg(not(feature = "cuda"))]
        let NoGpuPrecision = precision;
        let resolved = resolve(device)?;
        let active = resolved.active();
        match resolved {
            Resolved::Cpu { .. } => Ok(Trainer {
                session,
                active,
                #[cfg(feature = "cuda")]
                cuda: None,
            }),
            #[cfg(feature = "cuda")]
            Resolved::Cuda(gpu) => {
                let err = crate::device::on(&gpu);
                let trainer = upload(&gpu, &session, precision).map_err(err)?;
                Ok(Trainer {
                    session,
                    active,
                    cuda: Some(CudaState {
                        gpu,
                        trainer,
                        host_stale: false,
                    }),
                })
            }
        }
    }

    /// A fresh run from `weights` (step 0) on `device`.
    pub fn fresh(
        weights: Weights,
        config: TrainConfig,
        device: Device,
    ) -> Result<Self, TrainError> {
        Ok(Self::new(TrainSession::new(weights, config), device)?)
    }

    /// Resumes a checkpoint written by [`Trainer::save`] or `TrainSession::save` on
    /// `device` (the format is the same whichever device wrote it).
    pub fn resume(dir: &Path, device: Device) -> Result<Self, TrainError> {
        Ok(Self::new(TrainSession::resume(dir)?, device)?)
    }

    /// The device that runs the steps.
    pub fn device(&self) -> &ActiveDevice {
        &self.active
    }

    /// The model's shape (never stale).
    pub fn model_config(&self) -> &crate::Config {
        &self.session.weights.config
    }

    /// The training settings.
    pub fn config(&self) -> &TrainConfig {
        &self.session.config
    }

    /// Optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.cuda {
            return c.trainer.step_count();
        }
        self.session.step_count()
    }

    /// Changes the settings of later steps; moments and step count are kept.
    pub fn set_config(&mut self, config: TrainConfig) {
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            c.trainer.set_config(config.clone());
        }
        self.session.set_config(config);
    }

    /// Sets the frozen reference policy of the KL penalty. On a CUDA device it lives on
    /// the device only (the host keeps no second copy).
    pub fn set_reference(&mut self, reference: Weights) -> Result<(), TrainError> {
        if reference.config != self.session.weights.config {
            return Err(TrainError::ReferenceShape);
        }
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            c.gpu.bind_to_thread().map_err(crate::device::on(&c.gpu))?;
            return c
                .trainer
                .set_reference(&c.gpu, &reference)
                .map_err(|e| crate::device::on(&c.gpu)(e).into());
        }
        self.session.set_reference(reference)
    }

    /// One optimizer step on the step's batch of `data` (`TrainSession::step` on the
    /// CPU; its GPU twin on a CUDA device).
    pub fn step(&mut self, data: &Dataset) -> Result<StepMetrics, TrainError> {
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            let cfg = &self.session.config;
            if cfg.loss.kl_coef > 0.0 && !c.trainer.has_reference() {
                return Err(TrainError::MissingReference {
                    kl_coef: cfg.loss.kl_coef,
                });
            }
            let batch = data.batch_for_step(c.trainer.step_count() + 1, cfg.batch_size, cfg.seed);
            let sequences = data.sequences(&batch);
            let err = crate::device::on(&c.gpu);
            c.gpu.bind_to_thread().map_err(crate::device::on(&c.gpu))?;
            c.host_stale = true;
            let mut metrics = c.trainer.step(&c.gpu, &sequences).map_err(err)?;
            metrics.no_signal = data.no_signal(&batch);
            return Ok(metrics);
        }
        self.session.step(data)
    }

    /// One supervised step on `demos` ([`TrainSession::sft_step`], the one optimizer
    /// the RL steps use too). On a CUDA device it runs on the host mirror, brought up
    /// to date first, and the device model is then uploaded again from it: no second
    /// trainer, at the cost of two copies of the weights per call.
    pub fn sft_step(&mut self, demos: &[super::Demo]) -> Result<super::SftMetrics, TrainError> {
        self.sync_host()?;
        let metrics = self.session.sft_step(demos)?;
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda {
            let err = crate::device::on(&c.gpu);
            c.gpu.bind_to_thread().map_err(crate::device::on(&c.gpu))?;
            c.trainer = upload(&c.gpu, &self.session, c.trainer.precision()).map_err(err)?;
            c.host_stale = false;
        }
        Ok(metrics)
    }

    /// The current weights (copied from the device first when they changed there).
    pub fn weights(&mut self) -> Result<&Weights, TrainError> {
        self.sync_host()?;
        Ok(&self.session.weights)
    }

    /// Writes a checkpoint (same format on every device) that [`Trainer::resume`] and
    /// `TrainSession::resume` restore exactly.
    pub fn save(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.sync_host()?;
        Ok(self.session.save(dir)?)
    }

    /// The whole state as a CPU session (weights and moments copied from the device).
    pub fn into_session(mut self) -> Result<TrainSession, TrainError> {
        self.sync_host()?;
        Ok(self.session)
    }

    /// Refreshes the host mirror's weights, moments and step count from the device.
    fn sync_host(&mut self) -> Result<(), TrainError> {
        #[cfg(feature = "cuda")]
        if let Some(c) = &mut self.cuda
            && c.host_stale
        {
            let err = crate::device::on(&c.gpu);
            c.gpu.bind_to_thread().map_err(crate::device::on(&c.gpu))?;
            let pulled = c.trainer.weights_to_host(&c.gpu).and_then(|w| {
                let (m, v) = c.trainer.moments_to_host(&c.gpu)?;
                Ok((w, m, v))
            });
            let (w, m, v) = pulled.map_err(err)?;
            self.session.weights = w;
            self.session.optimizer.m = m;
            self.session.optimizer.v = v;
            self.session.optimizer.step = c.trainer.step_count();
            c.host_stale = false;
        }
        Ok(())
    }
}

/// The device twin of `session` in `precision`: weights, moments (exact resume), step
/// count, settings, the reference model, and the NCCL communicator when the environment
/// asks for data parallelism.
#[cfg(feature = "cuda")]
fn upload(
    gpu: &crate::gpu::Gpu,
    session: &TrainSession,
    precision: crate::gpu::GpuPrecision,
) -> Result<crate::gpu::train::GpuTrainer, crate::gpu::GpuError> {
    let comm = crate::gpu::nccl::Communicator::from_env(gpu)?;
    let opt = &session.optimizer;
    crate::gpu::train::GpuTrainer::with_precision(
        gpu,
        &session.weights,
        session.reference(),
        session.config.clone(),
        Some((opt.step, &opt.m, &opt.v)),
        comm,
        precision,
    )
}

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}

    // Self-play keeps the trainer behind a mutex shared across tasks.
    #[test]
    fn trainer_is_send() {
        assert_send::<super::Trainer>();
    }
}
