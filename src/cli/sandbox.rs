//! `ssr sandbox ...`: run commands in the sandbox over a directory.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Prints which sandbox backends and limit mechanisms this host offers.
    Probe,
}

pub fn run(cmd: SandboxCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCmd::Probe => {
            println!("bwrap: {}", std::path::Path::new("/usr/bin/bwrap").exists());
            Ok(ExitCode::SUCCESS)
        }
    }
}
