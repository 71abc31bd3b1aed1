//! One module per subcommand group. Each exposes a clap `Subcommand`/`Args` type and a
//! `run` function returning the process exit code.

pub mod bench;
pub mod bench_env;
pub mod bench_gpu;
pub mod bench_model;
pub mod bench_tools;
pub mod bench_verify;
pub mod corpus;
pub mod demos;
pub mod doctor;
pub mod env;
pub mod evaluate;
pub mod examples;
pub mod export;
pub mod heldout;
pub mod inject;
pub mod model;
pub mod report;
pub mod sandbox;
pub mod selfplay;
pub mod serve;
pub mod sft;
pub mod split;
pub mod tools;
pub mod train;
pub mod verify;
