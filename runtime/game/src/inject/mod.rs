//! Procedural (model-free) injectors (`SSR_SPEC.md` section 8): `history` reverts the
//! code hunks of past commits, `removal` replaces function bodies with stubs; both
//! then weaken the oracle by deleting the tests that fail, write the harness for the
//! detected framework, and keep only artifacts the verifier accepts.
//!
//! The pipeline for one repository:
//! 1. detect the framework, list the oracle test files, write script and parser;
//! 2. run the original once; test files with a failing test are left out of the
//!    harness (the verifier demands that every selected test passes);
//! 3. order the candidates (history: fix/bug commits first; both: seeded shuffle);
//! 4. per candidate: apply it in a fresh workspace and run the tests; delete the
//!    broken tests from the oracle files (the weakening); verify the artifact; keep
//!    it when valid, until `count` bugs are found or `max_candidates` were tried.
//!
//! Does not own: the checks (`verify`), or model-driven injection (`ssr-agent`).

pub mod history;
pub mod removal;
pub mod scripts;
pub mod weaken;

pub use scripts::Framework;

use crate::artifact::Artifact;
use crate::config::VerifyConfig;
use crate::patch_ops::{self, FileChange};
use crate::report::VerificationReport;
use crate::testrun::{Harness, RunFailure, run_tests};
use crate::verify::Verifier;
use crate::workspace::WorkspaceBase;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssr_sandbox::Sandbox;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How a procedural injector picks its bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Revert code hunks of past commits.
    History,
    /// Replace function bodies with stubs.
    Removal,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "history" => Ok(Strategy::History),
            "removal" => Ok(Strategy::Removal),
            other => Err(format!("unknown strategy `{other}` (history | removal)")),
        }
    }
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::History => "history",
            Strategy::Removal => "removal",
        }
    }
}

/// Settings of one injection run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InjectConfig {
    pub strategy: Strategy,
    /// Valid bugs wanted.
    pub count: usize,
    /// Seed of the candidate order (recorded with every bug).
    pub seed: u64,
    /// Candidates tried at most.
    pub max_candidates: usize,
    pub verify: VerifyConfig,
}

/// A bug the injector found valid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InjectedBug {
    /// `<strategy>-<first 10 hex digits of sha256(bug diff)>`.
    pub id: String,
    pub strategy: Strategy,
    pub seed: u64,
    /// What was done (`revert abc123 "fix: ..."`, `stub src/m.py::f`).
    pub candidate: String,
    pub artifact: Artifact,
    pub report: VerificationReport,
}

/// What happened to one candidate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CandidateResult {
    pub candidate: String,
    pub valid: bool,
    pub reason: String,
}

/// The outcome of an injection run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InjectionRun {
    pub framework: Framework,
    pub strategy: Strategy,
    pub seed: u64,
    /// Oracle test files used by the harness.
    pub test_files: Vec<String>,
    /// Tests passing on the original.
    pub original_tests: usize,
    pub candidates_total: usize,
    pub tried: Vec<CandidateResult>,
    pub bugs: Vec<InjectedBug>,
}

/// Progress reported while injecting.
#[derive(Clone, Debug)]
pub enum InjectEvent {
    /// The candidates are known.
    Candidates { total: usize, to_try: usize },
    /// One candidate is done.
    Tried {
        index: usize,
        result: CandidateResult,
        valid_so_far: usize,
    },
}

/// Why an injection run could not start.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("no supported test framework found in {0} (pytest tests or a Cargo.toml)")]
    NoFramework(String),
    #[error("running the tests of the original repository: {0}")]
    Original(RunFailure),
    #[error(
        "no test file passes in full on the original repository (test script exit \
         {exit:?}, {parsed} results parsed); does the test command need a setting \
         (`--test-env KEY=VALUE`)? log tail:\n{log_tail}"
    )]
    NothingPasses {
        exit: Option<i32>,
        parsed: usize,
        log_tail: String,
    },
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

enum CandidateBug {
    Diff(String),
    Change(FileChange),
}

struct Candidate {
    description: String,
    bug: CandidateBug,
}

fn short_hash(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    hex::encode(h.finalize())[..10].to_string()
}

/// Runs the procedural injector on `repo`: the oracle from the original run (steps 1
/// and 2), the candidates in order (3), then each tried until enough are valid (4).
pub fn inject(
    sandbox: &dyn Sandbox,
    repo: &Path,
    cfg: &InjectConfig,
    on_event: &mut dyn FnMut(InjectEvent),
) -> Result<InjectionRun, InjectError> {
    let framework = Framework::detect(repo)
        .ok_or_else(|| InjectError::NoFramework(repo.display().to_string()))?;
    let base = WorkspaceBase::new(repo, &cfg.verify)
        .map_err(|e| InjectError::Original(RunFailure::Setup(e.to_string())))?;
    let oracle = Oracle::from_original(sandbox, &base, repo, framework, &cfg.verify)?;
    let mut candidates = candidates(repo, framework, cfg)?;
    let total = candidates.len();
    candidates.truncate(cfg.max_candidates);
    on_event(InjectEvent::Candidates {
        total,
        to_try: candidates.len(),
    });
    let (tried, bugs) = try_candidates(sandbox, &base, &oracle, candidates, cfg, on_event);
    Ok(InjectionRun {
        framework,
        strategy: cfg.strategy,
        seed: cfg.seed,
        original_tests: oracle.passing.len(),
        test_files: oracle.test_files,
        candidates_total: total,
        tried,
        bugs,
    })
}

/// What every candidate of a run is tried and verified with, fixed by the original
/// run: the harness, the oracle files and their text, and the tests that pass.
struct Oracle {
    framework: Framework,
    script: String,
    parser: String,
    /// Oracle test files used by the harness.
    test_files: Vec<String>,
    /// The original text of each oracle file (the weakening deletes tests from it).
    test_contents: BTreeMap<String, String>,
    /// Tests passing on the original, outside the test files left out.
    passing: Vec<String>,
}

impl Oracle {
    /// Steps 1 and 2: the harness for `framework`, and the original run; test files
    /// with a failing test are left out of the harness (the verifier demands that
    /// every selected test passes).
    fn from_original(
        sandbox: &dyn Sandbox,
        base: &WorkspaceBase,
        repo: &Path,
        framework: Framework,
        vcfg: &VerifyConfig,
    ) -> Result<Oracle, InjectError> {
        let all_test_files = framework.test_files(repo);
        let parser = framework.test_parser().to_string();
        let ws = base
            .fresh()
            .map_err(|e| InjectError::Original(RunFailure::Setup(e.to_string())))?;
        let script = framework.test_script(repo, &all_test_files);
        let run = run_tests(
            sandbox,
            vcfg,
            ws.path(),
            Harness {
                test_script: &script,
                test_parser: &parser,
            },
        )
        .map_err(InjectError::Original)?;
        drop(ws);
        let failing_files: BTreeSet<String> = run
            .claimed
            .iter()
            .filter(|(_, v)| *v != "passed")
            .filter_map(|(id, _)| weaken::locate(framework, id).map(|l| l.file))
            .collect();
        let mut test_files: Vec<String> = all_test_files
            .iter()
            .filter(|f| !failing_files.contains(*f))
            .cloned()
            .collect();
        let mut script = script;
        if test_files.len() != all_test_files.len() {
            script = framework.test_script(repo, &test_files);
        }
        let passing: Vec<String> = run
            .claimed
            .iter()
            .filter(|(id, v)| {
                *v == "passed"
                    && weaken::locate(framework, id)
                        .is_none_or(|l| !failing_files.contains(&l.file))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if passing.is_empty() {
            return Err(InjectError::NothingPasses {
                exit: run.script_exit,
                parsed: run.claimed.len(),
                log_tail: run.log_tail.clone(),
            });
        }
        if framework == Framework::Cargo {
            // With cargo the whole crate is one run; keep every test file as oracle.
            test_files = all_test_files.clone();
        }
        let test_contents: BTreeMap<String, String> = test_files
            .iter()
            .map(|f| {
                std::fs::read_to_string(repo.join(f))
                    .map(|t| (f.clone(), t))
                    .map_err(|source| InjectError::Io {
                        path: f.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Oracle {
            framework,
            script,
            parser,
            test_files,
            test_contents,
            passing,
        })
    }
}

/// Step 3: every candidate of the strategy, in the order they are tried (seeded by
/// `cfg.seed`).
fn candidates(
    repo: &Path,
    framework: Framework,
    cfg: &InjectConfig,
) -> Result<Vec<Candidate>, InjectError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    Ok(match cfg.strategy {
        Strategy::History => history_candidates(repo, framework, &mut rng)?,
        Strategy::Removal => removal_candidates(repo, framework, &mut rng),
    })
}

/// Every code hunk of every past commit reverted (whole, then one hunk at a time),
/// fix and bug commits first, each group shuffled.
fn history_candidates(
    repo: &Path,
    framework: Framework,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Vec<Candidate>, InjectError> {
    let mut fixes = Vec::new();
    let mut others = Vec::new();
    for c in history::commits(repo)? {
        let short = &c.id[..c.id.len().min(10)];
        for (k, d) in history::revert_diffs(repo, framework, &c)?
            .into_iter()
            .enumerate()
        {
            let what = if k == 0 {
                "revert".to_string()
            } else {
                format!("partial revert #{k} of")
            };
            let cand = Candidate {
                description: format!("{what} {short} \"{}\"", c.subject),
                bug: CandidateBug::Diff(d),
            };
            if c.is_fix() {
                fixes.push(cand)
            } else {
                others.push(cand)
            }
        }
    }
    fixes.shuffle(rng);
    others.shuffle(rng);
    fixes.extend(others);
    Ok(fixes)
}

/// Every function of the repository's code files with its body stubbed, shuffled.
fn removal_candidates(
    repo: &Path,
    framework: Framework,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for f in scripts::repo_files(repo)
        .into_iter()
        .filter(|f| framework.is_code_file(f))
    {
        let Ok(text) = std::fs::read_to_string(repo.join(&f)) else {
            continue;
        };
        for site in removal::sites(framework, &f, &text) {
            out.push(Candidate {
                description: format!("stub {}::{}", site.file, site.function),
                bug: CandidateBug::Change((site.file, Some(site.stubbed))),
            });
        }
    }
    out.shuffle(rng);
    out
}

/// Step 4: tries the candidates in order until `cfg.count` are valid, reporting each.
/// Returns what happened to each candidate tried, and the valid bugs.
fn try_candidates(
    sandbox: &dyn Sandbox,
    base: &WorkspaceBase,
    oracle: &Oracle,
    candidates: Vec<Candidate>,
    cfg: &InjectConfig,
    on_event: &mut dyn FnMut(InjectEvent),
) -> (Vec<CandidateResult>, Vec<InjectedBug>) {
    let verifier = Verifier::new(sandbox, cfg.verify.clone());
    let mut tried = Vec::new();
    let mut bugs: Vec<InjectedBug> = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, cand) in candidates.into_iter().enumerate() {
        if bugs.len() >= cfg.count {
            break;
        }
        let result = match try_candidate(sandbox, &verifier, base, oracle, &cand, &mut seen) {
            Ok((artifact, report)) => {
                let id = format!(
                    "{}-{}",
                    cfg.strategy.name(),
                    short_hash(&artifact.bug_inject)
                );
                let reason = report.summary();
                bugs.push(InjectedBug {
                    id,
                    strategy: cfg.strategy,
                    seed: cfg.seed,
                    candidate: cand.description.clone(),
                    artifact,
                    report,
                });
                CandidateResult {
                    candidate: cand.description,
                    valid: true,
                    reason,
                }
            }
            Err(reason) => CandidateResult {
                candidate: cand.description,
                valid: false,
                reason,
            },
        };
        on_event(InjectEvent::Tried {
            index,
            result: result.clone(),
            valid_so_far: bugs.len(),
        });
        tried.push(result);
    }
    (tried, bugs)
}

/// One candidate: applied in a fresh workspace and run; the broken tests deleted from
/// the oracle files (the weakening); the artifact verified. `Err` says why it is no
/// bug.
fn try_candidate(
    sandbox: &dyn Sandbox,
    verifier: &Verifier<'_>,
    base: &WorkspaceBase,
    oracle: &Oracle,
    cand: &Candidate,
    seen: &mut BTreeSet<String>,
) -> Result<(Artifact, VerificationReport), String> {
    let cfg = verifier.config();
    let repo = base.original();
    let bug = match &cand.bug {
        CandidateBug::Diff(d) => d.clone(),
        CandidateBug::Change(ch) => patch_ops::diff_of_changes(repo, std::slice::from_ref(ch))
            .map_err(|e| format!("writing the diff: {e}"))?,
    };
    if !seen.insert(short_hash(&bug)) {
        return Err("same diff as an earlier candidate".into());
    }
    let ws = base.fresh().map_err(|e| e.to_string())?;
    ws.apply("the candidate", &bug)
        .map_err(|e| format!("does not apply to the current code: {e}"))?;
    let run = run_tests(
        sandbox,
        cfg,
        ws.path(),
        Harness {
            test_script: &oracle.script,
            test_parser: &oracle.parser,
        },
    )
    .map_err(|e| format!("test run failed: {e}"))?;
    drop(ws);
    let passing = &oracle.passing;
    let broken: Vec<String> = passing
        .iter()
        .filter(|id| !run.passed(id))
        .cloned()
        .collect();
    if broken.is_empty() {
        return Err("breaks no test".into());
    }
    if broken.len() == passing.len() {
        return Err("breaks every test (build or import error)".into());
    }
    let (changed, _missing) =
        weaken::delete_tests(oracle.framework, &oracle.test_contents, &broken);
    if changed.is_empty() {
        return Err(format!(
            "none of the {} broken tests could be located in the oracle files",
            broken.len()
        ));
    }
    let changes: Vec<FileChange> = changed.into_iter().map(|(f, t)| (f, Some(t))).collect();
    let weak = patch_ops::diff_of_changes(repo, &changes)
        .map_err(|e| format!("writing the weakening: {e}"))?;
    let artifact = Artifact {
        test_script: oracle.script.clone(),
        test_files: oracle.test_files.clone(),
        test_parser: oracle.parser.clone(),
        bug_inject: bug,
        test_weaken: weak,
    };
    let report = verifier.verify(repo, &artifact);
    if report.valid {
        Ok((artifact, report))
    } else {
        Err(report.summary())
    }
}
