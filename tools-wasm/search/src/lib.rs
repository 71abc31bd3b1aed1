//! The `search` tool: a regular expression over the repository's files, respecting
//! `.gitignore` (also outside a git checkout), with include and exclude globs and a cap
//! on the number of matches, answered as `path:line: text`.
//!
//! Read-only: it imports nothing but WASI and the policy grants it the repository
//! read-only for every role. Hidden files and binary files (a NUL byte in the first
//! 8 KiB) are skipped.

mod walk;

use ignore::overrides::OverrideBuilder;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use ssr_guest::{GuestError, repo_path};
use std::fmt::Write as _;
use walk::Walk;

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

    let prefilter = Prefilter::new(&args.pattern, args.case_insensitive);
    let mut out = String::new();
    let mut shown = 0usize;
    let mut total = 0usize;
    let mut files_with_matches = 0usize;
    let mut walk = Walk::new(&overrides, MAX_FILE_BYTES);
    walk.run(&root, &mut |file| {
        let bytes = file.bytes;
        if bytes[..bytes.len().min(8192)].contains(&0) {
            return;
        }
        let text = ssr_guest::text_lossy(bytes);
        let mut matched_here = false;
        for_each_matching_line(&text, &regex, prefilter.as_ref(), &mut |number, line| {
            matched_here = true;
            total += 1;
            if shown < max {
                shown += 1;
                let line = cut(line.trim_end(), MAX_LINE_BYTES);
                let _ = writeln!(out, "{}:{number}: {line}", file.path);
            }
        });
        if matched_here {
            files_with_matches += 1;
        }
    })?;
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

/// The same pattern over a whole file at once, with `^` and `$` at line boundaries: a
/// match of it shows where the next matching line can be, so the per-line regex runs
/// only on candidate lines instead of on every line. `None` when the pattern uses
/// something whose meaning differs between a line and a whole file (`\A`, `\z`,
/// inline flags); those fall back to line by line.
struct Prefilter(Regex);

impl Prefilter {
    fn new(pattern: &str, case_insensitive: bool) -> Option<Prefilter> {
        if pattern.contains("\\A") || pattern.contains("\\z") || pattern.contains("(?") {
            return None;
        }
        RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .multi_line(true)
            .crlf(true)
            .size_limit(1 << 20)
            .build()
            .ok()
            .map(Prefilter)
    }
}

/// Calls `found(line_number, line)` for every line of `text` that `regex` matches, in
/// order. With a prefilter: a whole-file match starting in a line makes that line a
/// candidate, checked with `regex` itself; no line can be skipped, because a line
/// matching `regex` matches the prefilter at the same place, so the leftmost prefilter
/// match after a checked line is never past it.
fn for_each_matching_line(
    text: &str,
    regex: &Regex,
    prefilter: Option<&Prefilter>,
    found: &mut dyn FnMut(usize, &str),
) {
    let Some(Prefilter(whole)) = prefilter else {
        for (i, line) in text.lines().enumerate() {
            if regex.is_match(line) {
                found(i + 1, line);
            }
        }
        return;
    };
    let bytes = text.as_bytes();
    let mut from = 0usize;
    // Line number of the line starting at `counted`.
    let mut counted = 0usize;
    let mut number = 1usize;
    while from <= text.len() {
        let Some(m) = whole.find_at(text, from) else {
            break;
        };
        let start = bytes[..m.start()]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if start == text.len() {
            // After the final newline: not a line (as `str::lines` sees it).
            break;
        }
        let end = bytes[m.start()..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| m.start() + i);
        number += bytes[counted..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted = start;
        let line = text[start..end]
            .strip_suffix('\r')
            .unwrap_or(&text[start..end]);
        if regex.is_match(line) {
            found(number, line);
        }
        from = end + 1;
    }
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
