//! The `search` tool: a regular expression over the repository's files, respecting
//! `.gitignore` (also outside a git checkout), with include and exclude globs and a cap
//! on the number of matches, answered as `path:line: text`.
//!
//! Read-only: it imports nothing but WASI and the policy grants it the repository
//! read-only for every role. Hidden files and binary files (a NUL byte in the first
//! 8 KiB) are skipped.

use ignore::WalkBuilder;
use ignore::overrides::OverrideBuilder;
use regex::RegexBuilder;
use serde::Deserialize;
use ssr_guest::{GuestError, repo_path};
use std::fmt::Write as _;

wit_bindgen::generate!({ world: "read-tool", path: "../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::types::{Description, ToolError};

/// Default and hard cap of matches returned.
const DEFAULT_MAX_RESULTS: usize = 100;
const HARD_MAX_RESULTS: usize = 1000;
/// A matched line is cut to this many bytes.
const MAX_LINE_BYTES: usize = 240;
/// Files larger than this are skipped (generated data, not code).
const MAX_FILE_BYTES: u64 = 4 << 20;

struct Search;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    max_results: Option<usize>,
    #[serde(default)]
    case_insensitive: bool,
}

impl From<GuestError> for ToolError {
    fn from(e: GuestError) -> Self {
        match e {
            GuestError::InvalidArguments(m) => ToolError::InvalidArguments(m),
            GuestError::NotFound(m) => ToolError::NotFound(m),
            GuestError::PermissionDenied(m) => ToolError::PermissionDenied(m),
            GuestError::Conflict(m) => ToolError::Conflict(m),
            GuestError::Failed(m) => ToolError::Failed(m),
        }
    }
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "pattern": {"type": "string", "description": "Regular expression (Rust regex syntax) matched against each line"},
    "path": {"type": "string", "description": "Directory or file to search, relative to the repository root (default: the whole repository)"},
    "include": {"type": "array", "items": {"type": "string"}, "description": "Only files matching one of these globs, e.g. [\"*.py\"]"},
    "exclude": {"type": "array", "items": {"type": "string"}, "description": "Skip files matching these globs, e.g. [\"tests/**\"]"},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Cap on matching lines returned (default 100)"},
    "case_insensitive": {"type": "boolean"}
  },
  "required": ["pattern"],
  "additionalProperties": false
}"#;

impl Guest for Search {
    fn describe() -> Description {
        Description {
            name: "search".into(),
            description: "Search the repository's files for a regular expression and list the \
                matching lines as `path:line: text`. Files ignored by .gitignore, hidden files and \
                binary files are skipped. Narrow the search with `path`, `include` and `exclude` \
                globs; at most `max_results` lines are returned (default 100), with a note when \
                more matched."
                .into(),
            parameters_schema: SCHEMA.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: Arguments = ssr_guest::parse_arguments(&arguments)?;
        Ok(search(args)?)
    }
}

export!(Search);

fn search(args: Arguments) -> Result<String, GuestError> {
    let regex = RegexBuilder::new(&args.pattern)
        .case_insensitive(args.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| GuestError::InvalidArguments(format!("bad `pattern`: {e}")))?;
    let root = repo_path(args.path.as_deref().unwrap_or("."))?;
    std::fs::metadata(&root).map_err(|e| GuestError::io(&root, &e))?;
    let max = args
        .max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, HARD_MAX_RESULTS);

    let mut overrides = OverrideBuilder::new(&root);
    for glob in &args.include {
        overrides
            .add(glob)
            .map_err(|e| GuestError::InvalidArguments(format!("bad include glob `{glob}`: {e}")))?;
    }
    for glob in &args.exclude {
        overrides
            .add(&format!("!{glob}"))
            .map_err(|e| GuestError::InvalidArguments(format!("bad exclude glob `{glob}`: {e}")))?;
    }
    let overrides = overrides
        .build()
        .map_err(|e| GuestError::InvalidArguments(format!("bad globs: {e}")))?;

    let walker = WalkBuilder::new(&root)
        .require_git(false)
        .follow_links(false)
        .overrides(overrides)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();

    let mut out = String::new();
    let mut shown = 0usize;
    let mut total = 0usize;
    let mut files_with_matches = 0usize;
    for entry in walker {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        if entry
            .metadata()
            .map(|m| m.len() > MAX_FILE_BYTES)
            .unwrap_or(true)
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if bytes[..bytes.len().min(8192)].contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let display = entry.path().to_string_lossy();
        let display = display.strip_prefix("./").unwrap_or(&display);
        let mut matched_here = false;
        for (i, line) in text.lines().enumerate() {
            if !regex.is_match(line) {
                continue;
            }
            matched_here = true;
            total += 1;
            if shown < max {
                shown += 1;
                let line = cut(line.trim_end(), MAX_LINE_BYTES);
                let _ = writeln!(out, "{display}:{}: {line}", i + 1);
            }
        }
        if matched_here {
            files_with_matches += 1;
        }
    }
    if total == 0 {
        return Ok(format!("No matches for `{}` under {root}.", args.pattern));
    }
    if total > shown {
        let _ = writeln!(
            out,
            "[{shown} of {total} matching lines shown, in {files_with_matches} files; narrow the search or raise max_results]"
        );
    }
    Ok(out)
}

fn cut(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}
