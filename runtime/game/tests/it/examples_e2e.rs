//! End to end on the example repositories: build them, run both procedural
//! injectors, and score the true fix, an empty patch and an oracle-editing patch.

use crate::fixture::test_config;
use ssr_game::inject::{InjectConfig, InjectedBug, Strategy, inject};
use ssr_game::{
    BugState, EpisodeConfig, EvalOutcome, Evaluator, build_episode, examples, patch_ops,
};
use std::path::{Path, PathBuf};

fn examples_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn build(name: &str) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let repo = examples::create_one(&examples_source().join(name), &out.path().join(name)).unwrap();
    assert!(repo.commits >= 10, "{} has {} commits", name, repo.commits);
    (out, repo.path)
}

fn run_injector(repo: &Path, strategy: Strategy, count: usize, scratch: &Path) -> Vec<InjectedBug> {
    let cfg = InjectConfig {
        strategy,
        count,
        seed: 7,
        max_candidates: 40,
        verify: test_config(scratch),
    };
    let run = inject(crate::fixture::sandbox(), repo, &cfg, &mut |_| {}).unwrap();
    for t in &run.tried {
        eprintln!("{:?} {} -> {}", strategy, t.candidate, t.reason);
    }
    assert!(
        run.bugs.len() >= count,
        "{:?} found {} valid bugs",
        strategy,
        run.bugs.len()
    );
    for b in &run.bugs {
        assert!(b.report.valid && !b.report.fail_to_pass.is_empty());
        assert_eq!(b.seed, 7);
    }
    run.bugs
}

/// The true fix scores +1; an empty patch and a patch that edits the oracle tests
/// (re-adding a deleted test with the buggy expectation) score −1.
fn score_bug(repo: &Path, bug: &InjectedBug, scratch: &Path) {
    let ev = Evaluator::new(crate::fixture::sandbox(), test_config(scratch));
    let p = bug.report.all_tests();
    let state = BugState {
        artifact: &bug.artifact,
        higher_order_patch: None,
        tests: &p,
    };
    let fix = patch_ops::reverse(&bug.artifact.bug_inject).unwrap();
    let e = ev.evaluate(repo, state, &fix);
    assert!(e.solved, "{}: {}", bug.candidate, e.summary());
    // The scan for runner tampering has no false positive on a true fix.
    let findings: Vec<&String> = e.notes.iter().filter(|n| n.starts_with("scan:")).collect();
    eprintln!(
        "scan false positives on the true fix of {}: {}",
        bug.candidate,
        findings.len()
    );
    assert!(findings.is_empty(), "{}: {findings:?}", bug.candidate);
    let e = ev.evaluate(repo, state, "");
    assert_eq!(e.outcome, EvalOutcome::EmptyPatch);
    // Oracle edit: delete every oracle test file's content in the buggy workspace.
    let ws = tempfile::tempdir().unwrap();
    let ep = build_episode(
        repo,
        &bug.artifact,
        None,
        &EpisodeConfig::default(),
        &ws.path().join("w"),
    )
    .unwrap();
    let changes: Vec<(String, Option<String>)> = bug
        .artifact
        .test_files
        .iter()
        .map(|f| (f.clone(), Some(String::new())))
        .collect();
    let cheat = patch_ops::diff_of_changes(&ep.workspace, &changes).unwrap();
    let e = ev.evaluate(repo, state, &cheat);
    assert_eq!(e.reward, Some(-1.0), "{}", e.summary());
}

/// The true fix of every bug scores +1 with the run-time defences on (canaries, the
/// trusted reporter, read-only tests), and the patch scan's findings on those fixes,
/// each a false positive, are counted and printed (`ssr inject --json` reports the
/// same count as `scan_false_positives`). Returns the count.
fn true_fixes_score_plus_one(repo: &Path, bugs: &[InjectedBug], scratch: &Path) -> usize {
    let ev = Evaluator::new(crate::fixture::sandbox(), test_config(scratch));
    let mut false_positives = 0;
    for bug in bugs {
        let p = bug.report.all_tests();
        let state = BugState {
            artifact: &bug.artifact,
            higher_order_patch: None,
            tests: &p,
        };
        // The injector's artifact itself (bug, weakening, test script) is clean.
        let artifact = ssr_game::scan::scan_artifact(&bug.artifact);
        assert!(artifact.is_empty(), "{}: {artifact:?}", bug.candidate);
        let fix = patch_ops::reverse(&bug.artifact.bug_inject).unwrap();
        let e = ev.evaluate(repo, state, &fix);
        assert!(e.solved, "{}: {}", bug.candidate, e.summary());
        assert_eq!(e.reward, Some(1.0), "{}", e.summary());
        let noted = e.notes.iter().filter(|n| n.starts_with("scan:")).count();
        assert_eq!(
            noted,
            ssr_game::scan::true_fix_findings(&bug.artifact.bug_inject).len()
        );
        false_positives += noted;
    }
    eprintln!(
        "scan false positives on the {} true fixes of {}: {false_positives}",
        bugs.len(),
        repo.display()
    );
    false_positives
}

#[test]
fn python_example_yields_valid_bugs_from_both_injectors() {
    let (_out, repo) = build("python-textkit");
    let scratch = tempfile::tempdir().unwrap();
    let removal = run_injector(&repo, Strategy::Removal, 5, scratch.path());
    let history = run_injector(&repo, Strategy::History, 5, scratch.path());
    score_bug(&repo, &removal[0], scratch.path());
    score_bug(&repo, &history[0], scratch.path());
    let all: Vec<InjectedBug> = removal.into_iter().chain(history).collect();
    assert_eq!(true_fixes_score_plus_one(&repo, &all, scratch.path()), 0);
}

#[test]
fn rust_example_yields_valid_bugs_from_both_injectors() {
    let (_out, repo) = build("rust-ledger");
    let scratch = tempfile::tempdir().unwrap();
    let removal = run_injector(&repo, Strategy::Removal, 5, scratch.path());
    let history = run_injector(&repo, Strategy::History, 5, scratch.path());
    score_bug(&repo, &removal[0], scratch.path());
    score_bug(&repo, &history[0], scratch.path());
    let all: Vec<InjectedBug> = removal.into_iter().chain(history).collect();
    assert_eq!(true_fixes_score_plus_one(&repo, &all, scratch.path()), 0);
}

#[test]
fn example_repositories_are_deterministic() {
    let (_a, ra) = build("python-textkit");
    let (_b, rb) = build("python-textkit");
    let head = |p: &Path| {
        let o = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(p)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(head(&ra), head(&rb));
    let log = std::process::Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(&ra)
        .output()
        .unwrap();
    let log = String::from_utf8(log.stdout).unwrap();
    assert!(
        log.lines().filter(|l| l.starts_with("fix:")).count() >= 4,
        "{log}"
    );
}

/// A real third-party project: three sdists of `toolz` from PyPI committed in version
/// order. Skipped (with the reason printed) when the package index is unreachable.
#[test]
fn pypi_project_yields_valid_bugs() {
    let out = tempfile::tempdir().unwrap();
    let versions: Vec<String> = ["0.11.2", "0.12.0", "0.12.1"].map(String::from).to_vec();
    let repo = match examples::create_from_pypi("toolz", &versions, &out.path().join("toolz")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SKIPPED pypi_project_yields_valid_bugs: cannot fetch toolz sdists ({e})");
            return;
        }
    };
    assert_eq!(repo.commits, 3);
    let scratch = tempfile::tempdir().unwrap();
    let bugs = run_injector(&repo.path, Strategy::Removal, 2, scratch.path());
    score_bug(&repo.path, &bugs[0], scratch.path());
    assert_eq!(
        true_fixes_score_plus_one(&repo.path, &bugs, scratch.path()),
        0
    );
}
