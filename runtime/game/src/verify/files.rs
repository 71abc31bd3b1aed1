//! Check 1 (files): the oracle files exist in the original, the weakening touches
//! only them, the bug touches none of them, and both diffs apply.
//!
//! Does not own: reading diffs (`patch_ops`), or the later checks (`checks`).

use super::runner::{RepoState, prepare_from};
use super::{Rejection, Verifier, list, reject};
use crate::artifact::{Artifact, check_repo_path};
use crate::patch_ops;
use crate::report::{Check, RejectCode};
use crate::workspace::WorkspaceBase;
use std::collections::BTreeSet;

impl Verifier<'_> {
    /// Check 1; returns the files the bug changes (sorted).
    pub(super) fn check_files(
        &self,
        base: &WorkspaceBase,
        artifact: &Artifact,
    ) -> Result<Vec<String>, Rejection> {
        let c = Check::Files;
        if artifact.test_files.is_empty() {
            return Err(reject(
                c,
                RejectCode::NoTestFiles,
                "test_files.txt lists no file",
            ));
        }
        let original = base.original();
        let mut oracle = BTreeSet::new();
        let canon_root = original.canonicalize().map_err(|e| {
            reject(
                c,
                RejectCode::TestFileMissing,
                format!("original repository: {e}"),
            )
        })?;
        for raw in &artifact.test_files {
            let rel = check_repo_path(raw).map_err(|e| {
                reject(
                    c,
                    RejectCode::PathOutsideRepo,
                    format!("test_files.txt: {e}"),
                )
            })?;
            let full = original.join(&rel);
            let meta = full.symlink_metadata();
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(reject(
                    c,
                    RejectCode::TestFileMissing,
                    format!(
                        "test file `{rel}` does not exist as a regular file in the original repository"
                    ),
                ));
            }
            // A directory symlink on the way could still lead out of the repository.
            let inside = full
                .canonicalize()
                .is_ok_and(|p| p.starts_with(&canon_root));
            if !inside {
                return Err(reject(
                    c,
                    RejectCode::PathOutsideRepo,
                    format!("test file `{rel}` resolves outside the repository"),
                ));
            }
            oracle.insert(rel);
        }
        let diff_paths = |name: &str, text: &str| {
            patch_ops::touched_paths(text).map_err(|e| match e {
                patch_ops::PatchError::BadPath(p) => {
                    reject(c, RejectCode::PathOutsideRepo, format!("{name}: {p}"))
                }
                other => reject(c, RejectCode::MalformedDiff, format!("{name}: {other}")),
            })
        };
        let weak = diff_paths("test_weaken.diff", &artifact.test_weaken)?;
        let bug = diff_paths("bug_inject.diff", &artifact.bug_inject)?;
        let unlisted: Vec<String> = weak.difference(&oracle).cloned().collect();
        if !unlisted.is_empty() {
            return Err(reject(
                c,
                RejectCode::WeakenTouchesUnlisted,
                format!(
                    "test_weaken.diff touches files not in test_files.txt: {}",
                    list(&unlisted, 5)
                ),
            ));
        }
        let clash: Vec<String> = bug
            .iter()
            .filter(|p| oracle.contains(*p) || weak.contains(*p))
            .cloned()
            .collect();
        if !clash.is_empty() {
            return Err(reject(
                c,
                RejectCode::BugTouchesTests,
                format!(
                    "bug_inject.diff touches oracle test files: {}",
                    list(&clash, 5)
                ),
            ));
        }
        // Both diffs must apply cleanly: the bug to the original, the weakening on top.
        prepare_from(base, artifact, &RepoState::BugWeakened)
            .map_err(|e| reject(c, RejectCode::DiffDoesNotApply, e))?;
        Ok(bug.into_iter().collect())
    }
}
