//! Fresh workspaces for test runs: a copy-on-write snapshot of the original
//! repository (without its `.git`), plus the patch and restore steps that build each
//! state the game runs (original, bug, bug + weakening, one file restored).
//!
//! Why snapshots: every run must start from the original, never from a workspace a
//! test already ran in. `ssr-repo`'s [`SnapshotBase`] gives each run its own writable
//! tree by the cheapest method the host allows (an overlayfs mount, else reflinked
//! files, else a parallel copy); one [`WorkspaceBase`] per repository is probed once
//! and serves every run of a verification. `.git` is hidden from every snapshot, so
//! code under test cannot read the original from history.
//!
//! Does not own: running anything in the workspace (that is `testrun`), or the
//! snapshot mechanics (`ssr-repo`).

use crate::config::VerifyConfig;
use crate::patch_ops::{self, PatchError};
use ssr_repo::snapshot::{Snapshot, SnapshotBase, SnapshotError, SnapshotMethod, sweep_stale};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a workspace could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Patch {
        what: String,
        #[source]
        source: PatchError,
    },
    #[error("making a snapshot of the repository: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// The original repository as the base of fresh workspaces.
#[derive(Debug)]
pub struct WorkspaceBase {
    original: PathBuf,
    snapshots: SnapshotBase,
}

/// Scratch directories already swept of snapshots left by killed processes.
static SWEPT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

impl WorkspaceBase {
    /// Prepares snapshots of `original` under [`VerifyConfig::scratch_dir`] (the
    /// system's temporary directory when unset). The first use of a scratch directory
    /// in a process removes snapshots that killed processes left there.
    pub fn new(original: &Path, cfg: &VerifyConfig) -> Result<WorkspaceBase, WorkspaceError> {
        let scratch = cfg.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
        let first = SWEPT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scratch.clone());
        if first {
            // Best effort: a sweep that fails leaves the stale directories in place.
            let _ = sweep_stale(&scratch);
        }
        let snapshots = SnapshotBase::new(original, &scratch)?.hiding(hidden_of(original))?;
        Ok(WorkspaceBase {
            original: original.to_path_buf(),
            snapshots,
        })
    }

    /// How this base's workspaces are made.
    pub fn method(&self) -> SnapshotMethod {
        self.snapshots.method()
    }

    /// The original repository.
    pub fn original(&self) -> &Path {
        &self.original
    }

    /// A new workspace holding the original (without `.git`).
    pub fn fresh(&self) -> Result<Workspace, WorkspaceError> {
        Ok(Workspace {
            snapshot: self.snapshots.snapshot()?,
        })
    }
}

/// A private writable tree of a repository; unmounted and deleted on drop.
#[derive(Debug)]
pub struct Workspace {
    snapshot: Snapshot,
}

impl Workspace {
    /// A workspace holding `original` (without `.git`); for one-off use. Many runs of
    /// one repository should share a [`WorkspaceBase`].
    pub fn fresh(original: &Path, cfg: &VerifyConfig) -> Result<Workspace, WorkspaceError> {
        WorkspaceBase::new(original, cfg)?.fresh()
    }

    pub fn path(&self) -> &Path {
        self.snapshot.path()
    }

    /// How the tree was made.
    pub fn method(&self) -> SnapshotMethod {
        self.snapshot.method()
    }

    /// Applies a diff (all or nothing), naming `what` in the error.
    pub fn apply(&self, what: &str, diff: &str) -> Result<(), WorkspaceError> {
        patch_ops::apply(self.path(), diff).map_err(|source| WorkspaceError::Patch {
            what: format!("applying {what}"),
            source,
        })
    }

    /// Puts `rel` back as it is in `original`: copied when it exists there, removed
    /// when it does not (the bug added it).
    pub fn restore(&self, original: &Path, rel: &str) -> Result<(), WorkspaceError> {
        let src = original.join(rel);
        let dst = self.path().join(rel);
        let err = |source| WorkspaceError::Copy {
            from: src.clone(),
            to: dst.clone(),
            source,
        };
        if src.symlink_metadata().is_ok() {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            if dst.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&dst).map_err(err)?;
            }
            copy_entry(&src, &dst).map_err(err)?;
        } else if let Ok(m) = dst.symlink_metadata() {
            if m.is_dir() {
                std::fs::remove_dir_all(&dst).map_err(err)?;
            } else {
                std::fs::remove_file(&dst).map_err(err)?;
            }
        }
        Ok(())
    }
}

/// What a workspace of `original` leaves out: `.git` always (code under test must not
/// read the original from history) and, for a cargo project, its `target/` build
/// cache. Cargo decides freshness by file times, so a cache built from other code, or
/// with times ahead of the files a run patches or restores (check 7 puts back a file
/// older than the cache), makes cargo run a stale binary and gives a wrong verdict;
/// and a solver must not get the original's build artifacts. Every run builds the
/// state it tests.
fn hidden_of(original: &Path) -> &'static [&'static str] {
    if original.join("Cargo.toml").is_file() {
        &[".git", "target"]
    } else {
        &[".git"]
    }
}

fn copy_entry(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = src.symlink_metadata()?;
    if dst.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(dst)?;
    }
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}
