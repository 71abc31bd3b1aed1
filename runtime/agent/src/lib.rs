//! The agent loop, the policies and the self-play orchestrator.
//!
//! Owns: role prompts, tool-call parsing, transcripts and budgets, the `Policy` trait
//! with its embedded, openai and scripted implementations, the OpenAI-compatible server
//! over the embedded engine, the self-play round, the run directory and its report.
//!
//! Does not own: the rules of the game (`ssr-game`), tool execution (`ssr-toolhost`) or
//! the model's numerics (`ssr-trainer`).
