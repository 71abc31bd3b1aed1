//! One module per subcommand group. Each exposes a clap `Subcommand`/`Args` type and a
//! `run` function returning the process exit code.

pub mod bench;
pub mod sandbox;
