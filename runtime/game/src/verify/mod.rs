//! The verifier: the seven consistency checks of `SSR_SPEC.md` section 3 in order,
//! the first failure rejecting the artifact, with every test run in a fresh
//! workspace (a copy-on-write snapshot of the original repository) executed in the
//! sandbox.
//!
//! Concurrency: the original runs (two, for the flakiness check) run together, and
//! the runs of checks 5, 6 and 7 (bug; bug + weakening; one per changed file with
//! that file restored) all run together on a bounded set of scoped threads; the
//! checks are then judged in order on the results. Set `VerifyConfig::parallel` to
//! false for the one-after-another baseline (`ssr bench verify` compares both).
//!
//! Files: `files` (check 1's file checks), `checks` (the seven checks in order, one
//! function each, judged on the runs, and the trusted-parser cross-check), `runner`
//! (building each state's workspace and running states, concurrently or not); this
//! file holds the [`Verifier`] and the report.
//!
//! Does not own: the test-run mechanics (`testrun`), patch text (`patch_ops`), or
//! what happens to a valid bug next (`evaluate`, `episode`).

mod checks;
mod files;
mod runner;

pub use runner::{RepoState, prepare_state};

use crate::artifact::Artifact;
use crate::config::VerifyConfig;
use crate::report::{Check, CheckResult, RejectCode, VerificationReport};
use crate::workspace::WorkspaceBase;
use ssr_sandbox::Sandbox;
use std::path::Path;
use std::time::Instant;

/// Checks bug artifacts against an original repository.
pub struct Verifier<'a> {
    sandbox: &'a dyn Sandbox,
    cfg: VerifyConfig,
}

struct Rejection {
    check: Check,
    code: RejectCode,
    reason: String,
}

fn reject(check: Check, code: RejectCode, reason: impl Into<String>) -> Rejection {
    Rejection {
        check,
        code,
        reason: reason.into(),
    }
}

fn list(ids: &[String], max: usize) -> String {
    let mut s: Vec<&str> = ids.iter().take(max).map(String::as_str).collect();
    if ids.len() > max {
        s.push("…");
    }
    s.join(", ")
}

impl<'a> Verifier<'a> {
    pub fn new(sandbox: &'a dyn Sandbox, cfg: VerifyConfig) -> Self {
        Verifier { sandbox, cfg }
    }

    pub fn config(&self) -> &VerifyConfig {
        &self.cfg
    }

    /// Verifies `artifact` against the repository at `original`.
    pub fn verify(&self, original: &Path, artifact: &Artifact) -> VerificationReport {
        let t0 = Instant::now();
        let mut report = VerificationReport {
            valid: false,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: Vec::new(),
            pass_to_pass: Vec::new(),
            log_format: None,
            parallel: self.cfg.parallel,
            wall_ms: 0,
            notes: Vec::new(),
        };
        let outcome = WorkspaceBase::new(original, &self.cfg)
            .map_err(|e| {
                reject(
                    Check::Files,
                    RejectCode::Infra,
                    format!("preparing workspaces of the original repository: {e}"),
                )
            })
            .and_then(|base| self.checks(&base, artifact, &mut report));
        if let Err(r) = outcome {
            report.checks.push(CheckResult {
                check: r.check,
                passed: false,
                code: Some(r.code),
                reason: r.reason.clone(),
                ms: 0,
            });
            report.rejected_by = Some(r.check);
            report.code = Some(r.code);
            report.reason = Some(r.reason);
            report.fail_to_pass.clear();
            report.pass_to_pass.clear();
        } else {
            report.valid = true;
        }
        // The failing check's time is the time since the previous check ended.
        let accounted: u64 = report.checks.iter().map(|c| c.ms).sum();
        let wall = t0.elapsed().as_millis() as u64;
        if let Some(last) = report.checks.last_mut()
            && !last.passed
        {
            last.ms = wall.saturating_sub(accounted);
        }
        report.wall_ms = wall;
        report
    }
}
