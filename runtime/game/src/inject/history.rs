//! History candidates: revert the code hunks of a past commit on top of the current
//! code (commits whose message mentions a fix or a bug first), whole when it applies,
//! else file by file.
//!
//! Reads history with `ssr-repo` (gix): the log and each commit's diff against its
//! parent; nothing of the repository is executed and no `git` program runs.
//!
//! Does not own: weakening or verification (the pipeline in `inject`).

use super::scripts::Framework;
use regex::Regex;
use ssr_repo::{Patch, Repo, RepoError};
use std::path::Path;
use std::sync::LazyLock;

/// A past commit of the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastCommit {
    pub id: String,
    pub subject: String,
}

impl PastCommit {
    /// True when the message says it fixes a bug.
    pub fn is_fix(&self) -> bool {
        static FIX: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)\b(fix(es|ed)?|bug(fix)?)\b").unwrap());
        FIX.is_match(&self.subject)
    }
}

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading the history of {repo}: {source}")]
    Repo {
        repo: String,
        #[source]
        source: RepoError,
    },
}

fn open(repo: &Path) -> Result<Repo, HistoryError> {
    Repo::open(repo).map_err(|source| HistoryError::Repo {
        repo: repo.display().to_string(),
        source,
    })
}

/// Non-merge commits that have a parent, newest first.
pub fn commits(repo: &Path) -> Result<Vec<PastCommit>, HistoryError> {
    let r = open(repo)?;
    let log = r.log("HEAD", None).map_err(|source| HistoryError::Repo {
        repo: repo.display().to_string(),
        source,
    })?;
    Ok(log
        .into_iter()
        .filter(|c| c.parents.len() == 1)
        .map(|c| PastCommit {
            subject: c.summary().to_string(),
            id: c.id,
        })
        .collect())
}

/// The diff that undoes `commit`'s changes to code files (as judged by `framework`),
/// one entry for the whole commit and then one per file when there are several.
pub fn revert_diffs(
    repo: &Path,
    framework: Framework,
    commit: &PastCommit,
) -> Result<Vec<String>, HistoryError> {
    let r = open(repo)?;
    let parent = format!("{}^", commit.id);
    let revert = r
        .diff_revs(&commit.id, &parent)
        .map_err(|source| HistoryError::Repo {
            repo: repo.display().to_string(),
            source,
        })?;
    let code: Vec<_> = revert
        .files
        .into_iter()
        .filter(|f| f.paths().all(|p| framework.is_code_file(p)))
        .collect();
    let mut out = Vec::new();
    if code.is_empty() {
        return Ok(out);
    }
    let whole = Patch {
        files: code.clone(),
    };
    out.push(whole.to_string());
    if code.len() > 1 {
        out.extend(
            code.into_iter()
                .map(|f| Patch { files: vec![f] }.to_string()),
        );
    }
    Ok(out)
}
