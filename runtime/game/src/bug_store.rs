//! How a bug is stored on disk: `<dir>/<bug id>/` with the five artifact files,
//! `report.json` (the `VerificationReport`) and `bug.json` ([`BugMeta`]: where it
//! came from). `ssr inject` writes this layout, `ssr evaluate` and `ssr export`
//! read it; so does a self-play run directory's `bugs/`.
//!
//! `bug.json`: `{"id", "strategy": "history" | "removal" | null, "seed": u64 | null,
//! "candidate", "repo" (name), "repo_path", "base_commit" (HEAD when the repository
//! is a git repository, else null), "framework": "pytest" | "cargo" | null}`.
//!
//! Does not own: the meaning of the files (`artifact`, `report`).

use crate::artifact::{Artifact, ArtifactError};
use crate::report::VerificationReport;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const REPORT_JSON: &str = "report.json";
pub const BUG_JSON: &str = "bug.json";

/// Provenance of a stored bug.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BugMeta {
    pub id: String,
    pub strategy: Option<String>,
    pub seed: Option<u64>,
    pub candidate: String,
    pub repo: String,
    pub repo_path: String,
    pub base_commit: Option<String>,
    pub framework: Option<String>,
}

/// A bug read back from disk.
#[derive(Clone, Debug)]
pub struct StoredBug {
    pub dir: PathBuf,
    pub artifact: Artifact,
    pub report: VerificationReport,
    pub meta: BugMeta,
}

/// Why a stored bug could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// HEAD of the git repository at `repo`, when it is one.
pub fn head_commit(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes `<root>/<meta.id>/`.
pub fn write(
    root: &Path,
    artifact: &Artifact,
    report: &VerificationReport,
    meta: &BugMeta,
) -> Result<PathBuf, StoreError> {
    let dir = root.join(&meta.id);
    artifact.write_dir(&dir)?;
    for (name, value) in [
        (REPORT_JSON, serde_json::to_string_pretty(report)),
        (BUG_JSON, serde_json::to_string_pretty(meta)),
    ] {
        let path = dir.join(name);
        let text = value.map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| StoreError::Io { path, source })?;
    }
    Ok(dir)
}

/// Reads one stored bug.
pub fn read(dir: &Path) -> Result<StoredBug, StoreError> {
    let artifact = Artifact::read_dir(dir)?;
    let load = |name: &str| -> Result<String, StoreError> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| StoreError::Io { path, source })
    };
    let report = serde_json::from_str(&load(REPORT_JSON)?).map_err(|source| StoreError::Json {
        path: dir.join(REPORT_JSON),
        source,
    })?;
    let meta = serde_json::from_str(&load(BUG_JSON)?).map_err(|source| StoreError::Json {
        path: dir.join(BUG_JSON),
        source,
    })?;
    Ok(StoredBug {
        dir: dir.to_path_buf(),
        artifact,
        report,
        meta,
    })
}

/// Every subdirectory of `root` that holds a `bug.json`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|source| StoreError::Io {
            path: root.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(BUG_JSON).is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// A SWE-bench instance (one JSON line of `ssr export swebench`). As in the
/// SWE-bench dataset, `FAIL_TO_PASS` and `PASS_TO_PASS` are JSON-encoded lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweBenchInstance {
    pub instance_id: String,
    pub repo: String,
    /// HEAD of the original repository. The buggy starting state of the task is
    /// `base_commit` + [`SweBenchInstance::setup_patch`]: SWE-bench's own instances
    /// start at a buggy commit; here the bug is a patch, so it is shipped with it.
    pub base_commit: String,
    /// Bug + weakening, to apply to `base_commit` before the task starts.
    pub setup_patch: String,
    /// The fix: the reversed bug diff (applies to the buggy state).
    pub patch: String,
    /// The tests: the reversed weakening diff.
    pub test_patch: String,
    pub problem_statement: String,
    #[serde(rename = "FAIL_TO_PASS")]
    pub fail_to_pass: String,
    #[serde(rename = "PASS_TO_PASS")]
    pub pass_to_pass: String,
}

impl StoredBug {
    /// The SWE-bench instance of a valid bug (`None` for a rejected one).
    pub fn swebench(&self) -> Result<Option<SweBenchInstance>, crate::patch_ops::PatchError> {
        if !self.report.valid {
            return Ok(None);
        }
        let enc = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        Ok(Some(SweBenchInstance {
            instance_id: format!("{}__{}", self.meta.repo, self.meta.id),
            repo: self.meta.repo.clone(),
            base_commit: self.meta.base_commit.clone().unwrap_or_default(),
            setup_patch: format!("{}{}", self.artifact.bug_inject, self.artifact.test_weaken),
            patch: crate::patch_ops::reverse(&self.artifact.bug_inject)?,
            test_patch: crate::patch_ops::reverse(&self.artifact.test_weaken)?,
            problem_statement: crate::episode::task_text(&self.artifact)?,
            fail_to_pass: enc(&self.report.fail_to_pass),
            pass_to_pass: enc(&self.report.pass_to_pass),
        }))
    }
}
