//! The submit tool: the injector's artifact check (both spellings) and the solver's
//! two kinds of submission, as the JSON convention the agent loop reads.

use crate::support::{Repo, err_kind, host, ok};
use ssr_toolhost::Role;

#[test]
fn injector_needs_all_five_files_non_empty() {
    let repo = Repo::new(&[
        ("test_script.sh", "pytest -rA\n"),
        ("test_files.txt", "tests/test_a.py\n"),
        ("parse_test_output.py", "print('{}')\n"),
        ("bug_inject.diff", "diff --git a/x b/x\n"),
        ("test_weaken.diff", ""),
    ]);
    let h = host();
    let e = repo.episode(Role::Injector);
    let r = h.call(&e, "submit", "{}", Default::default()).unwrap();
    let msg = r.result.as_ref().unwrap_err();
    assert_eq!(msg.kind(), "not-found");
    assert!(msg.message().contains("test_weaken.diff is empty"), "{msg}");
    std::fs::write(repo.path().join("test_weaken.diff"), "diff --git a/t b/t\n").unwrap();
    let r = h.call(&e, "submit", "{}", Default::default()).unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&r)).unwrap();
    assert_eq!(v["ssr_submit"]["role"], "injector");
    assert_eq!(
        v["ssr_submit"]["files"]["test_parser.py"],
        "parse_test_output.py"
    );
}

#[test]
fn injector_reports_every_missing_file() {
    let repo = Repo::new(&[("art/test_script.sh", "x")]);
    let h = host();
    let r = h
        .call(
            &repo.episode(Role::Injector),
            "submit",
            r#"{"directory":"art"}"#,
            Default::default(),
        )
        .unwrap();
    let e = r.result.unwrap_err();
    for name in [
        "test_files.txt",
        "test_parser.py",
        "bug_inject.diff",
        "test_weaken.diff",
    ] {
        assert!(e.message().contains(name), "{e}");
    }
}

#[test]
fn solver_submits_the_workspace_diff_or_a_patch_file() {
    let repo = Repo::new(&[
        ("fix.patch", "diff --git a/x b/x\n--- a/x\n+++ b/x\n"),
        ("notes.txt", "hello"),
    ]);
    let h = host();
    let e = repo.episode(Role::Solver);
    let plain: serde_json::Value =
        serde_json::from_str(ok(&h.call(&e, "submit", "", Default::default()).unwrap())).unwrap();
    assert_eq!(plain["ssr_submit"]["kind"], "workspace_diff");
    let patch: serde_json::Value = serde_json::from_str(ok(&h
        .call(
            &e,
            "submit",
            r#"{"patch_file":"fix.patch"}"#,
            Default::default(),
        )
        .unwrap()))
    .unwrap();
    assert_eq!(patch["ssr_submit"]["path"], "fix.patch");
    assert_eq!(
        err_kind(
            &h.call(
                &e,
                "submit",
                r#"{"patch_file":"notes.txt"}"#,
                Default::default()
            )
            .unwrap()
        ),
        "invalid-arguments"
    );
    assert_eq!(
        err_kind(
            &h.call(&e, "submit", r#"{"directory":"."}"#, Default::default())
                .unwrap()
        ),
        "invalid-arguments"
    );
}
