//! The GPU backend: the only code in the project that touches cudarc or CUDA.
//!
//! Owns: probing for CUDA without panicking (`Gpu::open` returns `GpuError::NoGpu` on a
//! machine without one), NVRTC compilation of `kernels/*.cu` with an on-disk cache, kernel
//! launches with checked shapes, cuBLAS GEMMs, NVTX ranges, the kernel benchmark, the
//! NCCL communicator, and the model's precision modes (`precision`: bf16 GEMM operands
//! with f32 masters and accumulation by default, f32 as the exact reference).
//!
//! Does not own: the maths. Every kernel has a CPU twin of the same name in `trainer`
//! (`rl`, `train`, `optim`) that defines what it computes; `trainer/tests/it/gpu.rs`
//! checks each against its twin.

mod attention;
mod blas;
pub mod compile;
mod context;
mod device_weights;
mod error;
pub mod nvtx;

pub mod bench;
pub mod generate;
pub mod lm_head;
pub mod logprobs;
pub mod model;
pub mod model_ops;
pub mod nccl;
pub mod optim;
pub mod precision;
pub mod rl;
pub mod train;

pub use attention::{ATTENTION_THREADS, MAX_HEAD_DIM, attention_shared_bytes};
pub use blas::{Gemm, GemmDtype, GemmElem};
pub use context::{DeviceInfo, EMULATED_DEVICE_NAME, Gpu, LibraryProbe};
pub use cudarc::driver::CudaSlice as DeviceBuffer;
pub use error::GpuError;
pub use half::bf16;
pub use precision::{DeviceTolerance, GpuPrecision};
