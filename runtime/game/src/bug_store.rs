//! How a bug is stored on disk: `<dir>/<bug id>/` with the five artifact files,
//! `report.json` (the bug's own `VerificationReport`) and `bug.json` ([`BugMeta`]:
//! where it came from). `ssr inject` writes this layout, `ssr evaluate` and `ssr export`
//! read it; so does a self-play run directory's `bugs/`, through [`BugStore`], which
//! adds a self-play run's files: `higher_order.diff` (the failed patch a higher-order
//! bug starts from), `attempts/<episode>.diff` (each solver attempt's patch) and, for a
//! bug rejected before there was anything to verify, `verdict.json` (the [`Verdict`]);
//! for a store on an image, `image.json` (`image::ImageMeta`) with every bug.
//!
//! Each verdict is stored once: a verified bug's verdict is its report (valid or not,
//! why, which tests it breaks) with its source and order, derived on reading
//! ([`Bug::verdict`]); only a rejection without a report (no submission, an unreadable
//! artifact, a procedural injector that found nothing, a failed higher-order bug) is
//! written as `verdict.json`. A bug directory appears whole: [`BugStore::write`] fills
//! a hidden temporary directory and renames it, so a resumed run trusts any bug it
//! finds.
//!
//! Owns: every path of that layout and every write to it; nobody else builds a path
//! inside a bug directory.
//!
//! `bug.json`: `{"id", "strategy": "history" | "removal" | null, "seed": u64 | null,
//! "candidate", "repo" (name), "repo_path", "base_commit" (HEAD when the repository
//! is a git repository, else null), "framework": "pytest" | "cargo" | null,
//! "source": "model" | "procedural" | "higher_order" (absent in files written before
//! it was recorded: `ssr inject`'s, procedural)}`.
//!
//! Does not own: the meaning of the files (`artifact`, `report`).

use crate::artifact::{Artifact, ArtifactError};
use crate::image::ImageMeta;
use crate::report::VerificationReport;
use crate::verdict::{BugSource, Verdict};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const REPORT_JSON: &str = "report.json";
pub const BUG_JSON: &str = "bug.json";
/// The verdict on a self-play bug rejected without a report.
pub const VERDICT_JSON: &str = "verdict.json";
/// A higher-order bug's failed patch, next to its parent's artifact.
pub const HIGHER_ORDER_PATCH: &str = "higher_order.diff";
/// Solver attempts' patches, one `<episode>.diff` each.
pub const ATTEMPTS_DIR: &str = "attempts";

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
    /// Who made it; `None` in a `bug.json` written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BugSource>,
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
    #[error("bug {0}: a valid verdict is stored with its bug, never alone")]
    ValidWithoutBug(String),
    #[error("recording the bug's image: {0}")]
    Image(String),
}

/// A bug in memory: what a self-play round keeps from its making to its last
/// attempt, and what [`BugStore`] writes and reads back.
#[derive(Clone, Debug, PartialEq)]
pub struct Bug {
    pub artifact: Artifact,
    pub report: VerificationReport,
    pub meta: BugMeta,
    /// For a higher-order bug: the failed patch applied on top of the artifact's bug.
    pub higher_order_patch: Option<String>,
}

impl Bug {
    /// 2 for a higher-order bug, 1 otherwise.
    pub fn order(&self) -> u8 {
        if self.higher_order_patch.is_some() {
            2
        } else {
            1
        }
    }

    /// The bug's true fix when it is known: for a first-order procedural bug, the
    /// reversed bug patch (what patch-similarity shaping compares attempts with).
    /// `None` for model and higher-order bugs, and for a bug patch that cannot be
    /// reversed.
    pub fn true_fix(&self) -> Option<String> {
        let procedural = self.meta.source.unwrap_or(BugSource::Procedural) == BugSource::Procedural;
        if !procedural || self.order() != 1 {
            return None;
        }
        crate::patch_ops::reverse(&self.artifact.bug_inject).ok()
    }

    /// The verdict on this bug: its own report, with its source and order. A bug with
    /// no recorded source was written by `ssr inject` (procedural) before sources were
    /// recorded.
    pub fn verdict(&self) -> Verdict {
        let source = self.meta.source.unwrap_or(BugSource::Procedural);
        Verdict::of_report(&self.meta.id, source, self.order(), &self.report)
    }
}

/// What the store holds on a judged bug id: the bug (its verdict is its report), or a
/// rejection that had no bug to store.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    // Boxed: a bug (artifact, report) is large next to a rejection's verdict.
    Made(Box<Bug>),
    Rejected(Verdict),
}

impl Judgement {
    pub fn verdict(&self) -> Verdict {
        match self {
            Judgement::Made(bug) => bug.verdict(),
            Judgement::Rejected(v) => v.clone(),
        }
    }
}

/// The bugs of one self-play run (`<run>/bugs/`): the one owner of their layout.
#[derive(Clone, Debug)]
pub struct BugStore {
    root: PathBuf,
    /// The image every bug of the store is made on (written as `image.json` with each
    /// bug, for `ssr export swebench`).
    image: Option<ImageMeta>,
}

impl BugStore {
    /// A store rooted at `root` (created when first written to).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BugStore {
            root: root.into(),
            image: None,
        }
    }

    /// The same store, its bugs recorded as made on `image` (when one is given).
    pub fn on_image(mut self, image: Option<ImageMeta>) -> Self {
        self.image = image;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where bug `id` lives (for messages and for tools that read a stored bug).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Stores a bug (its artifact, report, provenance and higher-order patch), whole
    /// or not at all: written under a hidden name, then renamed into place (a killed
    /// run leaves no half bug that a resumed one would take for judged).
    pub fn write(&self, bug: &Bug) -> Result<PathBuf, StoreError> {
        let id = &bug.meta.id;
        let staging = self.root.join(format!(".{id}.tmp"));
        remove_dir(&staging)?;
        write_into(&staging, &bug.artifact, &bug.report, &bug.meta)?;
        if let Some(patch) = &bug.higher_order_patch {
            let path = staging.join(HIGHER_ORDER_PATCH);
            std::fs::write(&path, patch).map_err(|source| StoreError::Io { path, source })?;
        }
        if let Some(image) = &self.image {
            image
                .write_to(&staging)
                .map_err(|e| StoreError::Image(e.to_string()))?;
        }
        let dir = self.dir(id);
        remove_dir(&dir)?;
        std::fs::rename(&staging, &dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Reads bug `id` back.
    pub fn read(&self, id: &str) -> Result<Bug, StoreError> {
        Self::read_dir(&self.dir(id))
    }

    /// Reads back the bug stored in `dir`, a bug directory of any store (one
    /// `list` returned, or one a user named), without rebuilding its store from
    /// the path.
    pub fn read_dir(dir: &Path) -> Result<Bug, StoreError> {
        let stored = read(dir)?;
        let path = dir.join(HIGHER_ORDER_PATCH);
        let higher_order_patch = read_optional(&path)?;
        Ok(Bug {
            artifact: stored.artifact,
            report: stored.report,
            meta: stored.meta,
            higher_order_patch,
        })
    }

    /// Stores the verdict on a bug rejected without a report (atomically: a resumed run
    /// trusts it). A verified bug's verdict is its report: store the bug instead.
    pub fn write_rejection(&self, verdict: &Verdict) -> Result<(), StoreError> {
        if verdict.valid {
            return Err(StoreError::ValidWithoutBug(verdict.bug_id.clone()));
        }
        let dir = self.dir(&verdict.bug_id);
        create_dir(&dir)?;
        let path = dir.join(VERDICT_JSON);
        let text = serde_json::to_string_pretty(verdict).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        let tmp = dir.join(format!(".{VERDICT_JSON}.tmp"));
        std::fs::write(&tmp, text).map_err(|source| StoreError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| StoreError::Io { path, source })
    }

    /// What the store holds on bug `id`, read once; `None` when it was never judged.
    pub fn judgement(&self, id: &str) -> Result<Option<Judgement>, StoreError> {
        let dir = self.dir(id);
        let path = dir.join(VERDICT_JSON);
        if let Some(text) = read_optional(&path)? {
            let v =
                serde_json::from_str(&text).map_err(|source| StoreError::Json { path, source })?;
            return Ok(Some(Judgement::Rejected(v)));
        }
        if !dir.join(BUG_JSON).is_file() {
            return Ok(None);
        }
        self.read(id)
            .map(|bug| Some(Judgement::Made(Box::new(bug))))
    }

    /// The verdict on bug `id`; `None` when the bug was never judged.
    pub fn verdict(&self, id: &str) -> Result<Option<Verdict>, StoreError> {
        Ok(self.judgement(id)?.map(|j| j.verdict()))
    }

    /// Stores the patch of solver attempt `episode_id` on bug `bug_id`.
    pub fn write_attempt(
        &self,
        bug_id: &str,
        episode_id: &str,
        patch: &str,
    ) -> Result<(), StoreError> {
        let dir = self.dir(bug_id).join(ATTEMPTS_DIR);
        create_dir(&dir)?;
        let path = dir.join(format!("{episode_id}.diff"));
        std::fs::write(&path, patch).map_err(|source| StoreError::Io { path, source })
    }

    /// The stored patch of solver attempt `episode_id` on bug `bug_id`, if any.
    pub fn attempt(&self, bug_id: &str, episode_id: &str) -> Result<Option<String>, StoreError> {
        read_optional(
            &self
                .dir(bug_id)
                .join(ATTEMPTS_DIR)
                .join(format!("{episode_id}.diff")),
        )
    }

    /// Removes whatever a judgement of bug `id` cut short left behind.
    pub fn clear(&self, id: &str) -> Result<(), StoreError> {
        remove_dir(&self.root.join(format!(".{id}.tmp")))?;
        remove_dir(&self.dir(id))
    }
}

/// Removes `dir` and everything in it; nothing to do when it does not exist.
fn remove_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// A file's text, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// HEAD of the git repository at `repo`, when it is one.
pub fn head_commit(repo: &Path) -> Option<String> {
    ssr_repo::Repo::open(repo).ok()?.head_id().ok()
}

/// Writes `<root>/<meta.id>/`.
pub fn write(
    root: &Path,
    artifact: &Artifact,
    report: &VerificationReport,
    meta: &BugMeta,
) -> Result<PathBuf, StoreError> {
    let dir = root.join(&meta.id);
    write_into(&dir, artifact, report, meta)?;
    Ok(dir)
}

/// Writes one bug's files into `dir`.
fn write_into(
    dir: &Path,
    artifact: &Artifact,
    report: &VerificationReport,
    meta: &BugMeta,
) -> Result<(), StoreError> {
    artifact.write_dir(dir)?;
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
    Ok(())
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
        // Hidden: a bug being written (`BugStore::write`'s staging directory).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::BugSource;

    fn bug(id: &str, higher_order_patch: Option<&str>) -> Bug {
        Bug {
            artifact: Artifact {
                test_script: "pytest -rA\n".into(),
                test_files: vec!["tests/test_a.py".into()],
                test_parser: "print('{}')\n".into(),
                bug_inject: "--- a/a.py\n+++ b/a.py\n".into(),
                test_weaken: "--- a/tests/test_a.py\n+++ b/tests/test_a.py\n".into(),
            },
            report: VerificationReport {
                valid: true,
                rejected_by: None,
                code: None,
                reason: None,
                checks: Vec::new(),
                runs: Vec::new(),
                fail_to_pass: vec!["t1".into()],
                pass_to_pass: vec!["t2".into()],
                log_format: None,
                parallel: false,
                wall_ms: 3,
                notes: Vec::new(),
            },
            meta: BugMeta {
                id: id.into(),
                strategy: None,
                seed: Some(1),
                candidate: "test".into(),
                repo: "r".into(),
                repo_path: "/r".into(),
                base_commit: None,
                framework: None,
                source: Some(BugSource::Model),
            },
            higher_order_patch: higher_order_patch.map(str::to_string),
        }
    }

    #[test]
    fn only_first_order_procedural_bugs_have_a_known_fix() {
        let mut b = bug("p", None);
        b.artifact.bug_inject = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n".into();
        b.meta.source = Some(BugSource::Procedural);
        let fix = b.true_fix().unwrap();
        assert!(
            fix.contains("-x = 2\n") && fix.contains("+x = 1\n"),
            "{fix}"
        );
        let model = Bug {
            meta: BugMeta {
                source: Some(BugSource::Model),
                ..b.meta.clone()
            },
            ..b.clone()
        };
        assert_eq!(model.true_fix(), None);
        let higher = Bug {
            higher_order_patch: Some("--- a/x\n".into()),
            ..b.clone()
        };
        assert_eq!(higher.true_fix(), None);
    }

    #[test]
    fn a_bug_reads_back_as_written_with_its_higher_order_patch() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path().join("bugs"));
        for b in [bug("b1", None), bug("b1-ho", Some("--- a/x\n"))] {
            store.write(&b).unwrap();
            assert_eq!(store.read(&b.meta.id).unwrap(), b);
        }
        assert_eq!(store.read("b1").unwrap().order(), 1);
        assert_eq!(store.read("b1-ho").unwrap().order(), 2);
        // The CLI's reader sees the same layout.
        assert_eq!(list(store.root()).unwrap().len(), 2);
    }

    #[test]
    fn a_listed_bug_directory_reads_back_without_its_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path().join("bugs"));
        let b = bug("b1-ho", Some("--- a/x\n"));
        store.write(&b).unwrap();
        let listed = list(store.root()).unwrap();
        assert_eq!(listed, [store.dir("b1-ho")]);
        assert_eq!(BugStore::read_dir(&listed[0]).unwrap(), b);
        // Regression: a path ending in `..` (or `.` itself) has no file name, so the
        // demos' old reader, which rebuilt the store from parent and file name, refused
        // it as "not a bug directory"; it names the bug directory all the same.
        std::fs::create_dir(store.dir("b1-ho").join("sub")).unwrap();
        let dotted = store.dir("b1-ho").join("sub").join("..");
        assert_eq!(dotted.file_name(), None);
        assert_eq!(BugStore::read_dir(&dotted).unwrap(), b);
    }

    #[test]
    fn rejections_and_attempts_are_stored_once_per_bug() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path());
        assert_eq!(store.verdict("b").unwrap(), None);
        assert_eq!(store.attempt("b", "b-sol0").unwrap(), None);
        let v = Verdict::rejected("b", BugSource::Model, "not_submitted", "no");
        store.write_rejection(&v).unwrap();
        assert_eq!(store.verdict("b").unwrap(), Some(v.clone()));
        assert_eq!(store.judgement("b").unwrap(), Some(Judgement::Rejected(v)));
        store.write_attempt("b", "b-sol0", "patch").unwrap();
        assert_eq!(
            store.attempt("b", "b-sol0").unwrap().as_deref(),
            Some("patch")
        );
        store.clear("b").unwrap();
        assert_eq!(store.verdict("b").unwrap(), None);
        store.clear("never-made").unwrap();
    }

    /// Regression: each verdict was stored twice, as `verdict.json` next to the
    /// `report.json` that already said valid or not, why, and which tests break.
    #[test]
    fn each_verdict_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path());
        let mut rejected = bug("r", None);
        rejected.report.valid = false;
        rejected.report.reason = Some("no test fails".into());
        for b in [bug("b1", None), bug("b1-ho", Some("--- a/x\n")), rejected] {
            let id = b.meta.id.clone();
            store.write(&b).unwrap();
            assert!(!store.dir(&id).join(VERDICT_JSON).exists(), "{id}");
            let v = store.verdict(&id).unwrap().unwrap();
            assert_eq!(v, b.verdict());
            assert_eq!(
                (v.valid, v.order, v.source),
                (b.report.valid, b.order(), BugSource::Model)
            );
            assert_eq!(v.fail_to_pass, b.report.fail_to_pass);
            assert_eq!(
                store.judgement(&id).unwrap(),
                Some(Judgement::Made(Box::new(b)))
            );
        }
        // A valid verdict alone would be a second record of a bug's report.
        let valid = bug("v", None).verdict();
        assert!(matches!(
            store.write_rejection(&valid),
            Err(StoreError::ValidWithoutBug(id)) if id == "v"
        ));
    }

    #[test]
    fn a_bug_cut_short_while_written_is_not_judged_and_clear_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path());
        let b = bug("b", None);
        // What a run killed inside `write` leaves: the staging directory, complete or
        // not; never `<id>/`.
        write_into(&dir.path().join(".b.tmp"), &b.artifact, &b.report, &b.meta).unwrap();
        assert_eq!(store.judgement("b").unwrap(), None);
        assert!(list(store.root()).unwrap().is_empty());
        store.clear("b").unwrap();
        assert!(!dir.path().join(".b.tmp").exists());
        // Writing over an earlier staging directory and an earlier bug replaces both.
        write_into(&dir.path().join(".b.tmp"), &b.artifact, &b.report, &b.meta).unwrap();
        store.write(&bug("b", Some("old"))).unwrap();
        store.write(&b).unwrap();
        assert_eq!(store.read("b").unwrap(), b);
        assert_eq!(list(store.root()).unwrap(), [store.dir("b")]);
    }

    #[test]
    fn a_corrupt_verdict_is_an_error_not_a_fresh_bug() {
        let dir = tempfile::tempdir().unwrap();
        let store = BugStore::new(dir.path());
        std::fs::create_dir_all(store.dir("b")).unwrap();
        std::fs::write(store.dir("b").join(VERDICT_JSON), "{").unwrap();
        assert!(matches!(store.verdict("b"), Err(StoreError::Json { .. })));
    }
}
