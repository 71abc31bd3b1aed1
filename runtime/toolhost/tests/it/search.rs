//! The search tool: regex, .gitignore, globs, caps, and its read-only grant.

use crate::support::{Repo, err_kind, host, ok};
use ssr_toolhost::Role;

#[test]
fn finds_matches_with_file_and_line() {
    let repo = Repo::new(&[
        ("src/a.py", "def f():\n    return 1\n"),
        ("src/b.rs", "fn f() {}\n"),
        ("README.md", "f is a function\n"),
    ]);
    let h = host();
    let r = h
        .call(
            &repo.episode(Role::Solver),
            "search",
            r#"{"pattern":"^def |^fn "}"#,
        )
        .unwrap();
    let text = ok(&r);
    assert!(text.contains("src/a.py:1: def f():"), "{text}");
    assert!(text.contains("src/b.rs:1: fn f() {}"), "{text}");
    assert!(!text.contains("README"), "{text}");
}

#[test]
fn respects_gitignore_and_globs() {
    let repo = Repo::new(&[
        (".gitignore", "build/\n"),
        ("build/gen.py", "needle\n"),
        ("src/a.py", "needle\n"),
        ("src/a.txt", "needle\n"),
        ("tests/test_a.py", "needle\n"),
    ]);
    let h = host();
    let e = repo.episode(Role::Injector);
    let all = h.call(&e, "search", r#"{"pattern":"needle"}"#).unwrap();
    let text = ok(&all);
    assert!(!text.contains("build/"), "gitignored file searched: {text}");
    assert!(text.contains("src/a.txt:1"), "{text}");
    let py = h
        .call(
            &e,
            "search",
            r#"{"pattern":"needle","include":["*.py"],"exclude":["tests/**"]}"#,
        )
        .unwrap();
    assert_eq!(ok(&py).trim(), "src/a.py:1: needle");
    let sub = h
        .call(&e, "search", r#"{"pattern":"needle","path":"tests"}"#)
        .unwrap();
    assert!(ok(&sub).starts_with("tests/test_a.py:1"), "{}", ok(&sub));
}

#[test]
fn caps_results_and_says_so() {
    let body: String = (0..50).map(|i| format!("hit {i}\n")).collect();
    let repo = Repo::new(&[("a.txt", &body)]);
    let h = host();
    let r = h
        .call(
            &repo.episode(Role::Solver),
            "search",
            r#"{"pattern":"hit","max_results":5}"#,
        )
        .unwrap();
    let text = ok(&r);
    assert_eq!(text.lines().filter(|l| l.starts_with("a.txt:")).count(), 5);
    assert!(text.contains("[5 of 50 matching lines shown"), "{text}");
}

#[test]
fn bad_pattern_and_escaping_path_are_refused() {
    let repo = Repo::new(&[("a.txt", "x\n")]);
    let h = host();
    let e = repo.episode(Role::Solver);
    assert_eq!(
        err_kind(&h.call(&e, "search", r#"{"pattern":"("}"#).unwrap()),
        "invalid-arguments"
    );
    assert_eq!(
        err_kind(
            &h.call(&e, "search", r#"{"pattern":"x","path":"../"}"#)
                .unwrap()
        ),
        "permission-denied"
    );
}
