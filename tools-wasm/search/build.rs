//! Links the component with 2 MiB of initial linear memory instead of about 1.1 MiB (the
//! 1 MiB stack and the data): every call runs in a fresh instance, and growing memory
//! during a call (a `memory.grow`, an `mprotect` in the host's pool) cost about a fifth
//! of viewing a 1,000-line file. The pool keeps the touched pages resident between
//! calls, so the larger start costs nothing per call. A policy's `memory_bytes` below
//! 2 MiB stops this tool at instantiation with the memory-limit error.

fn main() {
    println!("cargo:rustc-link-arg-cdylib=--initial-memory=2097152");
}
