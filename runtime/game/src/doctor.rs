//! `ssr doctor`: will the game work on this repository, and if not, what to change.
//! It detects the framework and test command, runs the suite once in the game's run
//! environment (timing it), compares what the trusted parser read with the runner's
//! own count (listing the ids one side lost), counts candidate functions/commits per
//! strategy, and takes one sample bug through the injector's verification. Every
//! "no" is a [`Problem`]: its cause and the flag or setting that changes it.
//!
//! The run environment is the caller's [`VerifyConfig`] and [`Sandbox`] (bubblewrap over
//! the host, or an image's environment from `image::ImageGame`); [`Origin`] says which,
//! for the two checks that differ: a repository taken out of an image must pass its
//! whole suite (a SWE-bench-style image holds the benchmark's own bug until its gold
//! patch, the base patch, is applied: [`failing_original_problem`], which `ssr
//! selfplay` also applies before it plays on an image), and git must run in the
//! environment (the solver's patch is taken with git inside it).
//!
//! Does not own: running tests (`testrun`), parsing logs (`trusted`), candidates or
//! verification (`inject`, `verify`).

use crate::VerifyConfig;
use crate::inject::{Framework, InjectConfig, InjectError, Strategy, inject};
use crate::testrun::{Harness, run_tests};
use crate::workspace::WorkspaceBase;
use serde::{Deserialize, Serialize};
use ssr_sandbox::{Command, ExecSpec, Sandbox};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One "no", with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub cause: String,
    /// The flag, setting or change that addresses it.
    pub fix: String,
}

/// Where the repository and its environment come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A repository on the host, tests in bubblewrap over the host's toolchains.
    Host,
    /// A container image's environment; `base_patch`: whether one was applied to the
    /// repository taken out of it.
    Image { base_patch: bool },
}

/// The "no" for a repository taken out of an image whose suite does not pass in full:
/// the game's original must be clean, and on a SWE-bench-style image a failing test is
/// the benchmark's own bug, whose fix is the instance's gold patch.
pub fn failing_original_problem(failing: &[String], base_patch_given: bool) -> Problem {
    let shown: Vec<&str> = failing.iter().take(10).map(String::as_str).collect();
    let more = failing.len().saturating_sub(shown.len());
    let list = if more > 0 {
        format!("{} (and {more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    };
    let cause = format!(
        "{} tests fail on the image's repository as the game would start from it: {list}; a SWE-bench-style image holds the benchmark's own bug until its gold patch is applied",
        failing.len()
    );
    let fix = if base_patch_given {
        "the base patch leaves them failing: check that it is the instance's gold patch (--base-patch FILE, `base_patch` in a selfplay config), or set what the tests need (--test-env KEY=VALUE)"
    } else {
        "apply the instance's gold patch first: --base-patch FILE (`base_patch = \"FILE\"` in a selfplay config); the repository must be taken out of the image (no --repo)"
    };
    Problem {
        cause,
        fix: fix.into(),
    }
}

/// The outcome of one strategy's sample injection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StrategyCheck {
    pub strategy: Strategy,
    /// Candidates available (functions to stub, commit hunks to revert).
    pub candidates: usize,
    /// The sample: the first candidate tried and its verdict, when one was tried.
    pub sample: Option<SampleBug>,
}

/// One candidate taken through verification.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SampleBug {
    pub candidate: String,
    pub valid: bool,
    pub reason: String,
    pub secs: f64,
}

/// Everything `ssr doctor` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DoctorReport {
    pub framework: Option<Framework>,
    /// The test script the game runs (as written to `test_script.sh`).
    pub test_command: Option<String>,
    /// The run environment's variables (the sandbox has no network either way).
    pub environment: BTreeMap<String, String>,
    /// Where the repository and its environment come from.
    pub origin: Origin,
    /// Tests that do not pass on the original (first 20).
    #[serde(default)]
    pub failing_on_original: Vec<String>,
    pub suite_secs: Option<f64>,
    pub tests_passing: usize,
    pub tests_not_passing: usize,
    /// Results the trusted parser read, and the runner's own count (pytest's final
    /// line; for other frameworks, the trusted reading itself).
    pub trusted_read: usize,
    pub runner_count: Option<usize>,
    /// Why the trusted parser calls the run incomplete, when it does.
    pub incomplete: Option<String>,
    /// Ids the injector's parser read that the trusted parser did not (first 20).
    pub lost_by_trusted: Vec<String>,
    pub strategies: Vec<StrategyCheck>,
    pub problems: Vec<Problem>,
}

impl DoctorReport {
    /// The game works here: no problem found and a sample bug was valid.
    pub fn playable(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The runner's own total of per-test results from pytest's final line (`1 failed,
/// 2 passed, 1 skipped`: 3).
fn pytest_total(log_tail: &str) -> Option<usize> {
    let line = log_tail
        .lines()
        .rev()
        .map(|l| l.trim().trim_matches('=').trim())
        .find(|l| {
            l.contains(" in ")
                && l.ends_with('s')
                && l.chars().next().is_some_and(|c| c.is_ascii_digit())
        })?;
    let counts = line.split(" in ").next()?;
    let mut total = 0;
    for part in counts.split(", ") {
        let (n, word) = part.split_once(' ')?;
        // Skips are grouped (`SKIPPED [2] file:line`) and carry no ids, so the trusted
        // parser reads none of them: leave them out of the comparison.
        if matches!(
            word,
            "warning" | "warnings" | "rerun" | "deselected" | "skipped"
        ) {
            continue;
        }
        total += n.parse::<usize>().ok()?;
    }
    Some(total)
}

/// Examines `repo` with the given run environment (from `origin`). `sample_candidates`
/// bounds the candidates each strategy's sample may try (0: count candidates only).
pub fn doctor(
    sandbox: &dyn Sandbox,
    origin: Origin,
    repo: &Path,
    verify: &VerifyConfig,
    sample_candidates: usize,
) -> DoctorReport {
    let mut report = DoctorReport {
        framework: Framework::detect(repo),
        test_command: None,
        environment: verify.run_env.env.clone(),
        origin,
        failing_on_original: Vec::new(),
        suite_secs: None,
        tests_passing: 0,
        tests_not_passing: 0,
        trusted_read: 0,
        runner_count: None,
        incomplete: None,
        lost_by_trusted: Vec::new(),
        strategies: Vec::new(),
        problems: Vec::new(),
    };
    let Some(framework) = report.framework else {
        report.problems.push(Problem {
            cause: "no test framework found: no root Cargo.toml and no Python test module (test_*.py or *_test.py)".into(),
            fix: "run doctor on the project's root, or add tests the game can run (pytest-discoverable modules or a Cargo crate)".into(),
        });
        return report;
    };
    if let Some(p) = git_problem(sandbox, verify) {
        report.problems.push(p);
    }
    // Each question needs the answer before it: the strategies need a suite that passes.
    if !check_suite(sandbox, repo, verify, framework, &mut report) {
        return report;
    }
    for strategy in [Strategy::History, Strategy::Removal] {
        check_strategy(
            sandbox,
            repo,
            verify,
            strategy,
            sample_candidates,
            &mut report,
        );
    }
    report
}

/// Runs the original suite once and records what it says: how long, how many tests
/// pass, what the trusted parser read. `false` when the strategies cannot be tried
/// (the suite did not run, or too few tests pass).
fn check_suite(
    sandbox: &dyn Sandbox,
    repo: &Path,
    verify: &VerifyConfig,
    framework: Framework,
    report: &mut DoctorReport,
) -> bool {
    let script = framework.test_script(repo, &framework.test_files(repo));
    report.test_command = Some(script.clone());
    let started = Instant::now();
    let run = run_suite(sandbox, repo, verify, framework, &script);
    report.suite_secs = Some(started.elapsed().as_secs_f64());
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(Problem {
                cause: format!("the test suite did not run to the end: {e}"),
                fix: "raise --hard-timeout/--soft-timeout if it is slow; check the log tail for a missing package or setting (--test-env KEY=VALUE)".into(),
            });
            return false;
        }
    };
    report.tests_passing = run.claimed.values().filter(|v| *v == "passed").count();
    report.tests_not_passing = run.claimed.len() - report.tests_passing;
    let failing = not_passing(&run);
    report.failing_on_original = failing.iter().take(20).cloned().collect();
    if let Origin::Image { base_patch } = report.origin
        && !failing.is_empty()
    {
        report
            .problems
            .push(failing_original_problem(&failing, base_patch));
    }
    if let Some(t) = &run.trusted {
        report.trusted_read = t.results.len();
        report.incomplete = t.incomplete.clone();
        report.lost_by_trusted = run
            .claimed
            .keys()
            .filter(|id| !t.results.contains_key(*id))
            .take(20)
            .cloned()
            .collect();
    }
    report.runner_count = match framework {
        // The printed summary also counts the trusted reporter's canaries, which no
        // parser result keeps: take them back out.
        Framework::Pytest => pytest_total(&run.log_tail)
            .map(|n| n.saturating_sub(run.reporter.as_ref().map_or(0, |r| r.canary_ids.len()))),
        Framework::Cargo => run.trusted.as_ref().map(|t| t.results.len()),
    };
    if let Some(why) = &report.incomplete {
        report.problems.push(Problem {
            cause: format!("the trusted parser calls the run incomplete ({why}), so no test counts as passing"),
            fix: "report the lost ids below as a parser bug; meanwhile run doctor on a subset whose ids parse".into(),
        });
    }
    if report.tests_passing < verify.min_passing_tests {
        report.problems.push(Problem {
            cause: format!(
                "{} tests pass on the original, fewer than the {} the game needs; log tail:\n{}",
                report.tests_passing, verify.min_passing_tests, run.log_tail
            ),
            fix: fix_from_log(&run.log_tail).unwrap_or_else(|| {
                "set what the tests need (--test-env KEY=VALUE), or lower --min-passing-tests"
                    .into()
            }),
        });
        return false;
    }
    true
}

/// A precise fix for the failures of a suite that passes nothing, read from its log:
/// options of an uninstalled pytest plugin in the project's `addopts`, or a module the
/// interpreter lacks. `None` for anything else (the generic advice stands).
pub fn fix_from_log(log: &str) -> Option<String> {
    if let Some(line) = log.lines().find(|l| l.contains("unrecognized arguments:")) {
        let args = line
            .split("unrecognized arguments:")
            .nth(1)
            .unwrap_or("")
            .trim();
        let ini = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("inifile:"))
            .map_or(String::new(), |f| format!(" ({})", f.trim()));
        return Some(format!(
            "the project's pytest configuration{ini} adds options of a plugin that is not installed ({args}): drop them with --test-env 'PYTEST_ADDOPTS=-o addopts=', or install the plugin into the interpreter the tests use"
        ));
    }
    let missing = log.lines().find_map(|l| {
        let rest = l.split("ModuleNotFoundError: No module named ").nth(1)?;
        Some(rest.trim().trim_matches(['\'', '"']).to_string())
    })?;
    let package = missing.split('.').next().unwrap_or(&missing).to_string();
    Some(format!(
        "the tests import `{missing}`, which the interpreter the tests use lacks: install it (python3 -m pip install {package}), or on an image use one that has it"
    ))
}

/// One run of the whole suite in a fresh workspace of `repo`.
fn run_suite(
    sandbox: &dyn Sandbox,
    repo: &Path,
    verify: &VerifyConfig,
    framework: Framework,
    script: &str,
) -> Result<crate::testrun::TestRun, String> {
    let base = WorkspaceBase::new(repo, verify).map_err(|e| e.to_string())?;
    let ws = base.fresh().map_err(|e| e.to_string())?;
    run_tests(
        sandbox,
        verify,
        ws.path(),
        Harness {
            test_script: script,
            test_parser: framework.test_parser(),
        },
    )
    .map_err(|e| e.to_string())
}

/// The ids a run did not report as passed, in order.
fn not_passing(run: &crate::testrun::TestRun) -> Vec<String> {
    run.claimed
        .iter()
        .filter(|(_, v)| *v != "passed")
        .map(|(id, _)| id.clone())
        .collect()
}

/// The tests that do not pass on `repo` as it is, from one run of its whole suite: the
/// check `ssr selfplay` makes before it plays on a repository taken out of an image.
/// `Err` when there is no framework or the suite did not run to the end.
pub fn failing_on_original(
    sandbox: &dyn Sandbox,
    repo: &Path,
    verify: &VerifyConfig,
) -> Result<Vec<String>, String> {
    let framework = Framework::detect(repo).ok_or("no test framework found")?;
    let script = framework.test_script(repo, &framework.test_files(repo));
    let run = run_suite(sandbox, repo, verify, framework, &script)?;
    Ok(not_passing(&run))
}

/// A problem when `git` does not run in the environment: the solver's patch is its
/// workspace's diff, taken with git inside the sandbox (the workspace's `.git` is
/// untrusted on the host).
fn git_problem(sandbox: &dyn Sandbox, verify: &VerifyConfig) -> Option<Problem> {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            return Some(Problem {
                cause: format!("no scratch directory for the git check: {e}"),
                fix: "set TMPDIR to a writable directory".into(),
            });
        }
    };
    let mut spec = ExecSpec::new(Command::Script("git --version".into()), dir.path());
    spec.env = verify.run_env.env.clone();
    spec.mounts = verify.run_env.mounts.clone();
    spec.limits.timeout = std::time::Duration::from_secs(30);
    let why = match sandbox.exec(&spec) {
        Ok(out) if out.success() => return None,
        Ok(out) => format!("exit {:?}: {}", out.exit_code, out.stderr.trim()),
        Err(e) => e.to_string(),
    };
    Some(Problem {
        cause: format!(
            "git does not run in the environment ({why}): the solver's patch is taken with git inside it"
        ),
        fix: "use an image with git installed (SWE-bench's have it), or put git on the PATH the tests get (--test-env PATH=...)".into(),
    })
}

/// Tries `strategy` on up to `sample_candidates` candidates: how many it has, the first
/// valid bug (or the last try), and a problem when it has none or makes none.
fn check_strategy(
    sandbox: &dyn Sandbox,
    repo: &Path,
    verify: &VerifyConfig,
    strategy: Strategy,
    sample_candidates: usize,
    report: &mut DoctorReport,
) {
    let cfg = InjectConfig {
        strategy,
        count: 1,
        seed: 0,
        max_candidates: sample_candidates,
        verify: verify.clone(),
    };
    let mut last = Instant::now();
    let mut sample = None;
    let result = inject(sandbox, repo, &cfg, &mut |ev| match ev {
        crate::inject::InjectEvent::Tried { result, .. } => {
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            if sample.as_ref().is_none_or(|s: &SampleBug| !s.valid) {
                sample = Some(SampleBug {
                    candidate: result.candidate,
                    valid: result.valid,
                    reason: result.reason,
                    secs,
                });
            }
        }
        crate::inject::InjectEvent::Candidates { .. } => last = Instant::now(),
    });
    let run = match result {
        Ok(run) => run,
        Err(e) => {
            let fix = match &e {
                InjectError::History(_) => {
                    "make the repository a git repository with commits (git init; git add -A; git commit)"
                }
                _ => "see the cause; --test-env KEY=VALUE sets what the tests need",
            };
            report.problems.push(Problem {
                cause: format!("{}: {e}", strategy.name()),
                fix: fix.into(),
            });
            return;
        }
    };
    if run.candidates_total == 0 {
        report.problems.push(Problem {
            cause: format!("{} has no candidates", strategy.name()),
            fix: match strategy {
                Strategy::History => {
                    "give the repository a history of code commits (one commit per release works)"
                        .into()
                }
                Strategy::Removal => "the code files hold no function with a body to remove".into(),
            },
        });
    } else if sample_candidates > 0 && run.bugs.is_empty() {
        report.problems.push(Problem {
            cause: format!(
                "{}: none of {} candidates tried made a valid bug (last: {})",
                strategy.name(),
                run.tried.len(),
                run.tried.last().map_or("", |t| t.reason.as_str())
            ),
            fix: "try more candidates (ssr inject --max-candidates N) or the other strategy".into(),
        });
    }
    report.strategies.push(StrategyCheck {
        strategy,
        candidates: run.candidates_total,
        sample,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_final_line_gives_the_runner_total() {
        assert_eq!(
            pytest_total(
                "x\n======== 1 failed, 10 passed, 1 skipped, 1 xfailed, 1 warning in 0.08s =========\n"
            ),
            Some(12)
        );
        assert_eq!(pytest_total("3 passed, 1 rerun in 0.1s\n"), Some(3));
        assert_eq!(pytest_total("no summary here\n"), None);
    }

    #[test]
    fn the_fix_names_the_uninstalled_plugin_or_the_missing_module() {
        let log = "ERROR: usage: python -m pytest [options] [file_or_dir]\npython -m pytest: error: unrecognized arguments: --cov=semver --cov-report=term-missing\n  inifile: /repo/.pytest.ini\n  rootdir: /repo\n";
        let fix = fix_from_log(log).unwrap();
        assert!(
            fix.contains("/repo/.pytest.ini") && fix.contains("--cov=semver"),
            "{fix}"
        );
        assert!(fix.contains("PYTEST_ADDOPTS=-o addopts="), "{fix}");
        let log = "iso8601/test_iso8601.py:8: in <module>\n    import hypothesis\nE   ModuleNotFoundError: No module named 'hypothesis.strategies'\n";
        let fix = fix_from_log(log).unwrap();
        assert!(
            fix.contains("`hypothesis.strategies`") && fix.contains("pip install hypothesis)"),
            "{fix}"
        );
        assert_eq!(fix_from_log("1 failed, 3 passed"), None);
    }
}
