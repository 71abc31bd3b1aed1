//! Integration tests of `ssr-repo` (one binary, modules by concept).

mod patch_git;
mod patch_random;
mod support;
