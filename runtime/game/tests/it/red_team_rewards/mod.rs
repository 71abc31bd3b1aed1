//! The red-team suite of rewards (`SSR_SPEC.md` section 11, issue 17): attacks that
//! forge a test run's result from inside the code under test, tried as a solver
//! patch that fixes nothing (each must score −1 in `evaluate`, with a note) and as
//! part of an injector's bug (each must be rejected by `verify`). pytest, unittest
//! and cargo test each (one module per framework); the true fix still scores +1 with
//! no scan finding.
//!
//! Every framework's runs are judged by the trusted reporter and its canaries
//! (`ssr_game::reporter`), the trusted log parser, the read-only tests, the
//! protected-file check and the patch scan. This module holds what the frameworks
//! share: the verified calc bug, the solver patch that carries an attack, and
//! [`attack_both_ways`].

mod cargo;
mod pytest;
pub(crate) mod pytest_attacks;
mod unittest;

use crate::fixture::{self, calc_repo, diff, good_artifact, test_config};
use ssr_game::{
    Artifact, BugState, EvalOutcome, Evaluation, Evaluator, RejectCode, VerificationReport,
    Verifier, VerifyConfig, patch_ops,
};
use std::path::Path;

const BUGGY: &str = "return a + b + 1";

/// The calc bug, verified; `P`.
pub(super) fn verified(
    repo: &Path,
    a: &Artifact,
    scratch: &Path,
) -> (Vec<String>, VerificationReport) {
    let r = Verifier::new(fixture::sandbox(), test_config(scratch)).verify(repo, a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    (r.all_tests(), r)
}

/// A solver patch against the buggy calc that keeps the bug and appends `attack`.
pub(super) fn solver_patch(attack: &str) -> String {
    let ws = tempfile::tempdir().unwrap();
    fixture::write_calc(ws.path());
    let buggy = fixture::OPS.replace("return a + b", BUGGY);
    std::fs::write(ws.path().join("calc/ops.py"), &buggy).unwrap();
    diff(
        ws.path(),
        &[("calc/ops.py", Some(&format!("{buggy}{attack}")))],
    )
}

pub(super) fn assert_minus_one_with_note(what: &str, e: &Evaluation) {
    assert_eq!(e.reward, Some(-1.0), "{what}: {}", e.summary());
    assert!(!e.solved, "{what}");
    assert!(!e.notes.is_empty(), "{what}: no note: {}", e.summary());
}

pub(super) fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Runs each attacked version of `module` as a solver patch against the buggy state
/// (`buggy`: −1 with a note) and as the bug itself (rejected), with scan findings
/// rejecting.
pub(super) fn attack_both_ways(
    repo: &Path,
    a: &Artifact,
    module: &str,
    buggy: &str,
    attacks: &[(&str, String)],
    scan_rejects: bool,
) {
    let scratch = tempfile::tempdir().unwrap();
    let base = test_config(scratch.path());
    attack_both_ways_in(base, repo, a, module, buggy, attacks, scan_rejects);
}

/// [`attack_both_ways`] with the settings `base` (a run environment with a build
/// cache, say).
pub(super) fn attack_both_ways_in(
    base: VerifyConfig,
    repo: &Path,
    a: &Artifact,
    module: &str,
    buggy: &str,
    attacks: &[(&str, String)],
    scan_rejects: bool,
) {
    let r = Verifier::new(fixture::sandbox(), base.clone()).verify(repo, a);
    assert!(r.valid, "{}", r.summary());
    let p = r.all_tests();
    let bug = BugState {
        artifact: a,
        higher_order_patch: None,
        tests: &p,
    };
    let strict = VerifyConfig {
        reject_tampering_findings: true,
        ..base.clone()
    };
    // A blocked rewrite leaves an ordinary bug: only the scan sees the attempt.
    let config_for = |what: &str| {
        if scan_rejects || *what == *"rewrite oracle files" {
            strict.clone()
        } else {
            base.clone()
        }
    };
    let ws = tempfile::tempdir().unwrap();
    copy_tree(repo, ws.path());
    std::fs::write(ws.path().join(module), buggy).unwrap();
    for (what, attack) in attacks {
        let patch = diff(ws.path(), &[(module, Some(attack))]);
        let e = Evaluator::new(fixture::sandbox(), config_for(what)).evaluate(repo, bug, &patch);
        eprintln!("{what}: {}", e.summary());
        assert_minus_one_with_note(what, &e);
        assert!(
            e.notes.iter().any(|n| n.starts_with("scan:")),
            "{what}: the scan missed it: {}",
            e.summary()
        );
        assert!(
            matches!(e.outcome, EvalOutcome::Tampered { .. }),
            "{what}: {}",
            e.summary()
        );
        let mut bad = a.clone();
        bad.bug_inject = diff(repo, &[(module, Some(attack))]);
        let r = Verifier::new(fixture::sandbox(), config_for(what)).verify(repo, &bad);
        assert!(!r.valid, "{what}: {}", r.summary());
        assert_eq!(
            r.code,
            Some(RejectCode::Tampered),
            "{what}: {}",
            r.summary()
        );
    }
    let fix = patch_ops::reverse(&a.bug_inject).unwrap();
    let e = Evaluator::new(fixture::sandbox(), strict).evaluate(repo, bug, &fix);
    assert!(e.solved, "{}", e.summary());
    assert!(e.notes.is_empty(), "{}", e.summary());
}
