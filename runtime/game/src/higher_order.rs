//! Higher-order bugs (`SSR_SPEC.md` section 6): a failed solver patch applied on top
//! of its buggy state becomes a new bug with the same oracle. Checked lightly: file
//! sections touching oracle files or test infrastructure (the evaluator's protected
//! set) are dropped, the rest must apply, at least one test of `P`
//! must still fail; orders are capped at 2, and duplicates (same patch hash on the
//! same parent bug) are refused.
//!
//! Does not own: the evaluation run itself (`evaluate`).

use crate::artifact::Artifact;
use crate::evaluate::{BugState, EvalOutcome, Evaluator};
use crate::patch_ops;
use crate::report::VerificationReport;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;

/// Highest order a bug may have **[decision]**: no bug is made from failures on a
/// higher-order bug.
pub const MAX_ORDER: u8 = 2;

/// A bug of order 2: the parent's artifact and oracle plus a failed solver patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HigherOrderBug {
    pub order: u8,
    /// The failed solver patch without its oracle-file sections.
    pub patch: String,
    /// sha256 of the parent's bug diff and the filtered patch.
    pub hash: String,
    /// Tests of `P` that fail with the patch.
    pub still_failing: Vec<String>,
}

impl HigherOrderBug {
    /// Its own verification report: valid, `F` the tests of `P` the patch leaves
    /// failing, `P \ F` the rest, the parent's log format and its scan notes (the
    /// artifact and its bug diff are the parent's); no checks or runs of its own, as
    /// the evaluation that made it is its verification. `wall_ms`: how long that took.
    pub fn report(&self, parent: &VerificationReport, wall_ms: u64) -> VerificationReport {
        let still: BTreeSet<&String> = self.still_failing.iter().collect();
        VerificationReport {
            valid: true,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: self.still_failing.clone(),
            pass_to_pass: parent
                .all_tests()
                .into_iter()
                .filter(|t| !still.contains(t))
                .collect(),
            log_format: parent.log_format,
            parallel: parent.parallel,
            wall_ms,
            notes: parent.notes.clone(),
        }
    }
}

/// Why a failed attempt did not become a higher-order bug.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HigherOrderRejection {
    #[error("the parent bug has order {order}; orders are capped at {MAX_ORDER}")]
    OrderCap { order: u8 },
    #[error("nothing is left of the patch once its oracle-file hunks are dropped")]
    EmptyAfterFiltering,
    #[error("the same patch was already turned into a bug (hash {hash})")]
    Duplicate { hash: String },
    #[error("the patch does not apply to the buggy state: {error}")]
    DoesNotApply { error: String },
    #[error("the patch makes every test of P pass: it is a fix, not a bug")]
    NothingFails,
    #[error("the patched state could not be run: {error}")]
    RunFailed { error: String },
}

impl HigherOrderRejection {
    /// The rejection's code: its serde tag (`kind`), the spelling its JSON has.
    pub fn code(&self) -> &'static str {
        match self {
            HigherOrderRejection::OrderCap { .. } => "order_cap",
            HigherOrderRejection::EmptyAfterFiltering => "empty_after_filtering",
            HigherOrderRejection::Duplicate { .. } => "duplicate",
            HigherOrderRejection::DoesNotApply { .. } => "does_not_apply",
            HigherOrderRejection::NothingFails => "nothing_fails",
            HigherOrderRejection::RunFailed { .. } => "run_failed",
        }
    }
}

/// Remembers the hashes of the higher-order bugs made so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct HigherOrderPool {
    seen: BTreeSet<String>,
}

impl HigherOrderPool {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Tries to turn `failed_patch`, a solver attempt on a bug of order
    /// `parent_order`, into a higher-order bug.
    pub fn make(
        &mut self,
        evaluator: &Evaluator<'_>,
        original: &Path,
        parent: &Artifact,
        parent_order: u8,
        tests: &[String],
        failed_patch: &str,
    ) -> Result<HigherOrderBug, HigherOrderRejection> {
        if parent_order >= MAX_ORDER {
            return Err(HigherOrderRejection::OrderCap {
                order: parent_order,
            });
        }
        let protected =
            evaluator
                .protected_set(parent)
                .map_err(|e| HigherOrderRejection::RunFailed {
                    error: e.to_string(),
                })?;
        let (filtered, _dropped) =
            patch_ops::drop_sections(failed_patch, |f| f.paths().any(|p| protected.contains(p)))
                .map_err(|e| HigherOrderRejection::DoesNotApply {
                    error: e.to_string(),
                })?;
        if filtered.trim().is_empty() {
            return Err(HigherOrderRejection::EmptyAfterFiltering);
        }
        let mut h = Sha256::new();
        h.update(parent.bug_inject.as_bytes());
        h.update([0u8]);
        h.update(filtered.as_bytes());
        let hash = hex::encode(h.finalize());
        if self.seen.contains(&hash) {
            return Err(HigherOrderRejection::Duplicate { hash });
        }
        // The new state is the parent's plus the patch; with the oracle restored, at
        // least one test of P must still fail. That is exactly evaluating the patch.
        let eval = evaluator.evaluate(
            original,
            BugState {
                artifact: parent,
                higher_order_patch: None,
                tests,
            },
            &filtered,
        );
        match eval.outcome {
            EvalOutcome::TestsFailing { .. } => {
                self.seen.insert(hash.clone());
                let mut still_failing = eval.failing;
                still_failing.extend(eval.missing);
                still_failing.sort();
                Ok(HigherOrderBug {
                    order: parent_order + 1,
                    patch: filtered,
                    hash,
                    still_failing,
                })
            }
            EvalOutcome::Solved => Err(HigherOrderRejection::NothingFails),
            EvalOutcome::DoesNotApply { error } => {
                Err(HigherOrderRejection::DoesNotApply { error })
            }
            EvalOutcome::EmptyPatch => Err(HigherOrderRejection::EmptyAfterFiltering),
            EvalOutcome::TimedOut { error }
            | EvalOutcome::RunFailed { error }
            | EvalOutcome::Infra { error } => Err(HigherOrderRejection::RunFailed { error }),
            // A patch that forged its run is not a bug anyone should inherit.
            EvalOutcome::Tampered { notes } => Err(HigherOrderRejection::RunFailed {
                error: format!("the run was tampered with: {}", notes.join("; ")),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejections_code_is_its_json_kind() {
        let all = [
            HigherOrderRejection::OrderCap { order: 2 },
            HigherOrderRejection::EmptyAfterFiltering,
            HigherOrderRejection::Duplicate { hash: "h".into() },
            HigherOrderRejection::DoesNotApply { error: "e".into() },
            HigherOrderRejection::NothingFails,
            HigherOrderRejection::RunFailed { error: "e".into() },
        ];
        for r in all {
            let json = serde_json::to_value(&r).expect("serializes");
            assert_eq!(json["kind"], r.code(), "{r:?}");
        }
    }

    #[test]
    fn a_higher_order_bugs_report_keeps_p_and_names_what_still_fails() {
        let parent = VerificationReport {
            valid: true,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: vec!["t1".into(), "t2".into()],
            pass_to_pass: vec!["t3".into(), "t4".into()],
            log_format: Some(crate::trusted::LogFormat::Pytest),
            parallel: true,
            wall_ms: 500,
            notes: vec!["a note".into()],
        };
        let bug = HigherOrderBug {
            order: 2,
            patch: "--- a/x\n".into(),
            hash: "h".into(),
            still_failing: vec!["t2".into()],
        };
        let r = bug.report(&parent, 7);
        assert!(r.valid && r.code.is_none() && r.checks.is_empty());
        assert_eq!(r.fail_to_pass, ["t2"]);
        assert_eq!(r.pass_to_pass, ["t1", "t3", "t4"]);
        // The evaluator of its attempts sees the parent's P and log format.
        assert_eq!(r.all_tests(), parent.all_tests());
        assert_eq!(
            (r.log_format, r.parallel, r.wall_ms),
            (parent.log_format, true, 7)
        );
        assert_eq!(r.notes, parent.notes);
    }
}
