//! `ssr export swebench DIR [--out FILE]`: the valid bugs stored under `DIR` (as
//! written by `ssr inject`) as SWE-bench JSON lines, one instance per line:
//! `{"instance_id", "repo", "base_commit", "setup_patch", "patch", "test_patch",
//! "problem_statement", "FAIL_TO_PASS", "PASS_TO_PASS"}` — `patch` is the fix (the
//! reversed bug diff), `test_patch` the reversed weakening, the two test lists are
//! JSON-encoded strings as in the SWE-bench dataset, and `setup_patch` (bug +
//! weakening) turns `base_commit` into the buggy starting state.
//!
//! Bugs made on a container image (`ssr inject --image`) also carry what a harness needs
//! to rebuild the instance from that image: `image_name`, `image_id`, `workdir` (the
//! repository's path inside the image), `base_patch` (applied to the image's tree
//! before `setup_patch`; empty when none) and `image_commit` (the image's tree as
//! committed by `ssr`; `base_commit` is that plus the base patch).

use anyhow::Context;
use clap::{Args, Subcommand};
use ssr_game::bug_store;
use ssr_game::image::ImageMeta;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ExportCmd {
    /// Writes valid bugs as SWE-bench instances (JSON lines).
    Swebench(SwebenchArgs),
}

#[derive(Args)]
pub struct SwebenchArgs {
    /// Directory of stored bugs (`<id>/` with the artifact, report.json, bug.json).
    pub dir: PathBuf,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: ExportCmd) -> anyhow::Result<ExitCode> {
    let ExportCmd::Swebench(args) = cmd;
    let mut lines = Vec::new();
    let mut skipped = 0;
    for dir in bug_store::list(&args.dir)? {
        let bug = bug_store::read(&dir).with_context(|| format!("reading {}", dir.display()))?;
        match bug.swebench()? {
            Some(inst) => {
                let mut value = serde_json::to_value(&inst)?;
                if let (Some(image), Some(obj)) =
                    (ImageMeta::read_from(&dir)?, value.as_object_mut())
                {
                    obj.extend(image.swebench_fields());
                }
                lines.push(serde_json::to_string(&value)?);
            }
            None => skipped += 1,
        }
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    match &args.out {
        Some(p) => std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    eprintln!(
        "exported {} instances ({} invalid bugs skipped)",
        lines.len(),
        skipped
    );
    Ok(ExitCode::SUCCESS)
}
