//! Reading a git repository: history, commit diffs, tree diffs, and the worktree's diff.
//!
//! Owns: [`Repo`] (a gix repository with a worktree), the commit walk ([`CommitInfo`],
//! newest first), the diff of a commit against its first parent, the diff between two
//! revisions, the diff of the worktree (tracked and untracked files, `.gitignore`
//! respected) against `HEAD`, and reading a revision's files. Does not own: the patch
//! format itself (`crate::patch`) or making new repositories (`crate::copy`).
//!
//! Diffs are computed here file by file from blob contents (no rename detection: a
//! renamed file is a deletion and an addition), so every patch this module returns
//! applies with [`Patch::apply_to_dir`] and with `git apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::patch::{FilePatch, FileSide, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, Patch};

/// Errors from reading a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// gix failed (opening, finding or decoding objects, walking history).
    #[error("git: {action}: {source}")]
    Git {
        /// What was being done.
        action: String,
        /// gix's error.
        #[source]
        source: gix::Error,
    },
    /// A revision (`HEAD`, a hash, a branch) that does not name a commit.
    #[error("no commit named {rev:?}: {reason}")]
    BadRevision {
        /// The revision as given.
        rev: String,
        /// Why it was not found.
        reason: String,
    },
    /// The repository is bare.
    #[error("repository {0} has no worktree")]
    NoWorktree(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Walking the worktree failed.
    #[error("walking the worktree: {0}")]
    Walk(String),
}

fn git_err(action: impl Into<String>) -> impl FnOnce(gix::Error) -> RepoError {
    let action = action.into();
    move |source| RepoError::Git { action, source }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One commit of the history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitInfo {
    /// Full hex object id.
    pub id: String,
    /// Parent ids, first parent first.
    pub parents: Vec<String>,
    /// Author name.
    pub author_name: String,
    /// Author email.
    pub author_email: String,
    /// Author time, seconds since the Unix epoch.
    pub time: i64,
    /// Author time zone offset in seconds east of UTC.
    pub tz_offset: i32,
    /// The full commit message.
    pub message: String,
}

impl CommitInfo {
    /// The first line of the message.
    pub fn summary(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// A git repository with a worktree, opened with gix.
pub struct Repo {
    repo: gix::Repository,
    workdir: PathBuf,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// A file in a tree: its content and git mode.
pub type TreeFiles = BTreeMap<String, crate::patch::FileState>;

impl Repo {
    /// Opens the repository at `path` (the worktree root or any directory git would find it
    /// from is not searched: `path` must hold `.git`).
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        let repo = gix::open(path).map_err(git_err(format!("opening {}", path.display())))?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| RepoError::NoWorktree(path.to_owned()))?
            .to_owned();
        Ok(Repo { repo, workdir })
    }

    /// The worktree root.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The underlying gix repository, for what this API does not cover.
    pub fn gix(&self) -> &gix::Repository {
        &self.repo
    }

    /// Resolves a revision (`HEAD`, `main`, a full or abbreviated hash, `HEAD~2`) to a
    /// commit id.
    pub fn resolve(&self, rev: &str) -> Result<gix::ObjectId, RepoError> {
        let bad = |reason: String| RepoError::BadRevision {
            rev: rev.to_owned(),
            reason,
        };
        let id = self
            .repo
            .rev_parse_single(rev)
            .map_err(|e| bad(e.to_string()))?;
        let object = id.object().map_err(|e| bad(e.to_string()))?;
        let commit = object.peel_to_commit().map_err(|e| bad(e.to_string()))?;
        Ok(commit.id)
    }

    /// The commit id `HEAD` points to.
    pub fn head_id(&self) -> Result<String, RepoError> {
        Ok(self.resolve("HEAD")?.to_string())
    }

    /// The history reachable from `rev`, newest first (by commit time), at most `limit`
    /// commits when given.
    pub fn log(&self, rev: &str, limit: Option<usize>) -> Result<Vec<CommitInfo>, RepoError> {
        let tip = self.resolve(rev)?;
        let walk = self
            .repo
            .rev_walk([tip])
            .sorting(gix::revision::walk::Sorting::ByCommitTime(
                gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
            ))
            .all()
            .map_err(git_err("starting the history walk"))?;
        let mut out = Vec::new();
        for info in walk {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let info = info.map_err(git_err("walking history"))?;
            out.push(self.commit_info(info.id)?);
        }
        Ok(out)
    }

    /// Id, parents, author, time and message of one commit.
    pub fn commit_info(&self, id: gix::ObjectId) -> Result<CommitInfo, RepoError> {
        let commit = self
            .repo
            .find_commit(id)
            .map_err(git_err(format!("reading commit {id}")))?;
        let author = commit
            .author()
            .map_err(git_err(format!("reading the author of {id}")))?;
        let time = author
            .time()
            .map_err(git_err(format!("reading the time of {id}")))?;
        Ok(CommitInfo {
            id: id.to_string(),
            parents: commit.parent_ids().map(|p| p.to_string()).collect(),
            author_name: author.name.to_string(),
            author_email: author.email.to_string(),
            time: time.seconds,
            tz_offset: time.offset,
            message: commit.message_raw_sloppy().to_string(),
        })
    }

    /// All files of the tree of commit `rev`, with content and mode (submodules skipped).
    pub fn tree_files(&self, rev: &str) -> Result<TreeFiles, RepoError> {
        let id = self.resolve(rev)?;
        self.commit_tree_files(id)
    }

    fn commit_tree_files(&self, id: gix::ObjectId) -> Result<TreeFiles, RepoError> {
        let commit = self
            .repo
            .find_commit(id)
            .map_err(git_err(format!("reading commit {id}")))?;
        let tree = commit
            .tree()
            .map_err(git_err(format!("reading the tree of {id}")))?;
        let entries = tree
            .traverse()
            .breadthfirst
            .files()
            .map_err(git_err(format!("listing the tree of {id}")))?;
        let mut files = TreeFiles::new();
        for entry in entries {
            let mode = if entry.mode.is_link() {
                MODE_SYMLINK
            } else if entry.mode.is_executable() {
                MODE_EXECUTABLE
            } else if entry.mode.is_blob() {
                MODE_FILE
            } else {
                continue; // trees are listed too; submodules (commits) are not files
            };
            let blob = self
                .repo
                .find_object(entry.oid)
                .map_err(git_err(format!("reading blob {}", entry.oid)))?;
            files.insert(
                entry.filepath.to_string(),
                crate::patch::FileState {
                    content: blob.data.clone(),
                    mode,
                },
            );
        }
        Ok(files)
    }

    /// The diff of commit `rev` against its first parent (against the empty tree for a
    /// root commit).
    pub fn commit_diff(&self, rev: &str) -> Result<Patch, RepoError> {
        let id = self.resolve(rev)?;
        let commit = self
            .repo
            .find_commit(id)
            .map_err(git_err(format!("reading commit {id}")))?;
        let new = self.commit_tree_files(id)?;
        let old = match commit.parent_ids().next() {
            Some(parent) => self.commit_tree_files(parent.detach())?,
            None => TreeFiles::new(),
        };
        Ok(diff_file_maps(&old, &new))
    }

    /// The diff from revision `old` to revision `new`.
    pub fn diff_revs(&self, old: &str, new: &str) -> Result<Patch, RepoError> {
        let old = self.tree_files(old)?;
        let new = self.tree_files(new)?;
        Ok(diff_file_maps(&old, &new))
    }

    /// The diff from `HEAD` to the worktree: tracked files as they are on disk, plus
    /// untracked files that `.gitignore` (and `.git/info/exclude`) do not exclude.
    /// A repository without commits diffs against the empty tree.
    pub fn diff_worktree(&self) -> Result<Patch, RepoError> {
        let head = match self.resolve("HEAD") {
            Ok(id) => self.commit_tree_files(id)?,
            Err(RepoError::BadRevision { .. }) => TreeFiles::new(),
            Err(e) => return Err(e),
        };
        let mut current = TreeFiles::new();
        // Tracked files are compared even when ignored.
        for path in head.keys() {
            if let Some(state) = read_worktree_file(&self.workdir, path)? {
                current.insert(path.clone(), state);
            }
        }
        for path in untracked_candidates(&self.workdir)? {
            if !current.contains_key(&path)
                && let Some(state) = read_worktree_file(&self.workdir, &path)?
            {
                current.insert(path, state);
            }
        }
        Ok(diff_file_maps(&head, &current))
    }
}

/// The patch turning the file map `old` into `new`, file by file in path order.
pub fn diff_file_maps(old: &TreeFiles, new: &TreeFiles) -> Patch {
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    let side = |files: &'_ TreeFiles, path: &'_ String| -> Option<(String, Vec<u8>, u32)> {
        files
            .get(path)
            .map(|s| (path.clone(), s.content.clone(), s.mode))
    };
    let files = paths
        .into_iter()
        .filter_map(|path| {
            let (o, n) = (side(old, path), side(new, path));
            let os = o.as_ref().map(|(p, c, m)| FileSide {
                path: p,
                content: c,
                mode: *m,
            });
            let ns = n.as_ref().map(|(p, c, m)| FileSide {
                path: p,
                content: c,
                mode: *m,
            });
            FilePatch::from_contents(os, ns)
        })
        .collect();
    Patch { files }
}

/// A worktree file's content and mode; `None` if it is gone or is a directory.
fn read_worktree_file(
    root: &Path,
    path: &str,
) -> Result<Option<crate::patch::FileState>, RepoError> {
    use std::os::unix::fs::PermissionsExt as _;
    let full = root.join(path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&full)(e)),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full).map_err(io_err(&full))?;
        return Ok(Some(crate::patch::FileState {
            content: target.as_os_str().as_encoded_bytes().to_vec(),
            mode: MODE_SYMLINK,
        }));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let content = std::fs::read(&full).map_err(io_err(&full))?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        MODE_EXECUTABLE
    } else {
        MODE_FILE
    };
    Ok(Some(crate::patch::FileState { content, mode }))
}

/// Every non-ignored file under `root` (outside `.git`), as `/`-separated relative paths.
fn untracked_candidates(root: &Path) -> Result<Vec<String>, RepoError> {
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .parents(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| RepoError::Walk(e.to_string()))?;
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if let Some(rel) = rel.to_str() {
            out.push(rel.to_owned());
        }
    }
    Ok(out)
}
