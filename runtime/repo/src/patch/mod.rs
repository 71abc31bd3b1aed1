//! The `git diff`-format patch as data: parse, print, reverse, inspect, apply.
//!
//! Owns: the [`Patch`] type and its parts ([`FilePatch`], [`Hunk`], [`HunkLine`],
//! [`BinaryPatch`]), what makes a patch text unreadable ([`ParseError`]), the parser
//! (`parse`), the printer (`Display`), reversal, the list of touched paths, building a
//! file patch from two file contents (`make`), and the strict all-or-nothing
//! application to a directory or an in-memory file map (`apply`).
//!
//! Does not own: reading repositories or trees (that is `crate::history` and
//! `crate::worktree`), or deciding which paths a role may touch (`ssr-game`).
//!
//! Text lines are kept as `String`s without their `\n` (a `\r` stays part of the line, so
//! CRLF files round-trip byte for byte). A file that is not valid UTF-8 or holds a NUL byte
//! is diffed as binary, in git's `GIT binary patch` literal format.

mod apply;
mod binary;
mod make;
mod parse;
mod quote;

use std::fmt;

pub use apply::{ApplyError, ApplyFailure, FileState, UnsafePath};
pub use binary::{BinaryHunk, BinaryHunkKind};
pub use make::{FileSide, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, blob_id, is_text};

// The parse errors live here, not in `parse`, because `binary` (which `parse` calls for
// `GIT binary patch` sections) reports them too: kept in `parse`, the two would import
// each other.
/// A patch text that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("patch line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number in the patch text.
    pub line: usize,
    /// What is wrong there.
    pub reason: ParseFailure,
}

/// Why a patch text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// An `@@` line that is not `@@ -a[,b] +c[,d] @@`.
    #[error("malformed hunk header {0:?}")]
    BadHunkHeader(String),
    /// The text ended before the hunk had as many lines as its header says.
    #[error("truncated hunk: {missing_old} old and {missing_new} new lines missing")]
    TruncatedHunk {
        /// Old-side lines still expected.
        missing_old: u32,
        /// New-side lines still expected.
        missing_new: u32,
    },
    /// A line inside a hunk that is not ` `, `-`, `+` or `\`, or one more line of a side
    /// than the header counts.
    #[error("unexpected line in hunk: {0:?}")]
    UnexpectedHunkLine(String),
    /// A hunk with no file header before it.
    #[error("hunk without a file header")]
    HunkWithoutFile,
    /// The file header names no usable path.
    #[error("cannot tell the file name from the header")]
    MissingPath,
    /// A mode that is not an octal number.
    #[error("malformed mode {0:?}")]
    BadMode(String),
    /// A `GIT binary patch` section that cannot be decoded.
    #[error("corrupt binary patch: {0}")]
    BadBinary(String),
    /// A header git writes that this parser does not support (`copy from`).
    #[error("unsupported patch feature: {0}")]
    Unsupported(&'static str),
}

/// A multi-file patch in `git diff` format: an ordered list of per-file patches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patch {
    /// The per-file patches, in the order they appear in the text.
    pub files: Vec<FilePatch>,
}

/// The change to one file: a creation, deletion, modification, rename or mode change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// The path before the change, relative to the repository root; `None` when the file
    /// is created (`--- /dev/null`).
    pub old_path: Option<String>,
    /// The path after the change; `None` when the file is deleted (`+++ /dev/null`).
    pub new_path: Option<String>,
    /// The git mode before (`0o100644`, `0o100755`, `0o120000`), when the patch says it.
    pub old_mode: Option<u32>,
    /// The git mode after, when the patch says it.
    pub new_mode: Option<u32>,
    /// The `index <old>..<new>` object ids (abbreviated or full hex), when present.
    pub index: Option<(String, String)>,
    /// What changes in the content.
    pub body: FileBody,
}

/// The content change of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBody {
    /// Unified-diff hunks (possibly none: an empty new file, or a mode or rename change).
    Text(Vec<Hunk>),
    /// A `GIT binary patch` with its data.
    Binary(BinaryPatch),
    /// `Binary files a/x and b/x differ`: the patch says a binary file changed but carries
    /// no data, so applying it fails with [`ApplyFailure::BinaryWithoutData`].
    BinaryWithoutData,
}

/// A `GIT binary patch` section: the forward hunk and, as git writes it, the reverse hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPatch {
    /// Turns the old content into the new one.
    pub forward: BinaryHunk,
    /// Turns the new content back into the old one (git always writes it; optional on input).
    pub reverse: Option<BinaryHunk>,
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// First line of the hunk in the old file (1-based; 0 for an empty old side).
    pub old_start: u32,
    /// Number of old-side lines (context and removed).
    pub old_len: u32,
    /// First line of the hunk in the new file (1-based; 0 for an empty new side).
    pub new_start: u32,
    /// Number of new-side lines (context and added).
    pub new_len: u32,
    /// The text after the closing `@@` (git's function context), without the leading space.
    pub section: String,
    /// The lines of the hunk body.
    pub lines: Vec<HunkLine>,
}

/// One line of a hunk body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkLine {
    /// Context, removed or added.
    pub kind: LineKind,
    /// The line's text without the `\n` (and without the leading ` `/`-`/`+`).
    pub text: String,
    /// True when the line is the last of its file and has no `\n`
    /// (`\ No newline at end of file` follows it).
    pub no_newline: bool,
}

/// The role of a hunk line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Present on both sides (` `).
    Context,
    /// Only in the old file (`-`).
    Removed,
    /// Only in the new file (`+`).
    Added,
}

/// How a path is touched by a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathChange {
    /// The path does not exist before and exists after (creation, or rename target).
    Added,
    /// The path exists before and not after (deletion, or rename source).
    Deleted,
    /// The path exists on both sides and its content or mode changes.
    Modified,
}

/// One path a patch touches, with how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TouchedPath {
    /// Path relative to the repository root.
    pub path: String,
    /// What happens to it.
    pub change: PathChange,
}

impl Patch {
    /// Parses `git diff` or plain unified diff text. Text before the first file header and
    /// between files (commit messages, `index` noise) is skipped as git does; a malformed
    /// hunk or header is a [`ParseError`] naming the line.
    pub fn parse(text: &str) -> Result<Patch, ParseError> {
        parse::parse(text)
    }

    /// True when the patch changes nothing (no file patches).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Every path the patch touches, old and new, in patch order. A rename yields its
    /// source as [`PathChange::Deleted`] and its target as [`PathChange::Added`].
    pub fn touched_paths(&self) -> Vec<TouchedPath> {
        let mut out = Vec::new();
        for file in &self.files {
            match (&file.old_path, &file.new_path) {
                (None, Some(new)) => out.push(TouchedPath {
                    path: new.clone(),
                    change: PathChange::Added,
                }),
                (Some(old), None) => out.push(TouchedPath {
                    path: old.clone(),
                    change: PathChange::Deleted,
                }),
                (Some(old), Some(new)) if old == new => out.push(TouchedPath {
                    path: new.clone(),
                    change: PathChange::Modified,
                }),
                (Some(old), Some(new)) => {
                    out.push(TouchedPath {
                        path: old.clone(),
                        change: PathChange::Deleted,
                    });
                    out.push(TouchedPath {
                        path: new.clone(),
                        change: PathChange::Added,
                    });
                }
                (None, None) => {}
            }
        }
        out
    }

    /// Splits the patch into the file patches `keep` accepts and those it drops, both in
    /// patch order (to leave out sections a role may not change, and say which).
    pub fn partition(&self, mut keep: impl FnMut(&FilePatch) -> bool) -> (Patch, Patch) {
        let (kept, dropped) = self.files.iter().cloned().partition(|f| keep(f));
        (Patch { files: kept }, Patch { files: dropped })
    }

    /// The patch that undoes this one (`git apply -R`): sides swapped, `+` and `-` swapped,
    /// files in reverse order. A binary patch without a reverse hunk becomes
    /// [`FileBody::BinaryWithoutData`], since its old content is not in the patch.
    pub fn reverse(&self) -> Patch {
        Patch {
            files: self.files.iter().rev().map(FilePatch::reverse).collect(),
        }
    }

    /// Applies the patch to an in-memory map of path → content, all or nothing: on error
    /// the map is unchanged. Modes are not tracked here (mode-only changes are no-ops).
    pub fn apply_to_files(
        &self,
        files: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<(), ApplyError> {
        apply::apply_to_files(self, files)
    }

    /// Applies the patch to the directory `root`, all or nothing: every file is patched in
    /// memory first and only written when all succeeded, so on error the directory is left
    /// unchanged. Paths that are absolute, contain `..`, go into `.git`, or pass through a
    /// symlink are refused with [`ApplyFailure::UnsafePath`].
    pub fn apply_to_dir(&self, root: &std::path::Path) -> Result<(), ApplyError> {
        apply::apply_to_dir(self, root)
    }
}

impl FilePatch {
    /// The paths this file patch touches: the old and the new one (one for an edit, two
    /// for a rename, the existing one for a creation or deletion).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let old = self.old_path.as_deref();
        let new = self.new_path.as_deref().filter(|n| Some(*n) != old);
        old.into_iter().chain(new)
    }

    /// The path this patch is about, for messages: the new path, else the old one.
    pub fn display_path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }

    /// The reverse of this file patch.
    pub fn reverse(&self) -> FilePatch {
        let body = match &self.body {
            FileBody::Text(hunks) => FileBody::Text(hunks.iter().map(Hunk::reverse).collect()),
            FileBody::Binary(BinaryPatch {
                forward,
                reverse: Some(reverse),
            }) => FileBody::Binary(BinaryPatch {
                forward: reverse.clone(),
                reverse: Some(forward.clone()),
            }),
            FileBody::Binary(BinaryPatch { reverse: None, .. }) | FileBody::BinaryWithoutData => {
                FileBody::BinaryWithoutData
            }
        };
        FilePatch {
            old_path: self.new_path.clone(),
            new_path: self.old_path.clone(),
            old_mode: self.new_mode,
            new_mode: self.old_mode,
            index: self.index.as_ref().map(|(a, b)| (b.clone(), a.clone())),
            body,
        }
    }
}

impl Hunk {
    /// The reverse of this hunk: sides and `+`/`-` swapped.
    pub fn reverse(&self) -> Hunk {
        Hunk {
            old_start: self.new_start,
            old_len: self.new_len,
            new_start: self.old_start,
            new_len: self.old_len,
            section: self.section.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| HunkLine {
                    kind: match l.kind {
                        LineKind::Context => LineKind::Context,
                        LineKind::Removed => LineKind::Added,
                        LineKind::Added => LineKind::Removed,
                    },
                    text: l.text.clone(),
                    no_newline: l.no_newline,
                })
                .collect(),
        }
    }
}

fn fmt_range(f: &mut fmt::Formatter<'_>, start: u32, len: u32) -> fmt::Result {
    if len == 1 {
        write!(f, "{start}")
    } else {
        write!(f, "{start},{len}")
    }
}

impl fmt::Display for Hunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("@@ -")?;
        fmt_range(f, self.old_start, self.old_len)?;
        f.write_str(" +")?;
        fmt_range(f, self.new_start, self.new_len)?;
        f.write_str(" @@")?;
        if !self.section.is_empty() {
            write!(f, " {}", self.section)?;
        }
        f.write_str("\n")?;
        for line in &self.lines {
            let sign = match line.kind {
                LineKind::Context => ' ',
                LineKind::Removed => '-',
                LineKind::Added => '+',
            };
            writeln!(f, "{sign}{}", line.text)?;
            if line.no_newline {
                f.write_str("\\ No newline at end of file\n")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for FilePatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let old_name = self
            .old_path
            .as_deref()
            .or(self.new_path.as_deref())
            .unwrap_or("");
        let new_name = self
            .new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("");
        writeln!(
            f,
            "diff --git {} {}",
            quote::quote_path("a/", old_name),
            quote::quote_path("b/", new_name)
        )?;
        match (&self.old_path, &self.new_path) {
            (None, _) => writeln!(f, "new file mode {:o}", self.new_mode.unwrap_or(MODE_FILE))?,
            (_, None) => writeln!(
                f,
                "deleted file mode {:o}",
                self.old_mode.unwrap_or(MODE_FILE)
            )?,
            (Some(_), Some(_)) => {
                if let (Some(old), Some(new)) = (self.old_mode, self.new_mode)
                    && old != new
                {
                    writeln!(f, "old mode {old:o}\nnew mode {new:o}")?;
                }
            }
        }
        if let (Some(old), Some(new)) = (&self.old_path, &self.new_path)
            && old != new
        {
            writeln!(
                f,
                "rename from {}\nrename to {}",
                quote::quote_path("", old),
                quote::quote_path("", new)
            )?;
        }
        if let Some((a, b)) = &self.index {
            write!(f, "index {a}..{b}")?;
            if self.old_path.is_some()
                && self.new_path.is_some()
                && let (Some(old), Some(new)) = (self.old_mode, self.new_mode)
                && old == new
            {
                write!(f, " {old:o}")?;
            }
            f.write_str("\n")?;
        }
        let old_side = match &self.old_path {
            Some(p) => quote::quote_path("a/", p),
            None => "/dev/null".to_owned(),
        };
        let new_side = match &self.new_path {
            Some(p) => quote::quote_path("b/", p),
            None => "/dev/null".to_owned(),
        };
        match &self.body {
            FileBody::Text(hunks) => {
                if !hunks.is_empty() {
                    writeln!(f, "--- {old_side}\n+++ {new_side}")?;
                }
                for hunk in hunks {
                    write!(f, "{hunk}")?;
                }
            }
            FileBody::Binary(binary) => {
                f.write_str("GIT binary patch\n")?;
                write!(f, "{}", binary.forward)?;
                if let Some(reverse) = &binary.reverse {
                    write!(f, "{reverse}")?;
                }
            }
            FileBody::BinaryWithoutData => {
                writeln!(f, "Binary files {old_side} and {new_side} differ")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            write!(f, "{file}")?;
        }
        Ok(())
    }
}
