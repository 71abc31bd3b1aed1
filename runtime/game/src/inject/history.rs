//! History candidates: revert the code hunks of a past commit on top of the current
//! code (commits whose message mentions a fix or a bug first), whole when it applies,
//! else file by file, and, where a file's revert no longer applies as a whole, the
//! hunks of it that still do.
//!
//! Why the hunk-level candidates: a history rebuilt from releases bumps a version
//! string in a code file at every release (`__version__ = ...` in a single-module
//! package), so every older release's revert of that file conflicts at the current
//! code on that one line, while its real changes still apply.
//!
//! Reads history with `ssr-repo` (gix): the log and each commit's diff against its
//! parent; nothing of the repository is executed and no `git` program runs.
//!
//! Does not own: weakening or verification (the pipeline in `inject`).

use super::scripts::Framework;
use regex::Regex;
use ssr_repo::patch::{FileSide, MODE_FILE};
use ssr_repo::{FileBody, FilePatch, Patch, Repo, RepoError};
use std::collections::BTreeMap;
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
/// one entry for the whole commit and then one per file when there are several; then
/// the parts that still apply to the repository's files where those do not (see
/// [`still_applying`]).
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
        out.extend(code.iter().map(|f| {
            Patch {
                files: vec![f.clone()],
            }
            .to_string()
        }));
    }
    for extra in still_applying(repo, &code) {
        if !out.contains(&extra) {
            out.push(extra);
        }
    }
    Ok(out)
}

/// The repository's current content of the files `patch` touches (absent files are
/// left out, so a patch modifying one fails to apply as it would in a workspace).
fn current_files(repo: &Path, patch: &Patch) -> BTreeMap<String, Vec<u8>> {
    patch
        .touched_paths()
        .into_iter()
        .filter_map(|t| std::fs::read(repo.join(&t.path)).ok().map(|b| (t.path, b)))
        .collect()
}

fn applies(repo: &Path, patch: &Patch) -> bool {
    patch
        .apply_to_files(&mut current_files(repo, patch))
        .is_ok()
}

/// For a file revert that no longer applies to the current code: the diff of its
/// hunks that still apply, taken one after another, written afresh from the current
/// content (so its line numbers are right). `None` when none applies, for files that
/// are created, deleted or renamed, and for binary changes.
fn applying_hunks(repo: &Path, file: &FilePatch) -> Option<FilePatch> {
    let (Some(old), Some(new)) = (&file.old_path, &file.new_path) else {
        return None;
    };
    let FileBody::Text(hunks) = &file.body else {
        return None;
    };
    if old != new {
        return None;
    }
    let current = std::fs::read(repo.join(old)).ok()?;
    let mut content = current.clone();
    for hunk in hunks {
        let one = Patch {
            files: vec![FilePatch {
                index: None,
                body: FileBody::Text(vec![hunk.clone()]),
                ..file.clone()
            }],
        };
        let mut files = BTreeMap::from([(old.clone(), content.clone())]);
        if one.apply_to_files(&mut files).is_ok()
            && let Some(next) = files.remove(old)
        {
            content = next;
        }
    }
    let side = |content| FileSide {
        path: old,
        content,
        mode: file.new_mode.unwrap_or(MODE_FILE),
    };
    FilePatch::from_contents(Some(side(&current)), Some(side(&content)))
}

/// The revert's parts that still apply where the revert itself does not: per file
/// whose revert fails, the hunks of it that apply; and when the whole revert fails,
/// every file's applying part together (when that spans several files).
fn still_applying(repo: &Path, code: &[FilePatch]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut out = Vec::new();
    for f in code {
        let alone = Patch {
            files: vec![f.clone()],
        };
        if applies(repo, &alone) {
            parts.push(f.clone());
        } else if let Some(p) = applying_hunks(repo, f) {
            out.push(
                Patch {
                    files: vec![p.clone()],
                }
                .to_string(),
            );
            parts.push(p);
        }
    }
    let whole = Patch {
        files: code.to_vec(),
    };
    if parts.len() > 1 && !applies(repo, &whole) {
        let together = Patch { files: parts };
        if applies(repo, &together) {
            out.push(together.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::Step;

    /// A single-module package as rebuilt from releases: every release bumps
    /// `__version__` at the top of the module, so the revert of release 2 conflicts at
    /// release 3 on that line; the change to `add` it made still reverts.
    #[test]
    fn a_release_revert_keeps_its_hunks_that_apply_past_a_version_bump() {
        let body = |version: &str, add: &str| {
            format!(
                "__version__ = \"{version}\"\n\nimport os\nimport sys\nimport re\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef add(a, b):\n    {add}\n"
            )
        };
        let release = |version: &'static str, add: &'static str| -> Step<'static> {
            (
                format!("Release calc {version}"),
                Box::new(move |dir: &Path| {
                    std::fs::write(dir.join("calc.py"), body(version, add))
                        .map_err(|e| e.to_string())
                }),
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("calc");
        crate::examples::create_from_steps(
            &repo,
            vec![
                release("1.0", "return a - b"),
                release("1.1", "return a + b"),
                release("1.2", "return a + b"),
            ],
        )
        .unwrap();
        let commits = commits(&repo).unwrap();
        let fix = commits.iter().find(|c| c.subject.ends_with("1.1")).unwrap();
        let diffs = revert_diffs(&repo, Framework::Pytest, fix).unwrap();
        // The whole revert (one file) conflicts on the version line...
        assert!(!applies(&repo, &Patch::parse(&diffs[0]).unwrap()));
        // ...and the hunks that apply make the second candidate: the bug comes back,
        // the current version stays.
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        let part = Patch::parse(&diffs[1]).unwrap();
        let mut files = current_files(&repo, &part);
        part.apply_to_files(&mut files).unwrap();
        let text = String::from_utf8(files.remove("calc.py").unwrap()).unwrap();
        assert!(text.contains("__version__ = \"1.2\""), "{text}");
        assert!(text.contains("def add(a, b):\n    return a - b"), "{text}");
    }
}
