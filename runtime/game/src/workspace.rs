//! Fresh workspaces for test runs: a copy of the original repository (without
//! `.git`) in a temporary directory that is removed when dropped, plus the patch and
//! restore steps that build each state the game runs (original, bug, bug + weakening,
//! one file restored).
//!
//! Why a plain copy: every run must start from the original, never from a workspace
//! a test already ran in; the repositories the game plays on are small, and a copy
//! is the one method that works on every filesystem. `ssr-repo`'s copy-on-write
//! snapshots can replace [`Workspace::fresh`] without changing callers.
//!
//! Does not own: running anything in the workspace (that is `testrun`).

use crate::config::VerifyConfig;
use crate::patch_ops::{self, PatchError};
use std::path::{Path, PathBuf};

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
    #[error("creating a temporary directory: {0}")]
    Temp(#[source] std::io::Error),
}

/// A temporary copy of a repository; deleted on drop.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Copies `original` (everything but `.git`) into a new temporary directory.
    pub fn fresh(original: &Path, cfg: &VerifyConfig) -> Result<Workspace, WorkspaceError> {
        let dir = cfg.temp_dir("ssr-ws-").map_err(WorkspaceError::Temp)?;
        copy_tree(original, dir.path(), &|rel| rel == Path::new(".git"))?;
        Ok(Workspace { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Applies a diff, naming `what` in the error.
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

fn copy_entry(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = src.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src)?;
        if dst.symlink_metadata().is_ok() {
            std::fs::remove_file(dst)?;
        }
        std::os::unix::fs::symlink(target, dst)
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}

/// Copies the tree under `src` into `dst` (which exists), skipping entries whose path
/// relative to `src` satisfies `skip`. Symlinks are copied as links, never followed.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<(), WorkspaceError> {
    fn walk(
        root: &Path,
        dir: &Path,
        dst_root: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> Result<(), WorkspaceError> {
        let err = |p: &Path, source| WorkspaceError::Copy {
            from: p.to_path_buf(),
            to: dst_root.to_path_buf(),
            source,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(dir, e))?;
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("walk stays under root");
            if skip(rel) {
                continue;
            }
            let target = dst_root.join(rel);
            let ft = entry.file_type().map_err(|e| err(&path, e))?;
            if ft.is_dir() {
                std::fs::create_dir_all(&target).map_err(|e| err(&path, e))?;
                walk(root, &path, dst_root, skip)?;
            } else {
                copy_entry(&path, &target).map_err(|e| err(&path, e))?;
            }
        }
        Ok(())
    }
    walk(src, src, dst, skip)
}
