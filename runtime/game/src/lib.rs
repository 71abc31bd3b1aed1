//! The rules of the self-play game (`SSR_SPEC.md` sections 2 to 8 and 11).
//!
//! Owns: the five-file bug `Artifact`, the seven-check verifier and its report, the
//! trusted test-log parsers, the solver episode builder, the evaluator, rewards,
//! higher-order bugs and the procedural (model-free) injectors.
//!
//! Does not own: the model or prompts (`ssr-agent`), sandboxes (`ssr-sandbox`) or
//! patch mechanics (`ssr-repo`).
