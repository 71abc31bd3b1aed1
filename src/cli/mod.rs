//! One module per subcommand group. Each exposes a clap `Subcommand`/`Args` type and a
//! `run` function returning the process exit code.

pub mod bench_verify;
pub mod evaluate;
pub mod examples;
pub mod export;
pub mod inject;
pub mod sandbox;
pub mod verify;
