//! CPU numeric kernels shared by inference and training.
//!
//! Owns: dense f32 matrix products ([`matmul`]). Does not own: model structure,
//! quantized weight formats (see `infer::qweights`), or anything GPU.

pub mod bf16_gemm;
pub mod matmul;
