//! Integration tests of `ssr-agent`: the agent loop with scripted turns, exact token
//! sequences against the real tokenizer, the OpenAI-compatible server and client
//! against each other, the run directory and the report, and the self-play
//! orchestrator over an in-memory arena.

mod demos;
mod episode;
mod game_arena;
mod load;
mod model_servers;
mod openai;
mod selfplay;
mod selfplay_signal;
mod selfplay_split;
mod support;
mod tokens;
mod wasm_tools;
