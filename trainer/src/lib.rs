//! The policy model and its trainer.
//!
//! Owns: the llama-family model (SmolLM2 and larger), its loading (GGUF, safetensors),
//! the tokenizer and chat template, the f32 CPU reference of every forward and
//! backward operation, inference with a KV cache, RL advantages and losses, AdamW,
//! checkpoints, the trajectory format, and the GPU backend (the only code in the
//! project that touches cudarc or CUDA).
//!
//! Does not own: prompts, tools, episodes or rewards (`ssr-agent`, `ssr-game`): it
//! sees token ids, masks, logprobs and scalar rewards, never repositories.

pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod device;
pub mod gguf;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod infer;
pub mod optim;
pub mod rl;
pub mod safetensors;
pub mod testing;
pub mod tokenizer;
pub mod train;
pub mod trajectory;
pub mod weights;

pub use config::Config;
pub use device::{ActiveDevice, Device, DeviceError};
pub use weights::{LayerWeights, Weights};
