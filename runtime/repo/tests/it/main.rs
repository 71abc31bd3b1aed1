//! Integration tests of `ssr-repo` (one binary, modules by concept).

mod copy;
mod history;
mod patch_git;
mod patch_random;
mod snapshot;
mod support;
