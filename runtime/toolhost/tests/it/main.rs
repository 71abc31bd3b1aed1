//! Host-side tests of every tool through the real linker, with granted and denied
//! capabilities, and the red-team tests. The guests are the real components built by
//! `build.rs` from `tools-wasm/`.

mod bash;
mod cache;
mod custom;
mod editor;
mod redteam;
mod search;
mod submit;
mod support;
mod wallclock;
