//! The `editor` tool: view files with line numbers (directories two levels deep),
//! create files, replace one unique string, insert at a line, and undo the last edit.
//!
//! Reads go through WASI (the repository preopen is read-only); writes go through the
//! host's `workspace` import, which enforces the grant and the protected files. The
//! undo history lives in the per-episode state directory the host grants (`/state`),
//! because every call runs in a fresh instance and keeps nothing in memory.

use serde::Deserialize;
use ssr_guest::{GuestError, repo_path};
use std::fs;
use wasip2::filesystem::types::Descriptor;

wit_bindgen::generate!({ world: "edit-tool", path: "../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::types::{Description, ToolError};
use ssr::tool::workspace;

/// Edits kept per file; older ones are forgotten.
const UNDO_DEPTH: usize = 16;
/// Files larger than this are not loaded for editing (the model cannot use them whole).
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Lines of context shown around an edit.
const SNIPPET_CONTEXT: usize = 4;

struct Editor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    command: String,
    path: String,
    #[serde(default)]
    view_range: Option<Vec<i64>>,
    #[serde(default)]
    file_text: Option<String>,
    #[serde(default)]
    old_str: Option<String>,
    #[serde(default)]
    new_str: Option<String>,
    #[serde(default)]
    insert_line: Option<i64>,
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
    "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
    "path": {"type": "string", "description": "File or directory, relative to the repository root or under /repo/"},
    "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2, "description": "view: [first, last] line, 1-based, last -1 = end of file"},
    "file_text": {"type": "string", "description": "create: the whole content of the new file"},
    "old_str": {"type": "string", "description": "str_replace: text that occurs exactly once in the file"},
    "new_str": {"type": "string", "description": "str_replace: replacement (default empty); insert: text to insert"},
    "insert_line": {"type": "integer", "description": "insert: the line after which to insert (0 = at the top)"}
  },
  "required": ["command", "path"],
  "additionalProperties": false
}"#;

impl Guest for Editor {
    fn describe() -> Description {
        Description {
            name: "editor".into(),
            description: "View, create and edit files in the repository. `view` shows a file with \
                line numbers (optionally only `view_range`) or lists a directory two levels deep; \
                `create` writes a new file and fails if it exists; `str_replace` replaces `old_str`, \
                which must occur exactly once, with `new_str`; `insert` adds `new_str` after line \
                `insert_line`; `undo_edit` reverts the last edit of `path`. Paths are relative to \
                the repository root (or start with /repo/). Protected files (oracle tests, test \
                configuration) cannot be changed."
                .into(),
            parameters_schema: SCHEMA.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: Arguments = ssr_guest::parse_arguments(&arguments)?;
        let path = repo_path(&args.path)?;
        let out = match args.command.as_str() {
            "view" => view(&path, args.view_range.as_deref()),
            "create" => create(&path, required(args.file_text, "file_text", "create")?),
            "str_replace" => str_replace(
                &path,
                required(args.old_str, "old_str", "str_replace")?,
                args.new_str.unwrap_or_default(),
            ),
            "insert" => insert(
                &path,
                required(args.insert_line, "insert_line", "insert")?,
                required(args.new_str, "new_str", "insert")?,
            ),
            "undo_edit" => undo_edit(&path),
            other => Err(GuestError::InvalidArguments(format!(
                "unknown command `{other}`; use view, create, str_replace, insert or undo_edit"
            ))),
        }?;
        Ok(out)
    }
}

export!(Editor);

fn required<T>(value: Option<T>, field: &str, command: &str) -> Result<T, GuestError> {
    value.ok_or_else(|| GuestError::InvalidArguments(format!("`{command}` needs `{field}`")))
}

fn read_text(path: &str) -> Result<String, GuestError> {
    let repo = ssr_guest::repository()?;
    let opened = ssr_guest::open_repo_path(&repo, path)?;
    read_text_at(&opened, path)
}

fn read_text_at(opened: &ssr_guest::OpenedPath, path: &str) -> Result<String, GuestError> {
    ssr_guest::into_text(read_bytes_at(opened, path)?).map_err(|_| not_text(path))
}

fn read_bytes_at(opened: &ssr_guest::OpenedPath, path: &str) -> Result<Vec<u8>, GuestError> {
    let stat = opened.stat;
    if stat.is_dir {
        return Err(GuestError::InvalidArguments(format!(
            "{path} is a directory; only `view` works on directories"
        )));
    }
    if stat.size > MAX_FILE_BYTES {
        return Err(GuestError::Failed(format!(
            "{path} has {} bytes, more than the editor's limit of {MAX_FILE_BYTES}",
            stat.size
        )));
    }
    ssr_guest::read_opened(&opened.descriptor, path, stat.size, MAX_FILE_BYTES)
}

fn not_text(path: &str) -> GuestError {
    GuestError::Failed(format!("{path} is not UTF-8 text (a binary file?)"))
}

fn write_text(path: &str, text: &str) -> Result<(), GuestError> {
    workspace::write_file(path, text.as_bytes()).map_err(from_host)
}

fn from_host(e: ToolError) -> GuestError {
    match e {
        ToolError::InvalidArguments(m) => GuestError::InvalidArguments(m),
        ToolError::NotFound(m) => GuestError::NotFound(m),
        ToolError::PermissionDenied(m) => GuestError::PermissionDenied(m),
        ToolError::Conflict(m) => GuestError::Conflict(m),
        ToolError::Failed(m) => GuestError::Failed(m),
    }
}

fn numbered(text: &str, first_line: usize, last_line: Option<usize>) -> String {
    ssr_guest::number_lines(text, first_line, last_line)
}

fn view(path: &str, range: Option<&[i64]>) -> Result<String, GuestError> {
    let repo = ssr_guest::repository()?;
    let opened = ssr_guest::open_repo_path(&repo, path)?;
    if opened.stat.is_dir {
        drop(opened);
        if range.is_some() {
            return Err(GuestError::InvalidArguments(
                "`view_range` only applies to files".into(),
            ));
        }
        let mut out = format!(
            "Files and directories up to two levels deep in {path}, hidden ones excluded:\n"
        );
        list_dir(path, 0, &mut out)?;
        return Ok(out);
    }
    let Some(range) = range else {
        // The whole file: numbered and checked for UTF-8 in one pass.
        let bytes = read_bytes_at(&opened, path)?;
        return ssr_guest::number_all_lines(bytes).map_err(|_| not_text(path));
    };
    let text = read_text_at(&opened, path)?;
    drop(opened);
    let (first, last) = match range {
        [first, last] => {
            let total = ssr_guest::count_lines(&text);
            let first = *first;
            let last = *last;
            if first < 1 || (first as usize) > total.max(1) {
                return Err(GuestError::InvalidArguments(format!(
                    "view_range start {first} is outside the file's lines 1..={total}"
                )));
            }
            if last != -1 && (last < first || last as usize > total) {
                return Err(GuestError::InvalidArguments(format!(
                    "view_range end {last} must be -1 or within {first}..={total}"
                )));
            }
            (
                first as usize,
                if last == -1 {
                    None
                } else {
                    Some(last as usize)
                },
            )
        }
        _ => {
            return Err(GuestError::InvalidArguments(
                "`view_range` must be [first, last]".into(),
            ));
        }
    };
    Ok(numbered(&text, first, last))
}

fn list_dir(dir: &str, depth: usize, out: &mut String) -> Result<(), GuestError> {
    let mut entries: Vec<(String, bool)> = fs::read_dir(dir)
        .map_err(|e| GuestError::io(dir, &e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            Some((name, is_dir))
        })
        .collect();
    entries.sort();
    for (name, is_dir) in entries {
        let child = if dir == "." {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        out.push_str(&"  ".repeat(depth));
        out.push_str(&child);
        if is_dir {
            out.push('/');
        }
        out.push('\n');
        if is_dir && depth < 1 {
            list_dir(&child, depth + 1, out)?;
        }
    }
    Ok(())
}

fn create(path: &str, text: String) -> Result<String, GuestError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(GuestError::Conflict(format!(
            "{path} already exists; use str_replace or insert to change it"
        )));
    }
    write_text(path, &text)?;
    record_undo(path, None)?;
    Ok(format!("Created {path} ({} lines).", text.lines().count()))
}

fn str_replace(path: &str, old: String, new: String) -> Result<String, GuestError> {
    if old.is_empty() {
        return Err(GuestError::InvalidArguments("`old_str` is empty".into()));
    }
    let text = read_text(path)?;
    let count = text.matches(old.as_str()).count();
    if count != 1 {
        let lines: Vec<usize> = text
            .match_indices(old.as_str())
            .take(10)
            .map(|(at, _)| text[..at].lines().count().max(1))
            .collect();
        let where_ = if lines.is_empty() {
            String::new()
        } else {
            format!(" (at lines {lines:?})")
        };
        return Err(GuestError::Conflict(format!(
            "`old_str` matched {count} times in {path}{where_}; it must match exactly once \
             (include more surrounding lines to make it unique)"
        )));
    }
    let at = text.find(old.as_str()).unwrap_or(0);
    let updated = text.replacen(old.as_str(), &new, 1);
    write_text(path, &updated)?;
    record_undo(path, Some(text.clone()))?;
    let first = text[..at].lines().count().max(1);
    let last = first + new.lines().count();
    Ok(format!(
        "Edited {path}. Lines around the change:\n{}",
        snippet(&updated, first, last)
    ))
}

fn insert(path: &str, line: i64, new: String) -> Result<String, GuestError> {
    let text = read_text(path)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if line < 0 || line as usize > lines.len() {
        return Err(GuestError::InvalidArguments(format!(
            "insert_line {line} is outside 0..={}",
            lines.len()
        )));
    }
    let line = line as usize;
    let mut updated = String::with_capacity(text.len() + new.len() + 1);
    for l in &lines[..line] {
        updated.push_str(l);
    }
    if !updated.is_empty() && !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(&new);
    if !new.ends_with('\n') && line < lines.len() {
        updated.push('\n');
    }
    for l in &lines[line..] {
        updated.push_str(l);
    }
    write_text(path, &updated)?;
    record_undo(path, Some(text))?;
    Ok(format!(
        "Inserted {} lines after line {line} of {path}:\n{}",
        new.lines().count(),
        snippet(&updated, line + 1, line + new.lines().count())
    ))
}

fn snippet(text: &str, first: usize, last: usize) -> String {
    let from = first.saturating_sub(SNIPPET_CONTEXT).max(1);
    numbered(text, from, Some(last + SNIPPET_CONTEXT))
}

/// One file's undo history: the contents before each edit, newest last; `None` means
/// the file did not exist (undoing its creation removes it).
#[derive(serde::Serialize, Deserialize, Default)]
struct History {
    path: String,
    before: Vec<Option<String>>,
}

/// Where `path`'s undo history lives: the state directory (when granted) and the file
/// in it.
fn history_file(path: &str) -> Option<(Descriptor, String)> {
    // FNV-1a: a stable file name for any path, no dependency needed.
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in path.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    let dir = ssr_guest::preopen(&ssr_guest::state_dir()?)?;
    Some((dir, format!("editor-undo/{hash:016x}.json")))
}

/// Histories larger than this are not read back (16 versions of the largest file).
const MAX_HISTORY_BYTES: u64 = 17 * MAX_FILE_BYTES;

fn load_history((dir, file): &(Descriptor, String), path: &str) -> History {
    ssr_guest::read_file_in(dir, file, MAX_HISTORY_BYTES)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<History>(&b).ok())
        .filter(|h| h.path == path)
        .unwrap_or_else(|| History {
            path: path.to_string(),
            before: Vec::new(),
        })
}

fn save_history((dir, file): &(Descriptor, String), history: &History) -> Result<(), GuestError> {
    let bytes = serde_json::to_vec(history).map_err(|e| GuestError::Failed(e.to_string()))?;
    ssr_guest::write_file_in(dir, file, &bytes)
}

/// Records what `path` held before an edit. Without a state directory there is no
/// history and the edit still succeeds (undo_edit then says why it cannot).
fn record_undo(path: &str, before: Option<String>) -> Result<(), GuestError> {
    let Some(file) = history_file(path) else {
        return Ok(());
    };
    let mut history = load_history(&file, path);
    history.before.push(before);
    if history.before.len() > UNDO_DEPTH {
        history.before.remove(0);
    }
    save_history(&file, &history)
}

fn undo_edit(path: &str) -> Result<String, GuestError> {
    let Some(file) = history_file(path) else {
        return Err(GuestError::Failed(
            "undo is not available: the policy grants this tool no state directory".into(),
        ));
    };
    let mut history = load_history(&file, path);
    let Some(before) = history.before.pop() else {
        return Err(GuestError::Conflict(format!("no edit of {path} to undo")));
    };
    match &before {
        Some(text) => write_text(path, text)?,
        None => workspace::remove_file(path).map_err(from_host)?,
    }
    save_history(&file, &history)?;
    Ok(match before {
        Some(text) => format!(
            "Reverted the last edit of {path}; it now has {} lines.",
            text.lines().count()
        ),
        None => format!("Removed {path}, undoing its creation."),
    })
}
