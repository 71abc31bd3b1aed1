//! `ssr inject --repo DIR --strategy history|removal [--count N] [--seed S] --out DIR
//! [--json]`: the procedural (model-free) injectors. Valid bugs are written to
//! `OUT/<bug id>/` (five files, `report.json`, `bug.json`; see
//! `ssr_game::bug_store`), with a progress bar on stderr.
//!
//! `--json` prints one object: `{"repo", "framework", "strategy", "seed",
//! "test_files": [path], "original_tests": n, "candidates_total": n, "tried": n,
//! "valid": n, "bugs": [{"id", "dir", "candidate", "fail_to_pass": [id],
//! "pass_to_pass": n, "true_fix_scan_findings": n}], "rejected": [{"candidate", "reason"}],
//! "scan_false_positives": n}`: the last counts the patch scan's findings on the
//! bugs' true fixes, each a false positive.
//! Exit status 0 when at least `--count` valid bugs were found, 1 otherwise.

use super::verify::{GameEnv, GameOpts};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use ssr_game::BugSource;
use ssr_game::bug_store::{self, BugMeta};
use ssr_game::image::ImageMeta;
use ssr_game::inject::{InjectConfig, InjectEvent, InjectedBug, InjectionRun, Strategy, inject};
use ssr_game::scan::true_fix_findings;
use ssr_sandbox::Sandbox;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InjectArgs {
    /// The repository to break (a git repository for `history`; default with `--image`:
    /// taken out of the image).
    #[arg(long, required_unless_present = "image")]
    pub repo: Option<PathBuf>,
    /// `history` (revert past commits' code hunks) or `removal` (stub function bodies).
    #[arg(long)]
    pub strategy: Strategy,
    /// Valid bugs wanted.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Seed of the candidate order (recorded in every bug.json).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Candidates tried at most.
    #[arg(long, default_value_t = 50)]
    pub max_candidates: usize,
    /// Where the bugs are written.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

/// A validated command line: the game to play on, the injector's settings, where the
/// bugs go and how to print.
struct InjectJob {
    sandbox: Box<dyn Sandbox>,
    repo: PathBuf,
    image: Option<ImageMeta>,
    cfg: InjectConfig,
    out: PathBuf,
    json: bool,
}

/// Destructures the arguments (a flag added and not wired here does not compile) and
/// sets up the game: the sandbox, the repository (or the image's), the output folder.
fn resolve(args: InjectArgs) -> anyhow::Result<InjectJob> {
    let InjectArgs {
        repo,
        strategy,
        count,
        seed,
        max_candidates,
        out,
        json,
        opts,
    } = args;
    let GameEnv {
        sandbox,
        cfg: verify,
        repo,
        image,
        environment: _,
        origin: _,
    } = opts.game_env(repo.as_deref())?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = InjectConfig {
        strategy,
        count,
        seed,
        max_candidates,
        verify,
    };
    Ok(InjectJob {
        sandbox,
        repo,
        image,
        cfg,
        out,
        json,
    })
}

/// The injection run, with a progress bar on stderr.
fn inject_with_bar(job: &InjectJob) -> anyhow::Result<InjectionRun> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} candidates, {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("running the original tests");
    let result = inject(&job.sandbox, &job.repo, &job.cfg, &mut |ev| match ev {
        InjectEvent::Candidates { to_try, .. } => {
            bar.set_length(to_try as u64);
            bar.set_message("0 valid");
        }
        InjectEvent::Tried { valid_so_far, .. } => {
            bar.inc(1);
            bar.set_message(format!("{valid_so_far} valid"));
        }
    });
    bar.finish_and_clear();
    Ok(result?)
}

/// Writes each valid bug to `OUT/<id>/` (with the image's metadata under `--image`).
fn write_bugs<'a>(
    job: &InjectJob,
    run: &'a InjectionRun,
) -> anyhow::Result<Vec<(&'a InjectedBug, PathBuf)>> {
    let repo = &job.repo;
    let repo_name = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base_commit = bug_store::head_commit(repo);
    let framework = serde_json::to_string(&run.framework)?
        .trim_matches('"')
        .to_string();
    let mut written = Vec::new();
    for b in &run.bugs {
        let meta = BugMeta {
            id: b.id.clone(),
            strategy: Some(b.strategy.name().to_string()),
            seed: Some(b.seed),
            candidate: b.candidate.clone(),
            repo: repo_name.clone(),
            repo_path: repo.display().to_string(),
            base_commit: base_commit.clone(),
            framework: Some(framework.clone()),
            source: Some(BugSource::Procedural),
        };
        let dir = bug_store::write(&job.out, &b.artifact, &b.report, &meta)?;
        if let Some(image) = &job.image {
            image.write_to(&dir)?;
        }
        written.push((b, dir));
    }
    Ok(written)
}

/// The scan's findings on the bugs' true fixes: each one a false positive.
fn scan_false_positives(run: &InjectionRun) -> usize {
    run.bugs
        .iter()
        .map(|b| true_fix_findings(&b.artifact.bug_inject).len())
        .sum()
}

/// The one `--json` object (see the module doc).
fn print_json(
    job: &InjectJob,
    run: &InjectionRun,
    written: &[(&InjectedBug, PathBuf)],
) -> anyhow::Result<()> {
    let bugs: Vec<_> = written
        .iter()
        .map(|(b, dir)| {
            json!({"id": b.id, "dir": dir, "candidate": b.candidate,
                   "fail_to_pass": b.report.fail_to_pass, "pass_to_pass": b.report.pass_to_pass.len(),
                   "true_fix_scan_findings": true_fix_findings(&b.artifact.bug_inject).len()})
        })
        .collect();
    let rejected: Vec<_> = run
        .tried
        .iter()
        .filter(|t| !t.valid)
        .map(|t| json!({"candidate": t.candidate, "reason": t.reason}))
        .collect();
    let out = json!({
        "repo": job.repo, "framework": run.framework, "strategy": run.strategy, "seed": run.seed,
        "test_files": run.test_files, "original_tests": run.original_tests,
        "candidates_total": run.candidates_total, "tried": run.tried.len(), "valid": run.bugs.len(),
        "bugs": bugs, "rejected": rejected, "scan_false_positives": scan_false_positives(run),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The human summary: a count line, then one line per bug.
fn print_text(run: &InjectionRun, written: &[(&InjectedBug, PathBuf)]) {
    println!(
        "{} valid bugs from {} candidates tried ({} available; {} tests pass on the original; seed {})",
        run.bugs.len(),
        run.tried.len(),
        run.candidates_total,
        run.original_tests,
        run.seed
    );
    println!(
        "  scan findings on the true fixes (false positives): {}",
        scan_false_positives(run)
    );
    for (b, dir) in written {
        println!(
            "  {}  {}  F={}  {}",
            b.id,
            b.candidate,
            b.report.fail_to_pass.len(),
            dir.display()
        );
    }
}

pub fn run(args: InjectArgs) -> anyhow::Result<ExitCode> {
    let job = resolve(args)?;
    let run = inject_with_bar(&job)?;
    let written = write_bugs(&job, &run)?;
    if job.json {
        print_json(&job, &run, &written)?;
    } else {
        print_text(&run, &written);
    }
    Ok(if run.bugs.len() >= job.cfg.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
