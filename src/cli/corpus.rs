//! `ssr corpus --file corpus/corpus.toml --out DIR [--only NAME,...] [--bugs N]
//! [--max-candidates N] [--json]`: builds each project of the pinned corpus (releases
//! as commits, fetched and unpacked in Rust; kept in `OUT/<name>` and reused), runs
//! both procedural injectors on it, scores each valid bug's true fix with the
//! evaluator, and prints the table the README shows: project, framework, tests, valid
//! bugs per strategy (with how many true fixes scored +1), the patch scan's findings
//! on those true fixes (false positives), median verify time, and whether it is
//! playable or why not.
//!
//! A project is playable when every strategy gave `--bugs` valid bugs whose true fixes
//! all score +1. Exit status 0 always (the table is the result); 1 only when the corpus
//! file is unusable.

use super::verify::{GameOpts, game_sandbox};
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use ssr_game::corpus::{Corpus, CorpusProject};
use ssr_game::inject::{InjectConfig, InjectEvent, Strategy, inject};
use ssr_game::{BugState, Evaluator, patch_ops};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct CorpusArgs {
    /// The corpus file.
    #[arg(long, default_value = "corpus/corpus.toml")]
    pub file: PathBuf,
    /// Where the projects' repositories are built (and reused on later runs).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these projects (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Valid bugs wanted per strategy.
    #[arg(long, default_value_t = 3)]
    pub bugs: usize,
    /// Candidates tried at most per strategy.
    #[arg(long, default_value_t = 25)]
    pub max_candidates: usize,
    /// Print one JSON array of rows.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

/// One strategy's result on one project.
#[derive(Serialize, Default)]
struct StrategyRow {
    valid: usize,
    fixes_scoring_one: usize,
    /// Findings of the patch scan (`scan`) on the true fixes: each one a false
    /// positive, since a true fix tampers with nothing.
    scan_findings: usize,
    tried: usize,
    /// Seconds each valid bug's candidate took (inject-time verification included).
    verify_secs: Vec<f64>,
    /// Why it fell short, when it did.
    problem: Option<String>,
}

#[derive(Serialize)]
struct Row {
    project: String,
    traits: Vec<String>,
    framework: Option<String>,
    tests: Option<usize>,
    history: StrategyRow,
    removal: StrategyRow,
    median_verify_secs: Option<f64>,
    playable: bool,
    reason: Option<String>,
}

fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(xs[xs.len() / 2])
}

/// The most frequent rejection reason of a run, shortened.
fn common_rejection(reasons: &[String]) -> Option<String> {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(r, n)| format!("{n}× {}", r.chars().take(160).collect::<String>()))
}

fn run_strategy(
    sandbox: &dyn ssr_sandbox::Sandbox,
    repo: &Path,
    strategy: Strategy,
    args: &CorpusArgs,
    project: &CorpusProject,
    framework: &mut Option<String>,
    tests: &mut Option<usize>,
) -> StrategyRow {
    let mut verify = match args.opts.verify_config_for(repo) {
        Ok(v) => v,
        Err(e) => {
            return StrategyRow {
                problem: Some(format!("{e:#}")),
                ..StrategyRow::default()
            };
        }
    };
    verify.run_env.env.extend(project.test_env.clone());
    let cfg = InjectConfig {
        strategy,
        count: args.bugs,
        seed: 0,
        max_candidates: args.max_candidates,
        verify,
    };
    let mut row = StrategyRow::default();
    let mut last = Instant::now();
    let mut times = Vec::new();
    let result = inject(sandbox, repo, &cfg, &mut |ev| {
        if let InjectEvent::Tried { result, .. } = ev {
            let took = last.elapsed().as_secs_f64();
            last = Instant::now();
            if result.valid {
                times.push(took);
            }
        } else {
            last = Instant::now();
        }
    });
    let run = match result {
        Ok(r) => r,
        Err(e) => {
            row.problem = Some(short_reason(&e.to_string()));
            return row;
        }
    };
    *framework = serde_json::to_string(&run.framework)
        .ok()
        .map(|s| s.trim_matches('"').to_string());
    *tests = Some(run.original_tests);
    row.tried = run.tried.len();
    row.valid = run.bugs.len();
    row.verify_secs = times;
    let ev = Evaluator::new(sandbox, cfg.verify.clone());
    for bug in &run.bugs {
        let all = bug.report.all_tests();
        let state = BugState {
            artifact: &bug.artifact,
            higher_order_patch: None,
            tests: &all,
        };
        let Ok(fix) = patch_ops::reverse(&bug.artifact.bug_inject) else {
            continue;
        };
        let e = ev.evaluate(repo, state, &fix);
        if e.solved {
            row.fixes_scoring_one += 1;
        }
        row.scan_findings += e.notes.iter().filter(|n| n.starts_with("scan:")).count();
    }
    if row.valid < args.bugs {
        let reasons: Vec<String> = run
            .tried
            .iter()
            .filter(|t| !t.valid)
            .map(|t| t.reason.clone())
            .collect();
        row.problem = Some(format!(
            "{} valid of {} wanted after {} candidates ({} available){}",
            row.valid,
            args.bugs,
            row.tried,
            run.candidates_total,
            common_rejection(&reasons)
                .map(|r| format!("; most rejections: {r}"))
                .unwrap_or_default()
        ));
    } else if row.fixes_scoring_one < row.valid {
        row.problem = Some(format!(
            "{} of {} true fixes did not score +1",
            row.valid - row.fixes_scoring_one,
            row.valid
        ));
    }
    row
}

fn cell(r: &StrategyRow) -> String {
    format!("{} ({} fixes +1)", r.valid, r.fixes_scoring_one)
}

pub fn run(args: CorpusArgs) -> anyhow::Result<ExitCode> {
    let corpus = Corpus::load(&args.file)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let sandbox = game_sandbox()?;
    let mut rows = Vec::new();
    for project in &corpus.project {
        if !args.only.is_empty() && !args.only.contains(&project.name) {
            continue;
        }
        eprintln!("== {}", project.name);
        let row = play_project(&sandbox, &args, project)?;
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// One project's row: its repository (built once and reused), both strategies, and
/// whether it is playable or why not.
fn play_project(
    sandbox: &dyn ssr_sandbox::Sandbox,
    args: &CorpusArgs,
    project: &CorpusProject,
) -> anyhow::Result<Row> {
    let dest = args.out.join(&project.name);
    let mut row = Row {
        project: project.name.clone(),
        traits: project.traits.clone(),
        framework: None,
        tests: None,
        history: StrategyRow::default(),
        removal: StrategyRow::default(),
        median_verify_secs: None,
        playable: false,
        reason: None,
    };
    if !dest.join(".git").is_dir() {
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("removing the partial {}", dest.display()))?;
        }
        if let Err(e) = project.build(&dest) {
            row.reason = Some(format!("fetching its releases: {e}"));
            return Ok(row);
        }
    }
    let repo = dest.canonicalize()?;
    let (mut fw, mut tests) = (None, None);
    for strategy in [Strategy::History, Strategy::Removal] {
        let result = run_strategy(sandbox, &repo, strategy, args, project, &mut fw, &mut tests);
        match strategy {
            Strategy::History => row.history = result,
            Strategy::Removal => row.removal = result,
        }
    }
    row.framework = fw;
    row.tests = tests;
    let mut all: Vec<f64> = row
        .history
        .verify_secs
        .iter()
        .chain(&row.removal.verify_secs)
        .copied()
        .collect();
    row.median_verify_secs = median(&mut all);
    // Issue 16's bar: `--bugs` valid bugs from *each* strategy, every true fix +1.
    row.playable = row.history.problem.is_none() && row.removal.problem.is_none();
    if !row.playable {
        let mut why = Vec::new();
        if let Some(p) = &row.history.problem {
            why.push(format!("history: {p}"));
        }
        if let Some(p) = &row.removal.problem {
            why.push(format!("removal: {p}"));
        }
        row.reason = Some(why.join("; "));
    }
    eprintln!(
        "   history {}, removal {}{}",
        cell(&row.history),
        cell(&row.removal),
        row.reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    Ok(row)
}

/// An injection error for the table: its first line, plus the fix `ssr doctor` reads
/// from the log where it knows one, else the log's decisive line (pytest's `E ` lines,
/// a usage or import error), so the row says what to do rather than ending at "log
/// tail:".
fn short_reason(err: &str) -> String {
    let first = err.lines().next().unwrap_or_default();
    if let Some(fix) = ssr_game::doctor::fix_from_log(err) {
        return format!("{first} fix: {fix}");
    }
    let telling = err.lines().skip(1).map(str::trim).find(|l| {
        l.starts_with("E ") || l.contains("rror:") || l.contains("unrecognized arguments")
    });
    match telling {
        Some(l) => format!("{first} {}", l.chars().take(200).collect::<String>()),
        None => first.to_string(),
    }
}

/// The README's table.
fn print_table(rows: &[Row]) {
    println!(
        "| project | traits | framework | tests | history bugs | removal bugs | scan findings on true fixes | median verify | playable |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.project,
            r.traits.join(", "),
            r.framework.as_deref().unwrap_or("-"),
            r.tests.map_or("-".into(), |t| t.to_string()),
            cell(&r.history),
            cell(&r.removal),
            r.history.scan_findings + r.removal.scan_findings,
            r.median_verify_secs
                .map_or("-".into(), |s| format!("{s:.1} s")),
            match &r.reason {
                None => "yes".to_string(),
                Some(why) => format!("no: {}", why.replace('|', "\\|")),
            }
        );
    }
    let playable = rows.iter().filter(|r| r.playable).count();
    println!("\n{playable} of {} projects playable", rows.len());
}

#[cfg(test)]
mod tests {
    use super::short_reason;

    #[test]
    fn the_reason_keeps_the_decisive_log_line() {
        let err = "no test file passes in full (exit 4); log tail:\nERROR: usage: pytest [options]\npytest: error: unrecognized arguments: --cov=semver\n  inifile: /repo/.pytest.ini\n";
        let r = short_reason(err);
        assert!(r.starts_with("no test file passes in full"), "{r}");
        assert!(r.contains("PYTEST_ADDOPTS=-o addopts="), "{r}");
        let err = "no test file passes in full (exit 2); log tail:\ntests/test_search.py:3: in <module>\nE   ImportError: cannot import name 'unittest' from 'tests'\n";
        let r = short_reason(err);
        assert!(
            r.ends_with("E   ImportError: cannot import name 'unittest' from 'tests'"),
            "{r}"
        );
        assert_eq!(short_reason("one line"), "one line");
    }
}
