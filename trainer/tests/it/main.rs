//! The integration tests of `ssr-trainer`: one binary, one module per area.

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
mod tokenizer;
mod train;
mod trajectory;
