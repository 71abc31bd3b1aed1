//! The engine's CUDA path: the opened GPU and one `GpuDecoder` (weights and a KV cache
//! of the model's whole context on the device) behind a mutex.
//!
//! `Engine::generate` takes `&self` and may be called from several threads; on a CUDA
//! device those generations take turns on the one decoder (they would share one stream
//! anyway). Prompt handling, sampling, stop sequences and text stay the engine's: this
//! module only turns token ids into last-position logits.
//!
//! Does not own: the forward on the device (`crate::gpu::generate`), device selection
//! (`crate::device`).

use super::Precision;
use crate::gpu::generate::GpuDecoder;
use crate::gpu::{Gpu, GpuError, GpuPrecision};
use crate::weights::Weights;
use std::sync::{Mutex, MutexGuard};

/// A GPU and the engine's decoder on it.
#[derive(Debug)]
pub(crate) struct CudaDecoder {
    gpu: Box<Gpu>,
    decoder: Mutex<GpuDecoder>,
}

impl CudaDecoder {
    /// Uploads `weights` with a cache of the model's whole context, in the device
    /// precision that matches the engine's (`Fast` is bf16, `F32` stays exact).
    pub(crate) fn new(
        gpu: Box<Gpu>,
        weights: &Weights,
        precision: Precision,
    ) -> Result<Self, GpuError> {
        gpu.bind_to_thread()?;
        let decoder = whole_context_decoder(&gpu, weights, precision)?;
        Ok(CudaDecoder {
            gpu,
            decoder: Mutex::new(decoder),
        })
    }

    /// Uploads `weights` again in the device precision matching `precision`.
    pub(crate) fn set_precision(
        &mut self,
        weights: &Weights,
        precision: Precision,
    ) -> Result<(), GpuError> {
        self.gpu.bind_to_thread()?;
        let dec = whole_context_decoder(&self.gpu, weights, precision)?;
        *self.decoder.get_mut().unwrap_or_else(|p| p.into_inner()) = dec;
        Ok(())
    }

    pub(crate) fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Replaces the weights on the device (after a training step); waits for running
    /// generations.
    pub(crate) fn set_weights(&mut self, weights: &Weights) -> Result<(), GpuError> {
        self.gpu.bind_to_thread()?;
        let dec = self.decoder.get_mut().unwrap_or_else(|p| p.into_inner());
        dec.set_weights(&self.gpu, weights)
    }

    /// Takes the decoder for one generation (its cache emptied).
    pub(crate) fn stepper(&self) -> Result<CudaStepper<'_>, GpuError> {
        // A poisoned lock means a generation panicked mid-step; the cache is reset
        // below, and the weights are only written under `&mut self`.
        let mut dec = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        self.gpu.bind_to_thread()?;
        dec.truncate(0);
        Ok(CudaStepper {
            gpu: &self.gpu,
            dec,
        })
    }
}

/// One generation's hold on the decoder.
pub(crate) struct CudaStepper<'a> {
    gpu: &'a Gpu,
    dec: MutexGuard<'a, GpuDecoder>,
}

impl CudaStepper<'_> {
    /// Runs `ids` after the cached positions; logits of the last one.
    pub(crate) fn forward_last(&mut self, ids: &[u32]) -> Result<Vec<f32>, GpuError> {
        self.dec.forward_last(self.gpu, ids)
    }

    pub(crate) fn gpu(&self) -> &Gpu {
        self.gpu
    }

    /// Positions in the cache.
    pub(crate) fn len(&self) -> usize {
        self.dec.len()
    }
}

/// A decoder with a cache of the model's whole context, in the engine's precision on
/// the device: its fast mode is bf16 there, as Q8_0/bf16 is on the CPU; `F32` is the
/// exact reference on both.
fn whole_context_decoder(
    gpu: &Gpu,
    weights: &Weights,
    precision: Precision,
) -> Result<GpuDecoder, GpuError> {
    let precision = match precision {
        Precision::Fast => GpuPrecision::Bf16,
        Precision::F32 => GpuPrecision::F32,
    };
    GpuDecoder::with_precision(gpu, weights, weights.config.max_seq_len, precision)
}
