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
//! Does not own: deciding what a run means for a check (that is `verify` and
//! `evaluate`), or how the sandbox isolates (`ssr-sandbox`).

use crate::config::VerifyConfig;
use crate::trusted::{self, TrustedParse};
use serde::{Deserialize, Serialize};
use ssr_sandbox::{Command, ExecSpec, Mount, Sandbox};
use std::collections::BTreeMap;
use std::path::Path;

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

/// Runs the harness over `workspace` (already in the state to test).
pub fn run_tests(
    sandbox: &dyn Sandbox,
    cfg: &VerifyConfig,
    workspace: &Path,
    harness: Harness<'_>,
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

    let mount = Mount {
        host: io_path.to_path_buf(),
        guest: io_path.to_path_buf(),
        read_only: true,
    };
    let mut mounts = cfg.run_env.mounts.clone();
    mounts.push(mount);
    let spec = |script: String, limits| {
        let mut s = ExecSpec::new(Command::Script(script), workspace);
        s.mounts = mounts.clone();
        s.env = cfg.run_env.env.clone();
        s.limits = limits;
        s
    };

    let script = spec(
        format!("bash {}/test_script.sh 2>&1", io_path.display()),
        cfg.script_limits(),
    );
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
    let claimed = parse_claims(&pout.stdout, pout.truncated)?;
    let trusted = if cfg.trusted_parsers {
        trusted::parse_log(&log)
    } else {
        None
    };
    Ok(TestRun {
        claimed,
        trusted,
        script_exit: out.exit_code,
        script_ms,
        parser_ms: pout.wall_ms,
        log_truncated,
        log_tail: tail(&log),
    })
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
