//! Integration tests of `ssr-agent`: the agent loop with scripted turns, exact token
//! sequences against the real tokenizer, the OpenAI-compatible server and client
//! against each other, the run directory and the report.

mod episode;
mod load;
mod openai;
mod support;
mod tokens;
mod wasm_tools;
