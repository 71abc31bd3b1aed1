//! History candidates: revert the code hunks of a past commit on top of the current
//! code (commits whose message mentions a fix or a bug first), whole when it applies,
//! else file by file.
//!
//! Reads history with the `git` program (log and diff only: nothing of the
//! repository is executed).
//!
//! Does not own: weakening or verification (the pipeline in `inject`).

use super::scripts::Framework;
use crate::patch_ops;
use regex::Regex;
use std::path::Path;
use std::process::Command;
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
    #[error("`git {args}` failed in {repo}: {error}")]
    Git {
        repo: String,
        args: String,
        error: String,
    },
}

fn git(repo: &Path, args: &[&str]) -> Result<String, HistoryError> {
    let fail = |error: String| HistoryError::Git {
        repo: repo.display().to_string(),
        args: args.join(" "),
        error,
    };
    let out = Command::new("git")
        .args(["-c", "core.quotepath=off", "--no-pager"])
        .args(args)
        .current_dir(repo)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Non-merge commits that have a parent, newest first.
pub fn commits(repo: &Path) -> Result<Vec<PastCommit>, HistoryError> {
    let log = git(
        repo,
        &["log", "--no-merges", "--format=%H%x09%P%x09%s", "HEAD"],
    )?;
    Ok(log
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, '\t');
            let id = it.next()?.to_string();
            let parents = it.next()?;
            let subject = it.next().unwrap_or("").to_string();
            (!parents.trim().is_empty()).then_some(PastCommit { id, subject })
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
    let parent = format!("{}^", commit.id);
    let diff = git(
        repo,
        &[
            "diff",
            "--no-color",
            "--no-renames",
            "--no-ext-diff",
            &commit.id,
            &parent,
        ],
    )?;
    let Ok(files) = patch_ops::files(&diff) else {
        return Ok(Vec::new());
    };
    let code: Vec<_> = files
        .into_iter()
        .filter(|f| f.paths().all(|p| framework.is_code_file(p)))
        .collect();
    let mut out = Vec::new();
    if code.is_empty() {
        return Ok(out);
    }
    out.push(code.iter().map(|f| f.text.as_str()).collect::<String>());
    if code.len() > 1 {
        out.extend(code.iter().map(|f| f.text.clone()));
    }
    Ok(out)
}
