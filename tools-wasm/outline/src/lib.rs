//! The `outline` tool, the example custom tool: lists the functions, classes, structs,
//! enums, traits, impls and modules of a Python or Rust file with their line numbers,
//! indented by nesting, so the agent can find its way in a long file before viewing it.
//!
//! It is deliberately small and line-based (no parser): a newcomer's template for a
//! read-only tool. It is loaded like any custom tool, from `outline/tool.toml`.

use regex::Regex;
use serde::Deserialize;
use ssr_guest::{GuestError, repo_path};
use std::fmt::Write as _;

wit_bindgen::generate!({ world: "read-tool", path: "../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::types::{Description, ToolError};

struct Outline;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    path: String,
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "A .py or .rs file, relative to the repository root or under /repo/"}
  },
  "required": ["path"],
  "additionalProperties": false
}"#;

impl Guest for Outline {
    fn describe() -> Description {
        Description {
            name: "outline".into(),
            description: "List the definitions in a Python (.py) or Rust (.rs) file: classes, \
                functions and methods, or modules, structs, enums, traits, impls and functions, \
                each with its line number and indented by nesting. Use it to find your way in a \
                long file, then view the lines you need with the editor."
                .into(),
            parameters_schema: SCHEMA.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: Arguments = ssr_guest::parse_arguments(&arguments).map_err(to_tool_error)?;
        let path = repo_path(&args.path).map_err(to_tool_error)?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| to_tool_error(GuestError::io(&path, &e)))?;
        let pattern = if path.ends_with(".py") {
            r"^(?P<indent>\s*)(?P<kind>(?:async\s+)?def|class)\s+(?P<name>\w+)"
        } else if path.ends_with(".rs") {
            r#"^(?P<indent>\s*)(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern\s+"C")\s+)*(?P<kind>fn|struct|enum|trait|impl|mod|type)\b\s*(?P<name>[^\s{(;:=]*)"#
        } else {
            return Err(ToolError::InvalidArguments(format!(
                "{path}: outline knows .py and .rs files only"
            )));
        };
        let re = Regex::new(pattern).map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(c) = re.captures(line) {
                let depth = c["indent"]
                    .chars()
                    .map(|ch| if ch == '\t' { 4 } else { 1 })
                    .sum::<usize>()
                    / 4;
                let kind = c["kind"].split_whitespace().collect::<Vec<_>>().join(" ");
                let _ = writeln!(
                    out,
                    "{:>6}  {}{kind} {}",
                    i + 1,
                    "  ".repeat(depth),
                    &c["name"]
                );
            }
        }
        if out.is_empty() {
            out = format!("{path}: no definitions found");
        }
        Ok(out)
    }
}

export!(Outline);

fn to_tool_error(e: GuestError) -> ToolError {
    match e {
        GuestError::InvalidArguments(m) => ToolError::InvalidArguments(m),
        GuestError::NotFound(m) => ToolError::NotFound(m),
        GuestError::PermissionDenied(m) => ToolError::PermissionDenied(m),
        GuestError::Conflict(m) => ToolError::Conflict(m),
        GuestError::Failed(m) => ToolError::Failed(m),
    }
}
