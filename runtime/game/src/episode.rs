//! The solver episode (`SSR_SPEC.md` section 4): the history-free buggy workspace,
//! the task text, and the paths the solver may only read, as data for the agent and
//! the tool host.
//!
//! The workspace is original + bug + weakening (+ a higher-order patch), with no
//! `.git` from the original, a fresh single-commit repository (fixed identity and
//! date, so nothing about the original leaks through timestamps), and build
//! leftovers that could hold the original code removed.
//!
//! Does not own: running the solver (the agent), enforcing read-only paths (the tool
//! host and sandbox do, from [`SolverEpisode::read_only_paths`]), or scoring.

use crate::artifact::{Artifact, check_repo_path};
use crate::config::EpisodeConfig;
use crate::patch_ops;
use crate::workspace::{WorkspaceError, copy_tree};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    #[error("invalid glob `{glob}`: {error}")]
    Glob { glob: String, error: String },
    #[error("{0}")]
    Patch(#[from] patch_ops::PatchError),
    #[error("git {args}: {error}")]
    Git { args: String, error: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn globset(globs: &[String]) -> Result<GlobSet, EpisodeError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| EpisodeError::Glob {
            glob: g.clone(),
            error: e.to_string(),
        })?;
        b.add(glob);
        // `**/x` should also match `x` at the root.
        if let Some(rest) = g.strip_prefix("**/") {
            b.add(Glob::new(rest).map_err(|e| EpisodeError::Glob {
                glob: g.clone(),
                error: e.to_string(),
            })?);
        }
    }
    b.build().map_err(|e| EpisodeError::Glob {
        glob: globs.join(","),
        error: e.to_string(),
    })
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

fn git(dir: &Path, args: &[&str]) -> Result<(), EpisodeError> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=ssr",
            "-c",
            "user.email=ssr@localhost",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap_or(dir))
        .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z")
        .output()
        .map_err(|e| EpisodeError::Git {
            args: args.join(" "),
            error: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EpisodeError::Git {
            args: args.join(" "),
            error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
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
fn collect_matching(root: &Path, dir: &Path, set: &GlobSet, out: &mut Vec<String>) {
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
            Ok(_) if set.is_match(rel) => out.push(rel.to_string_lossy().into_owned()),
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
    copy_tree(original, dest, &|rel| rel == Path::new(".git"))?;
    patch_ops::apply(dest, &artifact.bug_inject)?;
    patch_ops::apply(dest, &artifact.test_weaken)?;
    if let Some(ho) = higher_order_patch {
        patch_ops::apply(dest, ho)?;
    }
    remove_matching(dest, dest, &globset(&cfg.leftover_globs)?)?;
    git(dest, &["init", "-q"])?;
    git(dest, &["add", "-A"])?;
    git(
        dest,
        &["commit", "-q", "--allow-empty", "-m", "Initial commit"],
    )?;

    let mut read_only: Vec<String> = Vec::new();
    for f in &artifact.test_files {
        let f = check_repo_path(f).map_err(patch_ops::PatchError::from)?;
        if !read_only.contains(&f) {
            read_only.push(f);
        }
    }
    let protected = globset(&cfg.protected_globs)?;
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
