//! The `bash` tool: a shim that forwards a command to the episode's sandbox through the
//! host's `exec` import and formats what came back for the model.
//!
//! The guest owns the presentation: exit status, stderr after stdout, the timeout
//! note, and output truncation with a visible marker (tool config `max_output_bytes`,
//! default 32 KiB as in SSR_SPEC.md section 9). The host owns the rules: the role's
//! command policy (deny patterns), the sandbox and its limits, and the timeout ceiling.

use serde::Deserialize;
use ssr_guest::{GuestError, config_u64, truncate_middle};

wit_bindgen::generate!({ world: "shell-tool", path: "../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::exec;
use ssr::tool::types::{Description, ToolError};

/// Output shown to the model when the policy sets no `max_output_bytes`.
const DEFAULT_MAX_OUTPUT: u64 = 32 << 10;
/// Timeout when neither the call nor the policy config gives one (the host caps it).
const DEFAULT_TIMEOUT_SECS: u64 = 120;

struct Bash;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "command": {"type": "string", "description": "A bash command line, run in /repo"},
    "timeout_secs": {"type": "integer", "minimum": 1, "description": "Seconds before the command is killed (default 120, capped by the operator's policy)"}
  },
  "required": ["command"],
  "additionalProperties": false
}"#;

impl Guest for Bash {
    fn describe() -> Description {
        Description {
            name: "bash".into(),
            description: "Run a bash command in the repository's sandbox (working directory \
                /repo, no network) and see its exit code, stdout and stderr. Long output is cut in \
                the middle with a marker; a command that runs past its timeout is killed and its \
                partial output shown. Some commands are refused by the operator's policy."
                .into(),
            parameters_schema: SCHEMA.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: Arguments = ssr_guest::parse_arguments(&arguments).map_err(to_tool_error)?;
        if args.command.trim().is_empty() {
            return Err(ToolError::InvalidArguments("`command` is empty".into()));
        }
        let config = ssr_guest::config();
        let max_output = config_u64(&config, "max_output_bytes", DEFAULT_MAX_OUTPUT) as usize;
        let timeout_secs = args
            .timeout_secs
            .unwrap_or_else(|| config_u64(&config, "timeout_secs", DEFAULT_TIMEOUT_SECS))
            .max(1);
        let timeout_ms = u32::try_from(timeout_secs.saturating_mul(1000)).unwrap_or(u32::MAX);
        let result = exec::run(&args.command, timeout_ms)?;
        Ok(present(&result, timeout_secs, max_output))
    }
}

export!(Bash);

fn to_tool_error(e: GuestError) -> ToolError {
    match e {
        GuestError::InvalidArguments(m) => ToolError::InvalidArguments(m),
        GuestError::NotFound(m) => ToolError::NotFound(m),
        GuestError::PermissionDenied(m) => ToolError::PermissionDenied(m),
        GuestError::Conflict(m) => ToolError::Conflict(m),
        GuestError::Failed(m) => ToolError::Failed(m),
    }
}

fn present(result: &exec::ExecResult, timeout_secs: u64, max_output: usize) -> String {
    let mut text = result.stdout.clone();
    if !result.stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("[stderr]\n");
        text.push_str(&result.stderr);
    }
    let mut out = truncate_middle(&text, max_output);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if result.truncated {
        out.push_str("[output beyond the sandbox's limit was dropped]\n");
    }
    if result.timed_out {
        out.push_str(&format!("[killed: timed out after {timeout_secs} s]\n"));
    }
    match result.exit_code {
        Some(code) => out.push_str(&format!("[exit code: {code}]")),
        None if result.timed_out => out.push_str("[exit code: none]"),
        None => out.push_str("[exit code: none, killed by a signal or a limit]"),
    }
    out
}
