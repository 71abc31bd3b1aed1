//! The agent loop, the policies and the self-play orchestrator.
//!
//! Owns: role prompts, tool-call parsing, transcripts and budgets, the `Policy` trait
//! with its embedded, openai and scripted implementations, the OpenAI-compatible server
//! over the embedded engine, the self-play round, the run directory and its report,
//! warm-start demonstrations played through the loop ([`demos`]).
//!
//! Does not own: the rules of the game (`ssr-game`), tool execution (`ssr-toolhost`; the
//! [`wasm_tools`] adapter offers its components to the model) or
//! the model's numerics (`ssr-trainer`).

pub mod budget;
pub mod chat;
pub mod demos;
pub mod episode;
pub mod policy;
pub mod prompts;
pub mod report;
pub mod rundir;
pub mod selfplay;
pub mod serve;
pub mod shutdown;
pub mod toolcall;
pub mod tools;
pub mod trajectory;
pub mod transcript;
pub mod wasm_tools;

pub use budget::Budgets;
pub use chat::{ChatMl, Message, Role, TextCodec};
pub use episode::{EpisodeSpec, run_episode};
pub use policy::{
    FinishReason, GenerateRequest, Generation, Policy, PolicyError, Prompt, Sampling,
};
pub use toolcall::{ToolCall, ToolCallError, ToolCallSyntax};
pub use tools::{ToolResult, ToolSpec, Tools};
pub use transcript::{EpisodeEnd, Transcript};
pub use wasm_tools::{SharedHost, WasmTools};
