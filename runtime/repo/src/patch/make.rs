//! Building a [`FilePatch`] from the old and new content of one file.
//!
//! Owns: the line diff (histogram algorithm with git's indent heuristic, via gix's
//! imara-diff), grouping changes into hunks with three lines of context, binary detection,
//! and `index` lines with full object ids. Does not own: finding which files changed
//! (`crate::history`, `crate::worktree`).

use gix::diff::blob::{Algorithm, Diff, InternedInput, sources::byte_lines};

use super::binary::BinaryHunk;
use super::{BinaryPatch, FileBody, FilePatch, Hunk, HunkLine, LineKind};

/// Git's mode of a regular file.
pub const MODE_FILE: u32 = 0o100644;
/// Git's mode of an executable file.
pub const MODE_EXECUTABLE: u32 = 0o100755;
/// Git's mode of a symbolic link (its content is the link target).
pub const MODE_SYMLINK: u32 = 0o120000;

/// Lines of context around each change, as `git diff` uses by default.
const CONTEXT: u32 = 3;

/// One side of a file change: where it is, what it holds, and its git mode.
#[derive(Debug, Clone, Copy)]
pub struct FileSide<'a> {
    /// Path relative to the repository root.
    pub path: &'a str,
    /// The file's bytes.
    pub content: &'a [u8],
    /// Git mode ([`MODE_FILE`], [`MODE_EXECUTABLE`], [`MODE_SYMLINK`]).
    pub mode: u32,
}

/// The git blob id (SHA-1, hex) of `content`.
pub fn blob_id(content: &[u8]) -> String {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, content)
        .map(|id| id.to_string())
        // SHA-1 hashing of an in-memory buffer has no failure mode but a collision
        // attack detection; fall back to the null id rather than panic.
        .unwrap_or_else(|_| NULL_ID.to_owned())
}

const NULL_ID: &str = "0000000000000000000000000000000000000000";

/// True when git would diff `content` as text here: valid UTF-8 without NUL bytes.
/// (Git itself only looks for NUL; a non-UTF-8 text file is diffed as binary here so that
/// patch lines can be `String`s.)
pub fn is_text(content: &[u8]) -> bool {
    !content.contains(&0) && std::str::from_utf8(content).is_ok()
}

impl FilePatch {
    /// The patch turning `old` into `new` (`None` on a side: the file does not exist there).
    /// Returns `None` when nothing differs. Different paths on the two sides make a rename.
    pub fn from_contents(
        old: Option<FileSide<'_>>,
        new: Option<FileSide<'_>>,
    ) -> Option<FilePatch> {
        if let (Some(o), Some(n)) = (&old, &new)
            && o.content == n.content
            && o.mode == n.mode
            && o.path == n.path
        {
            return None;
        }
        if old.is_none() && new.is_none() {
            return None;
        }
        let old_content = old.map_or(&[][..], |s| s.content);
        let new_content = new.map_or(&[][..], |s| s.content);
        let body = if is_text(old_content) && is_text(new_content) {
            FileBody::Text(text_hunks(old_content, new_content))
        } else if old_content == new_content {
            FileBody::Text(Vec::new())
        } else {
            FileBody::Binary(BinaryPatch {
                forward: BinaryHunk::literal(new_content),
                reverse: Some(BinaryHunk::literal(old_content)),
            })
        };
        let index = (old_content != new_content || old.is_none() || new.is_none()).then(|| {
            (
                old.map_or_else(|| NULL_ID.to_owned(), |s| blob_id(s.content)),
                new.map_or_else(|| NULL_ID.to_owned(), |s| blob_id(s.content)),
            )
        });
        Some(FilePatch {
            old_path: old.map(|s| s.path.to_owned()),
            new_path: new.map(|s| s.path.to_owned()),
            old_mode: old.map(|s| s.mode),
            new_mode: new.map(|s| s.mode),
            index,
            body,
        })
    }
}

/// Splits into lines without their `\n`; the flag says the last line lacks one.
fn split_lines(content: &[u8]) -> (Vec<&str>, bool) {
    let text = std::str::from_utf8(content).unwrap_or("");
    if text.is_empty() {
        return (Vec::new(), false);
    }
    let no_newline = !text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    (body.split('\n').collect(), no_newline)
}

fn text_hunks(old: &[u8], new: &[u8]) -> Vec<Hunk> {
    let input = InternedInput::new(byte_lines(old), byte_lines(new));
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    let changes: Vec<_> = diff.hunks().collect();
    let (old_lines, old_nonl) = split_lines(old);
    let (new_lines, new_nonl) = split_lines(new);
    let old_n = old_lines.len() as u32;
    let line = |kind, lines: &[&str], nonl: bool, i: u32| HunkLine {
        kind,
        text: lines[i as usize].to_owned(),
        no_newline: nonl && i as usize + 1 == lines.len(),
    };
    let mut hunks = Vec::new();
    let mut idx = 0;
    while idx < changes.len() {
        let first = idx;
        let mut last = idx;
        while last + 1 < changes.len()
            && changes[last + 1].before.start - changes[last].before.end <= 2 * CONTEXT
        {
            last += 1;
        }
        idx = last + 1;
        let old_begin = changes[first].before.start.saturating_sub(CONTEXT);
        // Before the first change the two sides are in step, shifted by a constant.
        let new_begin = changes[first].after.start - (changes[first].before.start - old_begin);
        let old_end = (changes[last].before.end + CONTEXT).min(old_n);
        let mut lines = Vec::new();
        let (mut o, mut n) = (old_begin, new_begin);
        for change in &changes[first..=last] {
            while o < change.before.start {
                lines.push(line(LineKind::Context, &old_lines, old_nonl, o));
                o += 1;
            }
            for i in change.before.clone() {
                lines.push(line(LineKind::Removed, &old_lines, old_nonl, i));
            }
            for i in change.after.clone() {
                lines.push(line(LineKind::Added, &new_lines, new_nonl, i));
            }
            o = change.before.end;
            n = change.after.end;
        }
        let trailing = old_end.saturating_sub(o);
        for i in o..old_end {
            lines.push(line(LineKind::Context, &old_lines, old_nonl, i));
        }
        let old_len = old_end - old_begin;
        let new_len = n + trailing - new_begin;
        hunks.push(Hunk {
            old_start: if old_len == 0 {
                old_begin
            } else {
                old_begin + 1
            },
            old_len,
            new_start: if new_len == 0 {
                new_begin
            } else {
                new_begin + 1
            },
            new_len,
            section: String::new(),
            lines,
        });
    }
    hunks
}
