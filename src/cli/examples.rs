//! `ssr examples create --out DIR [--source DIR] [--pypi PKG --versions V1,V2,...]
//! [--json]`: builds the example git repositories from their committed source
//! (`examples/<name>/commits/`), deterministically (fixed dates and identity), and
//! optionally a repository from a PyPI package's sdists, one commit per version
//! (needs network access to the package index).
//!
//! `--json` prints `[{"name", "path", "commits", "head"}]`.

use anyhow::Context;
use clap::{Args, Subcommand};
use ssr_game::examples;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ExamplesCmd {
    /// Creates the example repositories under `--out`.
    Create(CreateArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Output directory (one repository per example inside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Example sources (default: `examples/` of this checkout).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Also build `OUT/<PKG>` from these PyPI sdists.
    #[arg(long)]
    pub pypi: Option<String>,
    /// Versions of `--pypi`, oldest first, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "pypi")]
    pub versions: Vec<String>,
    /// Skip the bundled examples (only `--pypi`).
    #[arg(long, requires = "pypi")]
    pub only_pypi: bool,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ExamplesCmd) -> anyhow::Result<ExitCode> {
    let ExamplesCmd::Create(args) = cmd;
    let source = args
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")));
    let mut created = Vec::new();
    if !args.only_pypi {
        created = examples::create_all(&source, &args.out)
            .with_context(|| format!("creating the examples of {}", source.display()))?;
    }
    if let Some(pkg) = &args.pypi {
        anyhow::ensure!(!args.versions.is_empty(), "--pypi needs --versions");
        created.push(examples::create_from_pypi(
            pkg,
            &args.versions,
            &args.out.join(pkg),
        )?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        for r in &created {
            println!(
                "{:<16} {:>3} commits  HEAD {}  {}",
                r.name,
                r.commits,
                &r.head[..12.min(r.head.len())],
                r.path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
