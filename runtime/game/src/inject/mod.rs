//! Procedural (model-free) injectors (`SSR_SPEC.md` section 8): `history` reverts the
//! code hunks of past commits, `removal` replaces function bodies with stubs; both
//! then weaken the oracle by deleting the tests that fail, write the harness for the
//! detected framework, and keep only artifacts the verifier accepts.
//!
//! Does not own: verification (`verify`) or the model-driven injector (`ssr-agent`).

pub mod scripts;

pub use scripts::Framework;
