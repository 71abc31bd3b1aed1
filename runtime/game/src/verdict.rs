//! The judgement on one self-play bug as a run records it: valid or not, why, where the
//! bug came from and which tests it breaks. Stored by [`crate::bug_store::BugStore`] as
//! `<bug>/verdict.json`; a run's resume and its rejection counts read it back.
//!
//! Owns: the [`Verdict`] type, its JSON form and its derivation from a
//! [`VerificationReport`]. Does not own: the checks (`verify`), the higher-order rules
//! (`higher_order`), or where the file lives (`bug_store`).

use crate::report::VerificationReport;
use serde::{Deserialize, Serialize};

/// Where a bug came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BugSource {
    Model,
    Procedural,
    HigherOrder,
}

/// The judgement on a bug, stored as `<bug>/verdict.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub bug_id: String,
    pub source: BugSource,
    pub valid: bool,
    /// Why it was rejected (the first failing check), when it was.
    pub reason: Option<String>,
    /// A short machine-friendly code of the reason (for rejection counts): a verifier
    /// [`crate::RejectCode`] in its snake_case spelling, or one of the run's own codes
    /// (`not_submitted`, `artifact_unreadable`, `procedural_none`, `higher_order_*`).
    pub reason_code: Option<String>,
    /// 1 for first-order bugs, 2 for higher-order ones.
    pub order: u8,
    pub fail_to_pass: Vec<String>,
    pub pass_to_pass: Vec<String>,
    pub verify_ms: u64,
}

impl Verdict {
    /// A bug rejected before or outside verification.
    pub fn rejected(
        bug_id: &str,
        source: BugSource,
        code: &str,
        reason: impl Into<String>,
    ) -> Self {
        Verdict {
            bug_id: bug_id.into(),
            source,
            valid: false,
            reason: Some(reason.into()),
            reason_code: Some(code.into()),
            order: 1,
            fail_to_pass: Vec::new(),
            pass_to_pass: Vec::new(),
            verify_ms: 0,
        }
    }

    /// The verdict a verification report gives.
    pub fn of_report(bug_id: &str, source: BugSource, order: u8, r: &VerificationReport) -> Self {
        Verdict {
            bug_id: bug_id.to_string(),
            source,
            valid: r.valid,
            reason: r.reason.clone(),
            // The code's one spelling is its serde name (report.json writes the same).
            reason_code: r
                .code
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(str::to_string)),
            order,
            fail_to_pass: r.fail_to_pass.clone(),
            pass_to_pass: r.pass_to_pass.clone(),
            verify_ms: r.wall_ms,
        }
    }

    /// Whether the verification could not run (the sandbox or the host failed,
    /// [`crate::RejectCode::Infra`]): no verdict on the artifact, so no reward for
    /// its injector.
    pub fn is_infra(&self) -> bool {
        !self.valid
            && self.reason_code.as_deref()
                == serde_json::to_value(crate::RejectCode::Infra)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
    }
}
