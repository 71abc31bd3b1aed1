//! The host of the agent's tools, which are WebAssembly components.
//!
//! Owns: one wasmtime engine (pooling allocator, epoch interruption), the on-disk cache
//! of compiled components, the per-call store with its limits, the filesystem grants
//! derived from the operator's policy file, and the registry of standard and custom
//! tools.
//!
//! Does not own: what the tools do (their guests live in `tools-wasm/`), or the agent
//! loop that calls them (`ssr-agent`). The model never reaches this crate's grants.
