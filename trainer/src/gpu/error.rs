//! The GPU backend's error type. Every public GPU entry point returns `Result<_, GpuError>`;
//! none panics when the machine has no GPU, no driver or no CUDA libraries.

use std::path::PathBuf;

/// What went wrong on the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable GPU: no driver library, a missing CUDA library, no device, or the crate was
    /// built without the `cuda` feature. Callers fall back to the CPU path on this variant.
    #[error("no GPU: {reason}")]
    NoGpu { reason: String },

    /// A CUDA driver call failed (allocation, copy, launch, synchronisation).
    #[error("CUDA driver error during {op}: {source}")]
    Driver {
        op: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },

    /// NVRTC rejected a kernel source; `log` is the compiler's log.
    #[error("NVRTC failed to compile {source_name} for {arch}: {log}")]
    Compile {
        source_name: &'static str,
        arch: String,
        log: String,
    },

    /// A cuBLAS call failed.
    #[error("cuBLAS error during {op}: {source}")]
    Cublas {
        op: &'static str,
        #[source]
        source: cudarc::cublas::result::CublasError,
    },

    /// An NCCL call failed.
    #[error("NCCL error during {op}: {detail}")]
    Nccl { op: &'static str, detail: String },

    /// Buffer lengths or shapes given to a kernel wrapper do not agree; nothing was launched.
    #[error("shape mismatch in {op}: {what} (expected {expected}, got {got})")]
    Shape {
        op: &'static str,
        what: &'static str,
        expected: usize,
        got: usize,
    },

    /// An argument outside what the kernel supports (e.g. a size over `i32::MAX`).
    #[error("invalid argument to {op}: {detail}")]
    Invalid { op: &'static str, detail: String },

    /// Reading or writing a file the backend keeps (kernel cache, NCCL id file) failed.
    #[error("I/O on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GpuError {
    /// True when the error only says "there is no GPU here" (the caller should use the CPU).
    pub fn is_no_gpu(&self) -> bool {
        matches!(self, GpuError::NoGpu { .. })
    }

    pub(crate) fn driver(op: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError {
        move |source| GpuError::Driver { op, source }
    }

    pub(crate) fn cublas(
        op: &'static str,
    ) -> impl FnOnce(cudarc::cublas::result::CublasError) -> GpuError {
        move |source| GpuError::Cublas { op, source }
    }
}

/// Checks that a buffer has exactly `expected` elements.
pub(crate) fn check_len(
    op: &'static str,
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), GpuError> {
    if expected == got {
        Ok(())
    } else {
        Err(GpuError::Shape {
            op,
            what,
            expected,
            got,
        })
    }
}

/// Converts a size to the `i32` the kernels index with, or a typed error.
pub(crate) fn to_i32(op: &'static str, what: &str, n: usize) -> Result<i32, GpuError> {
    i32::try_from(n).map_err(|_| GpuError::Invalid {
        op,
        detail: format!("{what} = {n} exceeds i32::MAX"),
    })
}
