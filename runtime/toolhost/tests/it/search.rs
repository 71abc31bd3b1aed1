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
            Default::default(),
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
    let all = h
        .call(&e, "search", r#"{"pattern":"needle"}"#, Default::default())
        .unwrap();
    let text = ok(&all);
    assert!(!text.contains("build/"), "gitignored file searched: {text}");
    assert!(text.contains("src/a.txt:1"), "{text}");
    let py = h
        .call(
            &e,
            "search",
            r#"{"pattern":"needle","include":["*.py"],"exclude":["tests/**"]}"#,
            Default::default(),
        )
        .unwrap();
    assert_eq!(ok(&py).trim(), "src/a.py:1: needle");
    let sub = h
        .call(
            &e,
            "search",
            r#"{"pattern":"needle","path":"tests"}"#,
            Default::default(),
        )
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
            Default::default(),
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
        err_kind(
            &h.call(&e, "search", r#"{"pattern":"("}"#, Default::default())
                .unwrap()
        ),
        "invalid-arguments"
    );
    assert_eq!(
        err_kind(
            &h.call(
                &e,
                "search",
                r#"{"pattern":"x","path":"../"}"#,
                Default::default()
            )
            .unwrap()
        ),
        "permission-denied"
    );
}

/// The whole-file prefilter (one regex pass per file, `^`/`$` at line boundaries) must
/// give exactly the lines a line-by-line search gives, including anchors, CRLF endings,
/// classes that would match a newline, and a last line without one.
#[test]
fn prefiltered_search_matches_line_by_line() {
    let text = "def a():\r\n  x = 1 \n\ndef b(): pass\nclass C:\n    def m(self):\n\tdef tabbed\nend without newline";
    let repo = Repo::new(&[("f.py", text)]);
    let h = host();
    let e = repo.episode(Role::Solver);
    for pattern in [
        "^def",
        r"\s$",
        r":$",
        r"^\s+def",
        r"x\s*=\s*1",
        r"[^a]def",
        "^$",
        "newline$",
        r"pass\s+class",
        "^(?i)DEF",
        r"\Adef",
    ] {
        let expected: Vec<String> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| regex::Regex::new(pattern).unwrap().is_match(l))
            .map(|(i, l)| format!("f.py:{}: {}", i + 1, l.trim_end()))
            .collect();
        let args = serde_json::json!({ "pattern": pattern }).to_string();
        let r = h.call(&e, "search", &args, Default::default()).unwrap();
        let got: Vec<String> = if expected.is_empty() {
            assert!(ok(&r).starts_with("No matches"), "{pattern}: {}", ok(&r));
            Vec::new()
        } else {
            ok(&r).lines().map(str::to_string).collect()
        };
        assert_eq!(got, expected, "pattern {pattern:?}");
    }
}

/// Regression for the walk on raw `wasi:filesystem` handles: nested `.gitignore` files
/// and a negation, rules of a directory above the searched path, hidden directories,
/// and a symbolic link (never followed).
#[test]
fn walk_keeps_the_ignore_rules() {
    let repo = Repo::new(&[
        (".gitignore", "*.log\n"),
        ("a/.gitignore", "gen/\n!keep.log\n"),
        ("a/gen/x.py", "needle\n"),
        ("a/keep.log", "needle\n"),
        ("a/drop.log", "needle\n"),
        ("a/b/c.py", "needle\n"),
        (".hidden/h.py", "needle\n"),
        ("z.py", "needle\n"),
    ]);
    std::os::unix::fs::symlink(repo.path().join("z.py"), repo.path().join("link.py")).unwrap();
    let h = host();
    let e = repo.episode(Role::Solver);
    let all = h
        .call(&e, "search", r#"{"pattern":"needle"}"#, Default::default())
        .unwrap();
    assert_eq!(
        ok(&all).lines().collect::<Vec<_>>(),
        [
            "a/b/c.py:1: needle",
            "a/keep.log:1: needle",
            "z.py:1: needle"
        ]
    );
    let sub = h
        .call(
            &e,
            "search",
            r#"{"pattern":"needle","path":"a/b"}"#,
            Default::default(),
        )
        .unwrap();
    assert_eq!(ok(&sub).trim(), "a/b/c.py:1: needle");
    let logs = h
        .call(
            &e,
            "search",
            r#"{"pattern":"needle","path":"a","include":["*.log"]}"#,
            Default::default(),
        )
        .unwrap();
    assert_eq!(
        ok(&logs).trim(),
        "a/drop.log:1: needle\na/keep.log:1: needle"
    );
}

#[test]
fn finds_a_match_past_the_first_read_of_a_large_file() {
    // The guest's first read of a file is 16 KiB, later reads 64 KiB: matches after
    // both boundaries are found.
    let mut big: String = (0..5_000)
        .map(|i| format!("filler line {i:05}\n"))
        .collect();
    big.push_str("the needle at the end\n");
    assert!(big.len() > 64 << 10);
    let repo = Repo::new(&[("big.txt", big.as_str())]);
    let h = host();
    let r = h
        .call(
            &repo.episode(Role::Solver),
            "search",
            r#"{"pattern":"needle|line 01000$"}"#,
            Default::default(),
        )
        .unwrap();
    let text = ok(&r);
    assert!(
        text.contains("big.txt:5001: the needle at the end"),
        "{text}"
    );
    assert!(text.contains("big.txt:1001: filler line 01000"), "{text}");
}
