//! Strict, all-or-nothing application of a [`Patch`], with `git apply`'s matching rules.
//!
//! Owns: matching hunks against file content (exact bytes, no fuzz, no whitespace fixing;
//! a hunk may be found at an offset from where its header says, searched alternately
//! after and before that line as git does; a hunk starting at line 1 must match at the
//! start of the file and one without trailing context at its end, as in git), path safety,
//! and the two-phase write to a directory. Does not own: parsing (`parse`).
//!
//! All-or-nothing: every file is patched in memory first. For a directory, the results are
//! then staged in a temporary directory inside the target (same filesystem), and only when
//! all are staged are deletions done and staged files renamed into place; a failure while
//! staging removes the staging directory and leaves the target unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::make::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, blob_id};
use super::{BinaryPatch, FileBody, FilePatch, Hunk, LineKind, Patch};

/// A file's content and git mode, as the apply engine reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// The bytes.
    pub content: Vec<u8>,
    /// Git mode (`0o100644`, `0o100755`, `0o120000`).
    pub mode: u32,
}

/// A patch that could not be applied; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {reason}", hunk.map(|h| format!(" (hunk {h})")).unwrap_or_default())]
pub struct ApplyError {
    /// The file (new path, else old path) whose patch failed.
    pub file: String,
    /// The 1-based hunk that failed, when the failure is in a hunk.
    pub hunk: Option<usize>,
    /// What went wrong.
    pub reason: ApplyFailure,
}

/// Why a file patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    /// The hunk's old lines are not in the file (not at its line, nor at any offset).
    #[error("hunk does not match the file (expected at line {expected_line})")]
    ContextMismatch {
        /// Where the hunk header said the old lines start.
        expected_line: u32,
    },
    /// The patch modifies or deletes a file that does not exist.
    #[error("file does not exist")]
    MissingFile,
    /// The patch creates (or renames onto) a file that already exists.
    #[error("file already exists")]
    AlreadyExists,
    /// The path exists but is a directory or other non-file.
    #[error("path is not a regular file")]
    NotAFile,
    /// A deletion patch whose hunks do not remove the whole content.
    #[error("deletion leaves content in the file")]
    DeletedFileNotEmpty,
    /// The path is refused for safety.
    #[error("unsafe path: {0}")]
    UnsafePath(UnsafePath),
    /// `Binary files ... differ` without data (diff made without `--binary`).
    #[error("binary patch without data (make the diff with `git diff --binary`)")]
    BinaryWithoutData,
    /// A binary hunk does not fit the file (hash of the preimage or postimage differs,
    /// or the delta is corrupt).
    #[error("binary patch does not apply: {0}")]
    Binary(String),
    /// Creating or patching a symbolic link on disk is not supported.
    #[error("patching symbolic links is not supported")]
    Symlink,
    /// Reading the file or writing the result failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why a path in a patch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// Empty path, or an empty or `.` component.
    #[error("empty path or path component")]
    Empty,
    /// Starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// Has a `..` component.
    #[error("path leaves the directory through `..`")]
    ParentDir,
    /// Goes into `.git`.
    #[error("path inside `.git`")]
    GitDir,
    /// Holds a NUL byte.
    #[error("path holds a NUL byte")]
    Nul,
    /// An existing component of the path (named) is a symbolic link.
    #[error("path goes through the symbolic link {0:?}")]
    ThroughSymlink(String),
}

/// Checks that a patch path stays inside the directory it is applied to.
pub(crate) fn check_path(path: &str) -> Result<(), UnsafePath> {
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path.starts_with('/') {
        return Err(UnsafePath::Absolute);
    }
    if path.contains('\0') {
        return Err(UnsafePath::Nul);
    }
    for component in path.split('/') {
        match component {
            "" | "." => return Err(UnsafePath::Empty),
            ".." => return Err(UnsafePath::ParentDir),
            c if c.eq_ignore_ascii_case(".git") => return Err(UnsafePath::GitDir),
            _ => {}
        }
    }
    Ok(())
}

/// The final state of every path the patch touches (`None`: deleted), or the first failure.
fn plan<R>(patch: &Patch, mut read: R) -> Result<BTreeMap<String, Option<FileState>>, ApplyError>
where
    R: FnMut(&str) -> Result<Option<FileState>, ApplyFailure>,
{
    let mut pending: BTreeMap<String, Option<FileState>> = BTreeMap::new();
    for file in &patch.files {
        let name = file.display_path().to_owned();
        let fail = |hunk: Option<usize>, reason| ApplyError {
            file: name.clone(),
            hunk,
            reason,
        };
        for path in [&file.old_path, &file.new_path].into_iter().flatten() {
            check_path(path).map_err(|u| fail(None, ApplyFailure::UnsafePath(u)))?;
        }
        let mut current = |path: &str| -> Result<Option<FileState>, ApplyFailure> {
            match pending.get(path) {
                Some(state) => Ok(state.clone()),
                None => read(path),
            }
        };
        let old_state = match &file.old_path {
            Some(path) => Some(
                current(path)
                    .map_err(|r| fail(None, r))?
                    .ok_or_else(|| fail(None, ApplyFailure::MissingFile))?,
            ),
            None => None,
        };
        if let Some(new) = &file.new_path
            && file.old_path.as_ref() != Some(new)
            && current(new).map_err(|r| fail(None, r))?.is_some()
        {
            return Err(fail(None, ApplyFailure::AlreadyExists));
        }
        let old_content: &[u8] = old_state.as_ref().map_or(&[], |s| &s.content);
        let new_content = match &file.body {
            FileBody::Text(hunks) => {
                apply_hunks(old_content, hunks).map_err(|(h, expected_line)| {
                    fail(Some(h + 1), ApplyFailure::ContextMismatch { expected_line })
                })?
            }
            FileBody::Binary(binary) => {
                apply_binary(file, binary, old_content).map_err(|r| fail(Some(1), r))?
            }
            FileBody::BinaryWithoutData => return Err(fail(None, ApplyFailure::BinaryWithoutData)),
        };
        match (&file.old_path, &file.new_path) {
            (Some(old), None) => {
                if !new_content.is_empty() {
                    return Err(fail(None, ApplyFailure::DeletedFileNotEmpty));
                }
                pending.insert(old.clone(), None);
            }
            (old, Some(new)) => {
                let mode = file
                    .new_mode
                    .or(old_state.as_ref().map(|s| s.mode))
                    .unwrap_or(MODE_FILE);
                if let Some(old) = old
                    && old != new
                {
                    pending.insert(old.clone(), None);
                }
                pending.insert(
                    new.clone(),
                    Some(FileState {
                        content: new_content,
                        mode,
                    }),
                );
            }
            (None, None) => {}
        }
    }
    Ok(pending)
}

/// The new content of a binary file patch, with the `index` line's full object ids
/// (when present) checked against the preimage and the result.
fn apply_binary(
    file: &FilePatch,
    binary: &BinaryPatch,
    old_content: &[u8],
) -> Result<Vec<u8>, ApplyFailure> {
    let full = |id: &str| id.len() == 40 && !id.bytes().all(|b| b == b'0');
    if let Some((old_id, _)) = &file.index
        && full(old_id)
        && blob_id(old_content) != *old_id
    {
        return Err(ApplyFailure::Binary(
            "the file is not the patch's preimage".into(),
        ));
    }
    let result = binary
        .forward
        .apply(old_content)
        .map_err(ApplyFailure::Binary)?;
    if let Some((_, new_id)) = &file.index
        && full(new_id)
        && blob_id(&result) != *new_id
    {
        return Err(ApplyFailure::Binary(
            "the result does not match the patch's postimage".into(),
        ));
    }
    Ok(result)
}

/// Splits content into lines that keep their `\n` (the last one may lack it).
fn image_lines(content: &[u8]) -> Vec<Cow<'_, [u8]>> {
    content
        .split_inclusive(|&b| b == b'\n')
        .map(Cow::Borrowed)
        .collect()
}

fn side_lines(hunk: &Hunk, skip: LineKind) -> Vec<Vec<u8>> {
    hunk.lines
        .iter()
        .filter(|l| l.kind != skip)
        .map(|l| {
            let mut bytes = l.text.as_bytes().to_vec();
            if !l.no_newline {
                bytes.push(b'\n');
            }
            bytes
        })
        .collect()
}

/// Applies text hunks in order; on failure gives the 0-based hunk and its expected line.
fn apply_hunks(content: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>, (usize, u32)> {
    let mut image = image_lines(content);
    // Lines written by an earlier hunk may not be matched again (git's LINE_PATCHED).
    let mut patched = vec![false; image.len()];
    for (k, hunk) in hunks.iter().enumerate() {
        let pre = side_lines(hunk, LineKind::Added);
        let post = side_lines(hunk, LineKind::Removed);
        let trailing = hunk
            .lines
            .iter()
            .rev()
            .take_while(|l| l.kind == LineKind::Context)
            .count();
        // git apply: a hunk at the very start must match there, one without trailing
        // context must match at the end (otherwise a short hunk could land anywhere).
        let match_beginning = hunk.old_start <= 1;
        let match_end = trailing == 0;
        let start = hunk.new_start.saturating_sub(1) as usize;
        let pos = find_pos(&image, &patched, &pre, start, match_beginning, match_end)
            .ok_or((k, hunk.old_start))?;
        patched.splice(pos..pos + pre.len(), post.iter().map(|_| true));
        image.splice(pos..pos + pre.len(), post.into_iter().map(Cow::Owned));
    }
    Ok(image.concat())
}

/// git's `find_pos`: try `line`, then alternately one further forward and one further back.
fn find_pos(
    image: &[Cow<'_, [u8]>],
    patched: &[bool],
    pre: &[Vec<u8>],
    line: usize,
    match_beginning: bool,
    match_end: bool,
) -> Option<usize> {
    let nr = image.len();
    if pre.len() > nr {
        return None;
    }
    let line = if match_beginning {
        0
    } else if match_end {
        nr - pre.len()
    } else {
        line.min(nr)
    };
    let matches = |pos: usize| {
        pos + pre.len() <= nr
            && (!match_beginning || pos == 0)
            && (!match_end || pos + pre.len() == nr)
            && !patched[pos..pos + pre.len()].iter().any(|&p| p)
            && image[pos..pos + pre.len()]
                .iter()
                .zip(pre)
                .enumerate()
                .all(|(k, (a, b))| {
                    let a = a.as_ref();
                    // git compares the preimage bytes as a prefix of the image, so a last
                    // preimage line without `\n` also matches the same line with one
                    // (and the newline is then lost), except where the hunk must end
                    // at end of file. Kept for agreement with `git apply`.
                    a == b.as_slice()
                        || (!match_end
                            && k + 1 == pre.len()
                            && !b.ends_with(b"\n")
                            && a.strip_suffix(b"\n") == Some(b.as_slice()))
                })
    };
    let (mut backwards, mut forwards, mut current) = (line, line, line);
    let mut i: usize = 0;
    loop {
        if matches(current) {
            return Some(current);
        }
        loop {
            if backwards == 0 && forwards == nr {
                return None;
            }
            if i & 1 == 1 {
                if backwards == 0 {
                    i += 1;
                    continue;
                }
                backwards -= 1;
                current = backwards;
            } else {
                if forwards == nr {
                    i += 1;
                    continue;
                }
                forwards += 1;
                current = forwards;
            }
            break;
        }
        i += 1;
    }
}

pub(super) fn apply_to_files(
    patch: &Patch,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), ApplyError> {
    let changes = plan(patch, |path| {
        Ok(files.get(path).map(|content| FileState {
            content: content.clone(),
            mode: MODE_FILE,
        }))
    })?;
    for (path, state) in changes {
        match state {
            Some(state) => {
                files.insert(path, state.content);
            }
            None => {
                files.remove(&path);
            }
        }
    }
    Ok(())
}

/// Refuses a path whose existing ancestors include a symlink; `Ok` if all are directories
/// or missing.
fn check_ancestors(root: &Path, path: &str) -> Result<(), ApplyFailure> {
    let mut prefix = PathBuf::new();
    let components: Vec<&str> = path.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        prefix.push(component);
        match std::fs::symlink_metadata(root.join(&prefix)) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ApplyFailure::UnsafePath(UnsafePath::ThroughSymlink(
                    prefix.to_string_lossy().into_owned(),
                )));
            }
            Ok(meta) if !meta.is_dir() => return Err(ApplyFailure::NotAFile),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ApplyFailure::Io {
                    action: "inspecting a parent directory",
                    source,
                });
            }
        }
    }
    Ok(())
}

fn read_from_dir(root: &Path, path: &str) -> Result<Option<FileState>, ApplyFailure> {
    check_ancestors(root, path)?;
    let full = root.join(path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ApplyFailure::Io {
                action: "inspecting the file",
                source,
            });
        }
    };
    if meta.file_type().is_symlink() {
        return Err(ApplyFailure::Symlink);
    }
    if !meta.is_file() {
        return Err(ApplyFailure::NotAFile);
    }
    let content = std::fs::read(&full).map_err(|source| ApplyFailure::Io {
        action: "reading the file",
        source,
    })?;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        MODE_EXECUTABLE
    } else {
        MODE_FILE
    };
    Ok(Some(FileState { content, mode }))
}

pub(super) fn apply_to_dir(patch: &Patch, root: &Path) -> Result<(), ApplyError> {
    let root = root.canonicalize().map_err(|source| ApplyError {
        file: root.display().to_string(),
        hunk: None,
        reason: ApplyFailure::Io {
            action: "opening the target directory",
            source,
        },
    })?;
    let changes = plan(patch, |path| read_from_dir(&root, path))?;
    for (path, state) in &changes {
        if state.as_ref().is_some_and(|s| s.mode == MODE_SYMLINK) {
            return Err(ApplyError {
                file: path.clone(),
                hunk: None,
                reason: ApplyFailure::Symlink,
            });
        }
    }
    let staging = Staging::new(&root).map_err(|source| ApplyError {
        file: String::new(),
        hunk: None,
        reason: ApplyFailure::Io {
            action: "creating the staging directory",
            source,
        },
    })?;
    let mut staged = Vec::new();
    for (k, (path, state)) in changes.iter().enumerate() {
        if let Some(state) = state {
            let tmp = staging.dir.join(k.to_string());
            write_file(&tmp, state).map_err(|source| ApplyError {
                file: path.clone(),
                hunk: None,
                reason: ApplyFailure::Io {
                    action: "staging the patched file",
                    source,
                },
            })?;
            staged.push((tmp, path));
        }
    }
    // Commit: deletions first (a deleted file may be where a new directory goes).
    let io_fail = |path: &str, action, source| ApplyError {
        file: path.to_owned(),
        hunk: None,
        reason: ApplyFailure::Io { action, source },
    };
    for (path, state) in &changes {
        if state.is_none() {
            let full = root.join(path);
            std::fs::remove_file(&full).map_err(|e| io_fail(path, "deleting the file", e))?;
            prune_empty_parents(&root, &full);
        }
    }
    for (tmp, path) in staged {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_fail(path, "creating the parent directory", e))?;
        }
        std::fs::rename(&tmp, &full).map_err(|e| io_fail(path, "moving the patched file in", e))?;
    }
    Ok(())
}

fn write_file(path: &Path, state: &FileState) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, &state.content)?;
    let mode = if state.mode == MODE_EXECUTABLE {
        0o755
    } else {
        0o644
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Removes directories left empty by a deletion, up to (not including) the root, as git does.
fn prune_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// A temporary directory inside the target, removed on drop.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn new(root: &Path) -> io::Result<Staging> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!(".ssr-apply-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(Staging { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: after a successful commit the directory is empty.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
