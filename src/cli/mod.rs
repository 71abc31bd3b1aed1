//! One module per subcommand group. Each exposes a clap `Subcommand`/`Args` type and a
//! `run` function returning the process exit code.

pub mod bench_model;
pub mod model;
pub mod sandbox;
pub mod train;
pub mod bench_tools;
pub mod tools;
