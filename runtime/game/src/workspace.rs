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
//! Build caches: a base whose run environment holds prebuilt caches of its repository
//! (`build_cache`) gives every workspace its own copy-on-write layer over the full
//! cache ([`build_layer`]: `testrun` mounts it as the run's `CARGO_TARGET_DIR`, and
//! places the cargo canaries compiled into the cache),
//! and stamps every file the workspace writes with a time newer than the cache
//! ([`Workspace::apply`], [`Workspace::restore`]).
//!
//! Does not own: running anything in the workspace (that is `testrun`), the snapshot
//! mechanics (`ssr-repo`), or building the caches (`build_cache`).

use crate::build_cache::{BuildCacheError, TargetBase, TargetLayer};
use crate::config::VerifyConfig;
use crate::patch_ops::{self, PatchError};
use ssr_repo::snapshot::{Snapshot, SnapshotBase, SnapshotError, SnapshotMethod, sweep_stale};
use ssr_sandbox::Mount;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

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
    /// Boxed: a build cache's error is large, and every error holding this one grows.
    #[error("{0}")]
    BuildCache(Box<BuildCacheError>),
    #[error("stamping {path} as written by the run: {source}")]
    Stamp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The original repository as the base of fresh workspaces.
#[derive(Debug)]
pub struct WorkspaceBase {
    original: PathBuf,
    snapshots: SnapshotBase,
    /// The full build cache of `original`, when the run environment has one.
    target: Option<TargetBase>,
    /// The secret of the cargo canaries compiled into it.
    canary_secret: Option<String>,
}

/// A live workspace's layer over a build cache, as a run uses it.
#[derive(Clone, Debug)]
pub struct BuildLayer {
    /// The read-write mount of the layer (the run's `CARGO_TARGET_DIR`).
    pub mount: Mount,
    /// The secret of the cargo canaries the cache holds (`reporter::cargo`).
    pub canary_secret: Option<String>,
}

/// Scratch directories already swept of snapshots left by killed processes.
static SWEPT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The build layer of every live workspace that has one, by the workspace's path:
/// `testrun` is handed a workspace's path only (by every caller: verify, evaluate,
/// the injectors, doctor), and finds the layer to mount here.
static LAYERS: Mutex<BTreeMap<PathBuf, BuildLayer>> = Mutex::new(BTreeMap::new());

/// `workspace`'s private build layer, when it has one: a run over `workspace` mounts
/// it and sets [`crate::build_cache::TARGET_VAR`] to
/// [`crate::build_cache::TARGET_GUEST`].
pub fn build_layer(workspace: &Path) -> Option<BuildLayer> {
    LAYERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(workspace)
        .cloned()
}

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
        let cache = cfg
            .run_env
            .build_cache
            .as_ref()
            .filter(|c| c.serves(original));
        let target = match cache {
            Some(c) => TargetBase::open(&c.full, &scratch)
                // A cache only saves time: one that cannot be opened (removed from the
                // host cache meanwhile) leaves every run to build from nothing.
                .unwrap_or_else(|e| {
                    eprintln!("ssr: build cache not used: {e}");
                    None
                }),
            _ => None,
        };
        Ok(WorkspaceBase {
            original: original.to_path_buf(),
            snapshots,
            target,
            canary_secret: cache.and_then(|c| c.canary_secret.clone()),
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

    /// Whether this base's workspaces get a layer over a build cache.
    pub fn has_build_cache(&self) -> bool {
        self.target.is_some()
    }

    /// A new workspace holding the original (without `.git`), with its own layer over
    /// the build cache when there is one.
    pub fn fresh(&self) -> Result<Workspace, WorkspaceError> {
        let snapshot = self.snapshots.snapshot()?;
        let target = self
            .target
            .as_ref()
            .map(TargetBase::layer)
            .transpose()
            .map_err(|e| WorkspaceError::BuildCache(Box::new(e)))?;
        if let Some(t) = &target {
            LAYERS.lock().unwrap_or_else(|p| p.into_inner()).insert(
                snapshot.path().to_path_buf(),
                BuildLayer {
                    mount: t.mount(),
                    canary_secret: self.canary_secret.clone(),
                },
            );
        }
        Ok(Workspace {
            cache_newest: self.target.as_ref().map(TargetBase::newest),
            target,
            snapshot,
        })
    }
}

/// A private writable tree of a repository; unmounted and deleted on drop.
#[derive(Debug)]
pub struct Workspace {
    /// The private layer over the build cache. Declared before `snapshot`, so it is
    /// dropped (unmounted, removed) first.
    target: Option<TargetLayer>,
    snapshot: Snapshot,
    /// The newest file time of the build cache under `target`.
    cache_newest: Option<SystemTime>,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.target.is_some() {
            LAYERS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(self.snapshot.path());
        }
    }
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

    /// The layer over the build cache this workspace's runs build in, if any.
    pub fn build_layer(&self) -> Option<&TargetLayer> {
        self.target.as_ref()
    }

    /// Applies a diff (all or nothing), naming `what` in the error; every file it
    /// leaves is stamped as written now ([`Workspace::stamp`]).
    pub fn apply(&self, what: &str, diff: &str) -> Result<(), WorkspaceError> {
        let patch = |source| WorkspaceError::Patch {
            what: format!("applying {what}"),
            source,
        };
        patch_ops::apply(self.path(), diff).map_err(patch)?;
        if self.cache_newest.is_some() {
            for rel in patch_ops::touched_paths(diff).map_err(patch)? {
                self.stamp(&rel)?;
            }
        }
        Ok(())
    }

    /// Gives the file `rel` (when it is a regular file) a time newer than the build
    /// cache. Why explicitly: the cache was built from the original, and cargo rebuilds
    /// a unit only when a source is strictly newer than the unit's dep-info. A file
    /// written "now" is not reliably newer: a file system may keep whole seconds (a
    /// cache built in the same second), a copy may keep its source's old time, and a
    /// cache may come from a machine with another clock. A file the run wrote that
    /// looks older than the cache makes cargo run the original's binary: a wrong
    /// verdict. Without a cache there is nothing to be newer than.
    fn stamp(&self, rel: &str) -> Result<(), WorkspaceError> {
        let Some(newest) = self.cache_newest else {
            return Ok(());
        };
        let path = self.path().join(rel);
        if !path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let err = |source| WorkspaceError::Stamp {
            path: path.clone(),
            source,
        };
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .map_err(err)?;
        f.set_modified(crate::build_cache::written_time(newest))
            .map_err(err)
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
            self.stamp(rel)?;
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
/// state it tests, on its own layer over a cache ssr built from the original in the
/// sandbox (`build_cache`), never over the repository's own.
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
