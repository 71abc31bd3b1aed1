//! Cross-crate integration tests of the `ssr` program, one module per command group.
//! They run the built binary (`CARGO_BIN_EXE_ssr`) as a user would.

mod agent_openai_python;
mod agent_report;
mod selfplay_embedded;
mod selfplay_scripted;
