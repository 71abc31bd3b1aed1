//! The rules of the self-play game (`SSR_SPEC.md` sections 2 to 8 and 11).
//!
//! Owns: the five-file bug [`Artifact`], the seven-check [`Verifier`] and its
//! [`VerificationReport`], the trusted test-log parsers, the solver episode builder,
//! the evaluator, rewards, higher-order bugs and the procedural (model-free)
//! injectors, the example repositories' builder, and repositories taken out of
//! container images (`image`).
//!
//! Does not own: the model or prompts (`ssr-agent`), sandbox backends
//! (`ssr-sandbox`), or git internals (`ssr-repo`). Every command that touches
//! repository code runs through a [`ssr_sandbox::Sandbox`].

pub mod artifact;
pub mod bug_store;
pub mod build_cache;
pub mod config;
pub mod corpus;
pub mod doctor;
pub mod episode;
pub mod evaluate;
pub mod examples;
pub mod fetch;
pub mod higher_order;
pub mod image;
pub mod inject;
pub mod patch_ops;
pub mod protected;
pub mod report;
pub mod reporter;
pub mod reward;
pub mod scan;
pub mod score;
pub mod split;
pub mod testrun;
pub mod trusted;
pub mod vendor;
pub mod verdict;
pub mod verify;
pub mod workspace;

pub use artifact::Artifact;
pub use bug_store::{Bug, BugMeta, BugStore};
pub use config::{EpisodeConfig, RunEnv, VerifyConfig};
pub use episode::{SolverEpisode, build_episode};
pub use evaluate::{BugState, EvalOutcome, Evaluation, Evaluator};
pub use report::{Check, RejectCode, VerificationReport};
pub use score::AttemptScore;
/// The two roles of the game (owned by the leaf crate `ssr-role`).
pub use ssr_role::Role;
pub use verdict::{BugSource, Verdict};
pub use verify::Verifier;
