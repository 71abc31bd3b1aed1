//! History-free copies: a repository's worktree as a fresh single-commit repository.
//!
//! Owns: copying a worktree without `.git`, dropping build leftovers that could leak the
//! original code (`__pycache__`, `*.pyc`, `target/`, `build/`, `*.egg-info`, configurable),
//! and committing everything once with gix under a fixed identity and time, so the same
//! content always gives the same commit id. Does not own: deciding what goes into the
//! buggy state (`ssr-game` applies its patches before or after copying).

use std::path::{Path, PathBuf};

/// The build leftovers removed by default (SSR_SPEC §4). A pattern ending in `/` matches
/// directories only; other patterns match any file or directory name (`*` and `?`
/// wildcards, gix's wildmatch).
pub const DEFAULT_EXCLUDES: &[&str] = &["__pycache__/", "*.pyc", "target/", "build/", "*.egg-info"];

/// The fixed author and committer of history-free commits.
pub const COMMIT_NAME: &str = "ssr";
/// The fixed email of history-free commits.
pub const COMMIT_EMAIL: &str = "ssr@localhost";
/// The fixed time of history-free commits (git's raw format: seconds and offset).
pub const COMMIT_TIME: &str = "1700000000 +0000";

/// How to make a history-free copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Name patterns to leave out (see [`DEFAULT_EXCLUDES`]).
    pub exclude: Vec<String>,
    /// The commit message.
    pub message: String,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            exclude: DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect(),
            message: "Initial commit".to_owned(),
        }
    }
}

/// What a history-free copy made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyOutcome {
    /// The id of the single commit (full hex).
    pub commit_id: String,
    /// Number of files (and symlinks) committed.
    pub files: usize,
    /// Relative paths left out by the exclude patterns (a directory counts once).
    pub excluded: Vec<String>,
}

/// Errors of a history-free copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The destination exists and is not an empty directory.
    #[error("destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),
    /// A file name that is not UTF-8 (git paths here are `String`s).
    #[error("path is not UTF-8: {0:?}")]
    NonUtf8Path(PathBuf),
    /// Reading the source or writing the copy failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// gix failed to create the repository or the commit.
    #[error("git: {action}: {source}")]
    Git {
        /// What was being done.
        action: &'static str,
        /// gix's error.
        #[source]
        source: gix::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn git(action: &'static str) -> impl FnOnce(gix::Error) -> CopyError {
    move |source| CopyError::Git { action, source }
}

/// True when `name` (a file or directory name) matches one of `patterns`.
pub fn is_excluded(patterns: &[String], name: &str, is_dir: bool) -> bool {
    patterns.iter().any(|pattern| {
        let (pattern, dir_only) = match pattern.strip_suffix('/') {
            Some(p) => (p, true),
            None => (pattern.as_str(), false),
        };
        (!dir_only || is_dir)
            && gix::glob::wildmatch(
                pattern.into(),
                name.into(),
                gix::glob::wildmatch::Mode::NO_MATCH_SLASH_LITERAL,
            )
    })
}

/// One entry of the copied worktree.
enum Entry {
    File { rel: String, executable: bool },
    Symlink { rel: String, target: PathBuf },
}

/// Copies the worktree at `src` (without any `.git`) to `dest` minus excluded names, then
/// `git init`s `dest` and commits everything once with a fixed identity and time.
pub fn history_free_copy(
    src: &Path,
    dest: &Path,
    options: &CopyOptions,
) -> Result<CopyOutcome, CopyError> {
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(io(dest))?;
        if entries.next().is_some() {
            return Err(CopyError::DestinationNotEmpty(dest.to_owned()));
        }
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut entries = Vec::new();
    let mut excluded = Vec::new();
    copy_dir(src, dest, "", options, &mut entries, &mut excluded)?;

    let repo = gix::init(dest).map_err(git("initialising the repository"))?;
    let mut editor = repo
        .edit_tree(gix::ObjectId::empty_tree(gix::hash::Kind::Sha1))
        .map_err(git("starting the tree"))?;
    for entry in &entries {
        let (rel, kind, bytes) = match entry {
            Entry::File { rel, executable } => {
                let path = dest.join(rel);
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let kind = if *executable {
                    gix::objs::tree::EntryKind::BlobExecutable
                } else {
                    gix::objs::tree::EntryKind::Blob
                };
                (rel, kind, bytes)
            }
            Entry::Symlink { rel, target } => (
                rel,
                gix::objs::tree::EntryKind::Link,
                target.as_os_str().as_encoded_bytes().to_vec(),
            ),
        };
        let id = repo.write_blob(&bytes).map_err(git("writing a blob"))?;
        editor
            .upsert(rel.as_str(), kind, id)
            .map_err(git("adding a file to the tree"))?;
    }
    let tree = editor.write().map_err(git("writing the tree"))?.detach();
    let signature = gix::actor::SignatureRef {
        name: COMMIT_NAME.into(),
        email: COMMIT_EMAIL.into(),
        time: COMMIT_TIME,
    };
    let commit = repo
        .commit_as(
            signature,
            signature,
            "HEAD",
            &options.message,
            tree,
            std::iter::empty::<gix::ObjectId>(),
        )
        .map_err(git("committing"))?
        .detach();
    // Without an index, `git status` in the copy would show every file as deleted and
    // untracked; stat data is left empty, so git re-hashes once and then caches.
    let mut index = repo
        .index_from_tree(&tree)
        .map_err(git("building the index"))?;
    index
        .write(gix::index::write::Options::default())
        .map_err(git("writing the index"))?;
    Ok(CopyOutcome {
        commit_id: commit.to_string(),
        files: entries.len(),
        excluded,
    })
}

fn copy_dir(
    src_dir: &Path,
    dest_dir: &Path,
    rel_dir: &str,
    options: &CopyOptions,
    entries: &mut Vec<Entry>,
    excluded: &mut Vec<String>,
) -> Result<(), CopyError> {
    let mut children: Vec<_> = std::fs::read_dir(src_dir)
        .map_err(io(src_dir))?
        .collect::<Result<_, _>>()
        .map_err(io(src_dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name_os = child.file_name();
        let name = name_os
            .to_str()
            .ok_or_else(|| CopyError::NonUtf8Path(child.path()))?;
        if name == ".git" {
            continue;
        }
        let rel = if rel_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{rel_dir}/{name}")
        };
        let src = child.path();
        let dest = dest_dir.join(name);
        let file_type = child.file_type().map_err(io(&src))?;
        if is_excluded(&options.exclude, name, file_type.is_dir()) {
            excluded.push(rel);
            continue;
        }
        if file_type.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io(&src))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io(&dest))?;
            entries.push(Entry::Symlink { rel, target });
        } else if file_type.is_dir() {
            std::fs::create_dir(&dest).map_err(io(&dest))?;
            copy_dir(&src, &dest, &rel, options, entries, excluded)?;
        } else if file_type.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::copy(&src, &dest).map_err(io(&dest))?;
            let mode = std::fs::metadata(&dest)
                .map_err(io(&dest))?
                .permissions()
                .mode();
            entries.push(Entry::File {
                rel,
                executable: mode & 0o111 != 0,
            });
        }
        // Sockets, fifos and devices are not copied: git cannot hold them.
    }
    Ok(())
}
