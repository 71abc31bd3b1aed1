//! The integration tests of `ssr-trainer`, one module per area.

mod checkpoint;
mod grad;
mod optim;
mod rl;
mod train;
mod trajectory;
//! Integration tests of `ssr-trainer` (one binary, one module per area).
mod engine;
mod gguf_files;
mod model_files;
mod parity;
mod safetensors_files;
mod tokenizer;
