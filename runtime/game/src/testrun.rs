//! One test run: `bash test_script.sh 2>&1` in a sandbox over a workspace, then the
//! injector's `test_parser.py` on the log (a second sandboxed exec), the JSON read
//! back, and the same log parsed by the trusted parsers.
//!
//! The script and parser are copied into a private directory that is mounted
//! read-only (at the same path inside the sandbox as on the host), never into the
//! workspace: code under test must not be able to rewrite the parser that judges it.
//! The log is captured by the runtime and handed to the parser as a file, so the
//! script cannot choose what the parser reads either.
//!
//! Defences against code under test that forges its own result (`SSR_SPEC.md`
//! section 11), all through the `Sandbox` trait's mounts and environment, so they
//! hold on any backend:
//! - the protected files present in the workspace (oracle tests, test
//!   infrastructure) are mounted read-only for the script's run, and hashed before
//!   and after it: a protected file changed, removed or created during the run marks
//!   the run tampered ([`TestRun::tampered`]);
//! - the trusted reporter (`reporter`): a per-run secret, a pytest plugin loaded
//!   first (`PYTEST_ADDOPTS=-p`) and a unittest hook (`sitecustomize`), both from the
//!   read-only run directory put first on `PYTHONPATH`, their events written to
//!   named pipes in a second directory outside the workspace, drained by the host as
//!   the run goes (`reporter::channel`: nothing written can be rewritten at exit);
//!   canaries are removed from the parser's
//!   claims and the trusted parse, the reporter's statuses are merged into the
//!   trusted parse (a test passes only when both the log and the reporter say so),
//!   and a pytest or unittest log without any reporter event is incomplete (the
//!   script bypassed the reporter);
//! - for cargo, the reporter's canary module appended to the oracle test binaries'
//!   files for the run (restored after it, hashed as part of the oracle during it),
//!   its events in the same channel directory, judged with the log
//!   (`reporter::cargo`); canaries are removed from the claims and the trusted parse;
//!   an oracle binary that cannot hold them is noted ([`TestRun::notes`]) and its
//!   run is incomplete unless scan findings reject (`unguarded_cargo`).
//!
//! Does not own: deciding what a run means for a check (that is `verify` and
//! `evaluate`), or how the sandbox isolates (`ssr-sandbox`).

use crate::config::VerifyConfig;
use crate::protected::ProtectedSet;
use crate::reporter::{
    CARGO_EVENTS_FILE, CARGO_EVENTS_GUEST, CHANNEL_GUEST, CargoPlacement, Channel, REPORT_FILE,
    Reporter, ReporterReading, cargo_test_roots,
};
use crate::trusted::{self, LogFormat, TrustedParse, TrustedStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssr_sandbox::{Command, ExecSpec, Mount, Sandbox};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest parser output read as JSON.
const MAX_PARSER_JSON: usize = 8 << 20;
/// Characters of log or stderr kept in a failure message.
const TAIL_CHARS: usize = 600;

/// What one run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestRun {
    /// The parser's JSON: test id → the value it gave (only `passed` counts as passed).
    pub claimed: BTreeMap<String, String>,
    /// The trusted parsers' reading of the log, when the format was recognised.
    pub trusted: Option<TrustedParse>,
    pub script_exit: Option<i32>,
    pub script_ms: u64,
    pub parser_ms: u64,
    /// Some of the log was dropped (output limit).
    pub log_truncated: bool,
    /// The last characters of the log, for messages that must say why a run went
    /// wrong (a missing environment variable, an import error).
    #[serde(default)]
    pub log_tail: String,
    /// The trusted reporter's reading (`None`: no pytest session loaded it).
    #[serde(default)]
    pub reporter: Option<ReporterReading>,
    /// Signs that code under test forged the result: a canary with the wrong outcome
    /// or none, a report contradicting the test's own call, a protected file written
    /// during the run. Empty for an honest run.
    #[serde(default)]
    pub tampered: Vec<String>,
    /// Facts about the run's defences that are not signs of tampering: a defence
    /// that could not be put in place (a plain-file channel, a cargo test target
    /// with no canaries). Evaluation and verification report them.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl TestRun {
    /// Ids the parser reported as `passed`.
    pub fn passed(&self, id: &str) -> bool {
        self.claimed.get(id).is_some_and(|v| v == "passed")
    }

    /// Ids both the parser and the trusted reading of the log (when the format was
    /// recognised) let pass: an incomplete run, or a failing status for the test
    /// anywhere in the log, makes it not passed whatever the parser says.
    pub fn passed_trusted(&self, id: &str) -> bool {
        self.passed(id) && self.trusted.as_ref().is_none_or(|t| t.allows_pass(id))
    }
}

/// Why a run produced no usable result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunFailure {
    #[error("the test script did not finish within {limit_secs} s; log tail: {log_tail}")]
    ScriptTimedOut { limit_secs: f64, log_tail: String },
    #[error("the parser did not finish within {limit_secs} s")]
    ParserTimedOut { limit_secs: f64 },
    #[error("the parser exited with {exit:?}; stderr tail: {stderr_tail}")]
    ParserExit {
        exit: Option<i32>,
        stderr_tail: String,
    },
    #[error("the parser's output is not a JSON object of strings: {reason}; output head: {head}")]
    ParserOutput { reason: String, head: String },
    #[error("the sandbox could not run the command: {0}")]
    Sandbox(String),
    #[error("preparing the run: {0}")]
    Setup(String),
}

fn tail(s: &str) -> String {
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(TAIL_CHARS)).collect()
}

fn head(s: &str) -> String {
    s.chars().take(TAIL_CHARS).collect()
}

/// The test script and parser a run uses.
#[derive(Clone, Copy, Debug)]
pub struct Harness<'a> {
    pub test_script: &'a str,
    pub test_parser: &'a str,
}

/// Runs the harness over `workspace` (already in the state to test), with no
/// protected files (the procedural injectors' exploratory runs). The trusted
/// reporter and its canaries are in every run.
pub fn run_tests(
    sandbox: &dyn Sandbox,
    cfg: &VerifyConfig,
    workspace: &Path,
    harness: Harness<'_>,
) -> Result<TestRun, RunFailure> {
    run_tests_protected(sandbox, cfg, workspace, harness, None)
}

/// [`run_tests`] with the files of `protected` that exist in the workspace mounted
/// read-only for the script, and checked unchanged after it: every verification and
/// evaluation run goes through here.
pub fn run_tests_protected(
    sandbox: &dyn Sandbox,
    cfg: &VerifyConfig,
    workspace: &Path,
    harness: Harness<'_>,
    protected: Option<&ProtectedSet>,
) -> Result<TestRun, RunFailure> {
    let io = cfg
        .temp_dir("ssr-io-")
        .map_err(|e| RunFailure::Setup(e.to_string()))?;
    let io_path = io.path();
    let write = |name: &str, text: &str| {
        std::fs::write(io_path.join(name), text).map_err(|e| RunFailure::Setup(e.to_string()))
    };
    write("test_script.sh", harness.test_script)?;
    write("test_parser.py", harness.test_parser)?;
    // The reporter's channel: writable, outside the workspace, and not where the
    // log goes. A fresh secret for every run.
    let reporter = cfg.trusted_reporter.then(Reporter::draw);
    // Pipes the host drains as the run goes (`reporter::channel`): what the reporter
    // wrote cannot be rewritten at exit.
    let channel = cfg
        .temp_dir("ssr-ch-")
        .and_then(|d| Channel::open(d, &[REPORT_FILE, CARGO_EVENTS_FILE]))
        .map_err(|e| RunFailure::Setup(e.to_string()))?;
    let report_path = channel.path(REPORT_FILE);
    if let Some(reporter) = &reporter {
        write(
            &format!("{}.py", reporter.module()),
            &reporter.plugin_source(&report_path),
        )?;
        write("sitecustomize.py", &reporter.unittest_source(&report_path))?;
    }
    // A cargo project's private layer over its build cache (`build_cache`).
    let layer = crate::workspace::build_layer(workspace);
    // The cargo canaries: over a build cache that holds them, those compiled into it
    // (its secret, its fixed events path, every test binary root), so that no binary
    // is rebuilt for them; they are placed in every run over it, since its binaries
    // hold them whatever the run. Otherwise the run's own, in the oracle files.
    let cached = layer
        .as_ref()
        .and_then(|l| l.canary_secret.as_deref())
        .and_then(Reporter::from_hex);
    let cargo_reporter = cached.clone().or_else(|| reporter.clone());
    let cargo_events = match cached {
        Some(_) => PathBuf::from(CARGO_EVENTS_GUEST),
        None => channel.path(CARGO_EVENTS_FILE),
    };
    // Judged: the oracle binaries of a protected run with the reporter on
    // (exploratory runs of the procedural injectors have no oracle yet).
    let judged = protected
        .filter(|_| reporter.is_some())
        .map(|p| p.oracle().cloned().collect::<BTreeSet<String>>());
    let placement = place_cargo(
        cargo_reporter.as_ref(),
        judged,
        workspace,
        &cargo_events,
        cached.is_some(),
    )?;
    // Hashed after the canaries are placed: the module is part of the run's oracle.
    let before = protected.map(|p| protected_files(workspace, p));

    let mount = Mount {
        host: io_path.to_path_buf(),
        guest: io_path.to_path_buf(),
        read_only: true,
    };
    let mut mounts = cfg.run_env.mounts.clone();
    mounts.push(mount);
    mounts.extend(layer.as_ref().map(|l| l.mount.clone()));
    let spec = |script: String, limits| {
        let mut s = ExecSpec::new(Command::Script(script), workspace);
        s.mounts = mounts.clone();
        s.env = cfg.run_env.env.clone();
        if layer.is_some() {
            let (var, guest) = (
                crate::build_cache::TARGET_VAR,
                crate::build_cache::TARGET_GUEST,
            );
            s.env.insert(var.into(), guest.into());
        }
        s.limits = limits;
        s
    };

    let mut script = spec(
        format!("bash {}/test_script.sh 2>&1", io_path.display()),
        cfg.script_limits(),
    );
    script.mounts.push(Mount {
        host: channel.dir().to_path_buf(),
        guest: channel.dir().to_path_buf(),
        read_only: channel.read_only_mount(),
    });
    if cached.is_some() {
        script.mounts.push(Mount {
            host: channel.dir().to_path_buf(),
            guest: CHANNEL_GUEST.into(),
            read_only: channel.read_only_mount(),
        });
    }
    if let Some(reporter) = &reporter {
        prepend_env(
            &mut script.env,
            "PYTHONPATH",
            ":",
            &io_path.display().to_string(),
        );
        prepend_env(
            &mut script.env,
            "PYTEST_ADDOPTS",
            " ",
            &format!("-p {}", reporter.module()),
        );
        let user_base = user_site_hook(io_path, reporter.module())?;
        script
            .env
            .insert("PYTHONUSERBASE".into(), user_base.display().to_string());
    }
    if let Some(files) = &before {
        script.read_only_paths = files.keys().map(PathBuf::from).collect();
    }
    let out = sandbox
        .exec(&script)
        .map_err(|e| RunFailure::Sandbox(e.to_string()))?;
    let mut log = out.stdout;
    if !out.stderr.is_empty() {
        log.push_str(&out.stderr);
    }
    if out.timed_out {
        return Err(RunFailure::ScriptTimedOut {
            limit_secs: cfg.hard_timeout_secs,
            log_tail: tail(&log),
        });
    }
    let script_ms = out.wall_ms;
    let log_truncated = out.truncated;
    let mut tampered = Vec::new();
    if let (Some(before), Some(p)) = (&before, protected) {
        tampered.extend(protected_changes(before, &protected_files(workspace, p)));
    }
    let placed_any = placement.as_ref().is_some_and(|p| p.placed_any());
    let targets = placement
        .as_ref()
        .map(|p| p.targets.clone())
        .filter(|t| !t.is_empty());
    let unguarded = placement
        .as_ref()
        .map(|p| p.unguarded.clone())
        .unwrap_or_default();
    drop(placement);
    let channel = channel.finish();
    tampered.extend(channel.tampered.iter().cloned());
    let mut notes = channel.notes.clone();
    let reading = reporter
        .as_ref()
        .and_then(|r| r.read(&channel.text(REPORT_FILE)));
    let cargo_reading = match (&cargo_reporter, targets) {
        (Some(r), Some(t)) => {
            let parsed = trusted::parse_log(&log)
                .map(|t| t.results)
                .unwrap_or_default();
            r.read_cargo(&t, &channel.text(CARGO_EVENTS_FILE), &log, &parsed)
        }
        _ => None,
    };
    write("test.log", &log)?;

    let parser = spec(
        format!(
            "python3 {0}/test_parser.py < {0}/test.log",
            io_path.display()
        ),
        cfg.parser_limits(),
    );
    let pout = sandbox
        .exec(&parser)
        .map_err(|e| RunFailure::Sandbox(e.to_string()))?;
    if pout.timed_out {
        return Err(RunFailure::ParserTimedOut {
            limit_secs: cfg.parser_timeout_secs,
        });
    }
    if pout.exit_code != Some(0) {
        return Err(RunFailure::ParserExit {
            exit: pout.exit_code,
            stderr_tail: tail(&pout.stderr),
        });
    }
    let mut claimed = parse_claims(&pout.stdout, pout.truncated)?;
    let mut trusted = if cfg.trusted_parsers {
        trusted::parse_log(&log)
    } else {
        None
    };
    if let Some(r) = &reading {
        claimed.retain(|id, _| !r.is_canary(id));
        tampered.extend(r.tampered.iter().cloned());
    }
    if cfg.trusted_parsers && cfg.trusted_reporter {
        trusted = merge_reporter(trusted, reading.as_ref());
    }
    if let Some(r) = &cargo_reading {
        claimed.retain(|id, _| !r.is_canary(id));
        tampered.extend(r.tampered.iter().cloned());
        trusted = trusted.map(|t| merge_cargo(t, r));
    } else if placed_any && let Some(r) = &cargo_reporter {
        // Canaries ran (a build cache's) but nothing was judged: they are still no
        // test of the repository.
        claimed.retain(|id, _| !r.is_cargo_canary(id));
        if let Some(t) = &mut trusted {
            t.results.retain(|id, _| !r.is_cargo_canary(id));
        }
    }
    trusted = unguarded_cargo(
        trusted,
        &unguarded,
        cfg.reject_tampering_findings,
        &mut notes,
    );
    Ok(TestRun {
        claimed,
        trusted,
        script_exit: out.exit_code,
        script_ms,
        parser_ms: pout.wall_ms,
        log_truncated,
        log_tail: tail(&log),
        reporter: reading.or(cargo_reading),
        tampered,
        notes,
    })
}

/// The reporter's hooks again, through Python's user site (`PYTHONUSERBASE`): a test
/// script that sets `PYTHONPATH=src` or its own `PYTEST_ADDOPTS` (common, and
/// legitimate) replaces the entries put first above, but the user site's `.pth` files
/// are read at interpreter start whatever those say. The `.pth` line puts the run
/// directory first on `sys.path` (so its `sitecustomize` is the one imported, right
/// after) and makes sure `PYTEST_ADDOPTS` loads the plugin. One `site-packages` per
/// Python 3 minor version, since the environment's interpreter (host or image) is not
/// known here. Returns the user base, inside the read-only run directory.
fn user_site_hook(io_path: &Path, module: &str) -> Result<PathBuf, RunFailure> {
    let base = io_path.join("userbase");
    let dir = io_path.display().to_string();
    let line = format!(
        "import os, sys; sys.path.insert(0, {dir:?}); _a = os.environ.get('PYTEST_ADDOPTS', ''); \
         '-p {module}' in _a or os.environ.__setitem__('PYTEST_ADDOPTS', '-p {module} ' + _a)\n"
    );
    for minor in 6..=20 {
        let site = base.join(format!("lib/python3.{minor}/site-packages"));
        std::fs::create_dir_all(&site)
            .and_then(|()| std::fs::write(site.join("ssr_reporter.pth"), &line))
            .map_err(|e| RunFailure::Setup(e.to_string()))?;
    }
    Ok(base)
}

/// The cargo reporter's canaries in the workspace's `judged` oracle binaries; with
/// `every_root` (a build cache compiled them there) also in every other test binary
/// root, unjudged, and in every run, judged or not. `None`: nothing to place.
fn place_cargo(
    reporter: Option<&Reporter>,
    judged: Option<BTreeSet<String>>,
    workspace: &Path,
    events: &Path,
    every_root: bool,
) -> Result<Option<CargoPlacement>, RunFailure> {
    let Some(reporter) = reporter else {
        return Ok(None);
    };
    if judged.is_none() && !every_root {
        return Ok(None);
    }
    let oracle = judged.unwrap_or_default();
    let mut roots = oracle.clone();
    if every_root {
        roots.extend(cargo_test_roots(workspace));
    }
    let roots: Vec<String> = roots.into_iter().collect();
    let setup = |e: std::io::Error| RunFailure::Setup(e.to_string());
    let placement = reporter
        .place_cargo(workspace, &roots, &oracle, events)
        .map_err(setup)?;
    Ok(Some(placement))
}

/// Folds the cargo reporter's reading into a cargo log's trusted parse: canaries
/// out, and the reporter's incompleteness (filtered or crashed canaries) kept.
fn merge_cargo(mut t: TrustedParse, r: &ReporterReading) -> TrustedParse {
    if t.format != LogFormat::CargoTest {
        return t;
    }
    t.results.retain(|id, _| !r.is_canary(id));
    if t.incomplete.is_none() {
        t.incomplete = r.incomplete.clone();
    }
    t
}

/// Notes the oracle test binaries that hold no canaries, and decides what a cargo
/// log's results count for when there are any.
///
/// Why not trusted passes by default: without the canary module nothing in such a
/// binary watches its result, and a fake summary printed before an exit with status
/// 0 is all a forged pass needs (issue 17's cargo attack). The other layers (read-only
/// tests, the protected-file hashes) do not see that. The one that does is the patch
/// scan (exits, panic hooks, raw descriptors, pre-`main` code, fake summaries), and
/// only when its findings reject: so with `reject_tampering_findings` the results
/// count, with the note; without it the run is incomplete and no test of it passes.
fn unguarded_cargo(
    trusted: Option<TrustedParse>,
    unguarded: &[(String, &'static str)],
    scan_rejects: bool,
    notes: &mut Vec<String>,
) -> Option<TrustedParse> {
    if unguarded.is_empty() {
        return trusted;
    }
    let list: Vec<String> = unguarded
        .iter()
        .map(|(file, why)| format!("{file} ({why})"))
        .collect();
    let note = format!(
        "cargo test binaries with no canaries: {}; their results are unguarded by ssr's reporter",
        list.join(", ")
    );
    notes.push(note.clone());
    trusted.map(|mut t| {
        if t.format == LogFormat::CargoTest && !scan_rejects && t.incomplete.is_none() {
            t.incomplete = Some(format!(
                "{note}, so no test passes unless scan findings reject (`--reject-tampering`)"
            ));
        }
        t
    })
}

/// Puts `value` before the variable's current value (the run environment's).
fn prepend_env(env: &mut BTreeMap<String, String>, key: &str, sep: &str, value: &str) {
    let v = match env.get(key) {
        Some(old) if !old.is_empty() => format!("{value}{sep}{old}"),
        _ => value.to_string(),
    };
    env.insert(key.to_string(), v);
}

/// Folds the reporter's reading into the log's trusted parse: canaries out; every
/// reporter status recorded (a conflict with the log fails the test); a test the log
/// passes but the reporter never saw fails; a pytest or unittest log with no reporter
/// event, or
/// a reporter that found the session incomplete, makes the run incomplete. A
/// reporter reading of a log no parser recognised becomes the trusted parse.
fn merge_reporter(
    trusted: Option<TrustedParse>,
    reading: Option<&ReporterReading>,
) -> Option<TrustedParse> {
    let Some(r) = reading else {
        return trusted.map(|mut t| {
            if matches!(t.format, LogFormat::Pytest | LogFormat::Unittest) && t.incomplete.is_none()
            {
                t.incomplete = Some(format!(
                    "the trusted reporter recorded nothing: the script bypassed ssr's {} reporter",
                    t.format.name()
                ));
            }
            t
        });
    };
    let mut t = match trusted {
        Some(t) if t.format == r.format => t,
        // Another framework's log (a script running two frameworks): the log's
        // reading stands alone.
        Some(t) => return Some(t),
        None => TrustedParse {
            format: r.format,
            results: BTreeMap::new(),
            incomplete: None,
        },
    };
    t.results.retain(|id, _| !r.is_canary(id));
    for (id, st) in t.results.iter_mut() {
        if *st == TrustedStatus::Passed && !r.results.contains_key(id) {
            *st = TrustedStatus::Failed;
        }
    }
    for (id, st) in &r.results {
        trusted::record(&mut t.results, id.clone(), *st);
    }
    if t.incomplete.is_none() {
        t.incomplete = r.incomplete.clone();
    }
    Some(t)
}

/// Every file of `protected` in the workspace (`.git` skipped, links not followed)
/// with a hash of its content (a link's target for a link).
fn protected_files(root: &Path, protected: &ProtectedSet) -> BTreeMap<String, [u8; 32]> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            let child = rel.join(&name);
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(child);
                continue;
            }
            let Some(key) = child.to_str() else { continue };
            if !protected.contains(key) {
                continue;
            }
            let bytes = if ft.is_symlink() {
                std::fs::read_link(e.path())
                    .map(|t| t.as_os_str().as_encoded_bytes().to_vec())
                    .unwrap_or_default()
            } else {
                std::fs::read(e.path()).unwrap_or_default()
            };
            out.insert(key.to_string(), Sha256::digest(&bytes).into());
        }
    }
    out
}

/// Protected files written, removed or created between two listings.
fn protected_changes(
    before: &BTreeMap<String, [u8; 32]>,
    after: &BTreeMap<String, [u8; 32]>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, h) in before {
        match after.get(p) {
            None => out.push(format!("the protected file {p} was removed during the run")),
            Some(h2) if h2 != h => out.push(format!(
                "the protected file {p} was rewritten during the run"
            )),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("the protected file {p} was created during the run"));
    }
    out
}

/// Reads the parser's stdout: one JSON object whose values are strings. Values other
/// than `passed`/`failed` are kept (they count as not passed; check 2 rejects them).
pub fn parse_claims(stdout: &str, truncated: bool) -> Result<BTreeMap<String, String>, RunFailure> {
    let bad = |reason: &str| RunFailure::ParserOutput {
        reason: reason.to_string(),
        head: head(stdout),
    };
    if truncated || stdout.len() > MAX_PARSER_JSON {
        return Err(bad("output too large"));
    }
    let value: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| bad(&format!("invalid JSON ({e})")))?;
    let obj = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let s = v
            .as_str()
            .ok_or_else(|| bad(&format!("value of `{k}` is not a string")))?;
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_must_be_an_object_of_strings() {
        assert!(parse_claims("{\"a\": \"passed\"}", false).is_ok());
        assert!(matches!(
            parse_claims("garbage", false),
            Err(RunFailure::ParserOutput { .. })
        ));
        assert!(matches!(
            parse_claims("[1]", false),
            Err(RunFailure::ParserOutput { .. })
        ));
        assert!(matches!(
            parse_claims("{\"a\": 1}", false),
            Err(RunFailure::ParserOutput { .. })
        ));
        assert!(parse_claims("{}", true).is_err());
    }
}
