//! The integration tests of `ssr-trainer`: one binary, one module per area.

mod batch;
mod checkpoint;
mod device;
mod engine;
mod gguf_files;
mod gpu;
mod grad;
mod model_files;
mod optim;
mod parity;
mod rl;
mod safetensors_files;
mod signal;
mod tokenizer;
mod train;
mod trajectory;
