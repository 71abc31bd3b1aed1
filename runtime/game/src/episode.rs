//! The solver episode (`SSR_SPEC.md` section 4): the history-free buggy workspace,
//! the task text, and the paths the solver may only read, as data for the agent and
//! the tool host.
//!
//! The workspace is original + bug + weakening (+ a higher-order patch), with no
//! `.git` from the original, a fresh single-commit repository (fixed identity and
//! date, so nothing about the original leaks through timestamps), and build
//! leftovers that could hold the original code removed. The state is built in a
//! snapshot of the original (`workspace`), then `ssr-repo`'s `history_free_copy`
//! writes it to the destination and commits it once with gix (no `git` program).
//!
//! Does not own: running the solver (the agent), enforcing read-only paths (the tool
//! host and sandbox do, from [`SolverEpisode::read_only_paths`]), or scoring.

use crate::artifact::Artifact;
use crate::config::{EpisodeConfig, VerifyConfig};
use crate::patch_ops;
use crate::protected::{GlobError, ProtectedSet, globset};
use crate::workspace::{WorkspaceBase, WorkspaceError};
use globset::GlobSet;
use serde::{Deserialize, Serialize};
use ssr_repo::copy::{CopyError, CopyOptions, history_free_copy};
use std::path::{Path, PathBuf};

/// The fixed task template; the reversed weakening follows in a diff block.
pub const TASK_TEMPLATE: &str = "The test suite of this project is being improved with the changes below. \
The current code does not pass the improved tests. Fix the code so that it does, and keep the \
relevant existing tests passing. The tests themselves must not be changed.";

/// Everything the agent needs to run one solver episode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolverEpisode {
    /// The buggy, history-free repository.
    pub workspace: PathBuf,
    /// The task given to the solver.
    pub task: String,
    /// Files (relative) that every tool must treat as read-only: the oracle files and
    /// the test infrastructure found in the workspace.
    pub read_only_paths: Vec<String>,
    /// The globs that produced the infrastructure part of `read_only_paths`; tools
    /// also refuse creating new files that match them.
    pub protected_globs: Vec<String>,
}

/// Why an episode could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("the destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),
    #[error(transparent)]
    Glob(#[from] GlobError),
    #[error("{0}")]
    Patch(#[from] patch_ops::PatchError),
    #[error("writing the history-free repository: {0}")]
    Copy(#[from] CopyError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The task text for an artifact: the template and the reversed weakening.
pub fn task_text(artifact: &Artifact) -> Result<String, patch_ops::PatchError> {
    let reversed = patch_ops::reverse(&artifact.test_weaken)?;
    Ok(format!(
        "{TASK_TEMPLATE}\n\n```diff\n{}```\n",
        ensure_newline(&reversed)
    ))
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// Removes files and directories under `root` whose relative path matches `set`.
fn remove_matching(root: &Path, dir: &Path, set: &GlobSet) -> Result<(), EpisodeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EpisodeError::Io { path, source }
    };
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap_or(&p);
        let ft = e.file_type().map_err(io(&p))?;
        if rel == Path::new(".git") {
            continue;
        }
        if set.is_match(rel) {
            if ft.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io(&p))?;
            } else {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        } else if ft.is_dir() {
            remove_matching(root, &p, set)?;
        }
    }
    Ok(())
}

/// Collects the files under `root` (hidden directories included, `.git` excluded)
/// whose relative path matches `set`.
fn collect_matching(root: &Path, dir: &Path, set: &ProtectedSet, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(rel) = p.strip_prefix(root) else {
            continue;
        };
        if rel == Path::new(".git") {
            continue;
        }
        match e.file_type() {
            Ok(ft) if ft.is_dir() => collect_matching(root, &p, set, out),
            Ok(_) if set.is_infrastructure(&rel.to_string_lossy()) => {
                out.push(rel.to_string_lossy().into_owned())
            }
            _ => {}
        }
    }
}

/// Builds the solver's workspace in `dest` (created; must be empty if it exists).
pub fn build_episode(
    original: &Path,
    artifact: &Artifact,
    higher_order_patch: Option<&str>,
    cfg: &EpisodeConfig,
    dest: &Path,
) -> Result<SolverEpisode, EpisodeError> {
    if dest.exists()
        && std::fs::read_dir(dest)
            .map_err(|source| EpisodeError::Io {
                path: dest.to_path_buf(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(EpisodeError::DestinationNotEmpty(dest.to_path_buf()));
    }
    std::fs::create_dir_all(dest).map_err(|source| EpisodeError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    // Build the buggy state in a snapshot, then copy it out as a fresh repository.
    let base = WorkspaceBase::new(original, &VerifyConfig::default())?;
    let staging = base.fresh()?;
    let apply = |what: &str, diff: &str| staging.apply(what, diff).map_err(EpisodeError::Workspace);
    apply("bug_inject.diff", &artifact.bug_inject)?;
    apply("test_weaken.diff", &artifact.test_weaken)?;
    if let Some(ho) = higher_order_patch {
        apply("the higher-order patch", ho)?;
    }
    remove_matching(
        staging.path(),
        staging.path(),
        &globset(&cfg.leftover_globs)?,
    )?;
    history_free_copy(
        staging.path(),
        dest,
        &CopyOptions {
            // Leftovers are already gone, by the configured globs.
            exclude: Vec::new(),
            message: "Initial commit".into(),
        },
    )?;
    drop(staging);

    // Read-only: the oracle files and the test infrastructure present (the same
    // protected set the evaluator drops from patches).
    let protected = ProtectedSet::new(&artifact.test_files, &cfg.protected_globs)?;
    let mut read_only: Vec<String> = protected.oracle().cloned().collect();
    let mut found = Vec::new();
    collect_matching(dest, dest, &protected, &mut found);
    for f in found {
        if !read_only.contains(&f) {
            read_only.push(f);
        }
    }
    read_only.sort();
    Ok(SolverEpisode {
        workspace: dest.to_path_buf(),
        task: task_text(artifact)?,
        read_only_paths: read_only,
        protected_globs: cfg.protected_globs.clone(),
    })
}
