//! One module per subcommand group. Each exposes a clap `Subcommand`/`Args` type and a
//! `run` function returning the process exit code.

// Wired into `BenchCmd` by the lead (see bench_gpu.rs's module doc); until then unused.
#[allow(dead_code)]
pub mod bench_gpu;
pub mod bench_model;
pub mod bench_tools;
pub mod model;
pub mod sandbox;
pub mod tools;
pub mod train;
