//! `ssr`: the command-line program of Self-play SWE-RL.
//!
//! A thin binary: each subcommand lives in `src/cli/<name>.rs`, parses its arguments
//! into a validated configuration, and calls the library crates. `anyhow` stops here;
//! the libraries return typed errors.

use clap::{Parser, Subcommand};

mod cli;

/// Self-play SWE-RL: one policy injects bugs into real repositories and repairs them,
/// in sandboxes, with tests deciding the rewards.
#[derive(Parser)]
#[command(name = "ssr", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs commands in the sandbox over a directory; probes what the host offers.
    #[command(subcommand)]
    Sandbox(cli::sandbox::SandboxCmd),
    /// Inspect a GGUF model and generate text with the embedded engine.
    #[command(subcommand)]
    Model(cli::model::ModelCmd),
    /// Trains the policy on a trajectory file and writes a checkpoint.
    Train(cli::train::TrainArgs),
    /// Fine-tunes the policy on demonstrations (masked supervised loss; a warm start).
    Sft(cli::sft::SftArgs),
    /// Builds warm-start demonstrations from verified bugs, played through the real game.
    Demos(cli::demos::DemosArgs),
    /// The agent's WASM tools: list, describe, call, check, policy, bench.
    Tools(cli::tools::ToolsArgs),
    /// Benchmarks, each against a baseline measured side by side in the same run.
    #[command(subcommand)]
    Bench(cli::bench::BenchCmd),
    /// Runs a procedural (model-free) bug injector on a repository.
    Inject(cli::inject::InjectArgs),
    /// Checks a bug artifact with the seven consistency checks.
    Verify(cli::verify::VerifyArgs),
    /// Scores a solver patch against a bug.
    Evaluate(cli::evaluate::EvaluateArgs),
    /// Exports stored bugs to other formats.
    #[command(subcommand)]
    Export(cli::export::ExportCmd),
    /// Builds the example repositories.
    #[command(subcommand)]
    Examples(cli::examples::ExamplesCmd),
    /// Builds the pinned corpus of real projects and runs the injectors on each.
    Corpus(cli::corpus::CorpusArgs),
    /// Will the game work on this repository, and if not, what to change.
    Doctor(cli::doctor::DoctorArgs),
    /// Serves the embedded model as an OpenAI-compatible HTTP server.
    Serve(cli::serve::ServeArgs),
    /// ssr as an RL environment for external trainers: `ssr env serve`.
    #[command(subcommand)]
    Env(cli::env::EnvCmd),
    /// Plays one episode from a request file (the episode API without a server).
    Episode(cli::env::EpisodeArgs),
    /// Writes a run's HTML report and prints its summary table.
    Report(cli::report::ReportArgs),
    /// Runs self-play rounds: inject, verify, solve, evaluate, reward, train.
    Selfplay(Box<cli::selfplay::SelfPlayArgs>),
    /// Draws the held-out split of a repository's bugs (by function and by commit).
    Split(cli::split::SplitArgs),
    /// Evaluates a policy on held-out bugs: pass@K with a Wilson interval, and more.
    Heldout(Box<cli::heldout::HeldoutArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Sandbox(c) => cli::sandbox::run(c),
        Cmd::Model(c) => cli::model::run(c),
        Cmd::Train(a) => cli::train::run(a),
        Cmd::Sft(a) => cli::sft::run(a),
        Cmd::Demos(a) => cli::demos::run(a),
        Cmd::Tools(c) => cli::tools::run(c),
        Cmd::Bench(c) => cli::bench::run(c),
        Cmd::Inject(a) => cli::inject::run(a),
        Cmd::Verify(a) => cli::verify::run(a),
        Cmd::Evaluate(a) => cli::evaluate::run(a),
        Cmd::Export(c) => cli::export::run(c),
        Cmd::Examples(c) => cli::examples::run(c),
        Cmd::Corpus(a) => cli::corpus::run(a),
        Cmd::Doctor(a) => cli::doctor::run(a),
        Cmd::Serve(a) => cli::serve::run(a),
        Cmd::Env(c) => cli::env::run(c),
        Cmd::Episode(a) => cli::env::episode(a),
        Cmd::Report(a) => cli::report::run(a),
        Cmd::Selfplay(a) => cli::selfplay::run(*a),
        Cmd::Split(a) => cli::split::run(a),
        Cmd::Heldout(a) => cli::heldout::run(*a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once. Why not `{:#}`: the
/// libraries' typed errors already put their source in their own message, so the
/// plain chain says every cause two or three times over.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the history of r: {source}")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::other("no HEAD");
        let e = anyhow::Error::new(Outer { source: inner }).context("inject");
        assert_eq!(error_text(&e), "inject: reading the history of r: no HEAD");
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(error_text(&plain), "b: a");
    }
}
