//! The editor through the real linker: view, create, str_replace, insert, undo across
//! calls, and the grants (protected files, read-only grant, oracle files).

use crate::support::{Repo, err_kind, host, host_with, ok};
use ssr_toolhost::{Policy, Role};

fn call(
    host: &ssr_toolhost::ToolHost,
    repo: &Repo,
    role: Role,
    args: &str,
) -> ssr_toolhost::ToolReply {
    host.call(&repo.episode(role), "editor", args, Default::default())
        .expect("call runs")
}

#[test]
fn view_numbers_lines_and_honours_the_range() {
    let repo = Repo::new(&[("a.py", "one\ntwo\nthree\n")]);
    let h = host();
    let all = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"a.py"}"#,
    );
    assert_eq!(ok(&all), "     1\tone\n     2\ttwo\n     3\tthree\n");
    let part = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"/repo/a.py","view_range":[2,-1]}"#,
    );
    assert_eq!(ok(&part), "     2\ttwo\n     3\tthree\n");
    let bad = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"a.py","view_range":[5,6]}"#,
    );
    assert_eq!(err_kind(&bad), "invalid-arguments");
    let missing = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"nope.py"}"#,
    );
    assert_eq!(err_kind(&missing), "not-found");
}

#[test]
fn view_lists_directories_two_levels_deep() {
    let repo = Repo::new(&[
        ("src/pkg/deep/x.py", ""),
        ("src/a.py", ""),
        (".hidden/y", ""),
        ("top.txt", ""),
    ]);
    let h = host();
    let r = call(&h, &repo, Role::Solver, r#"{"command":"view","path":"."}"#);
    let text = ok(&r);
    assert!(text.contains("src/\n"), "{text}");
    assert!(text.contains("  src/a.py\n"), "{text}");
    assert!(text.contains("  src/pkg/\n"), "{text}");
    assert!(!text.contains("pkg/deep"), "three levels shown: {text}");
    assert!(!text.contains(".hidden"), "{text}");
}

#[test]
fn create_refuses_an_existing_file() {
    let repo = Repo::new(&[("a.py", "x\n")]);
    let h = host();
    let r = call(
        &h,
        &repo,
        Role::Injector,
        r#"{"command":"create","path":"new/b.py","file_text":"print(1)\n"}"#,
    );
    ok(&r);
    assert_eq!(repo.read("new/b.py"), "print(1)\n");
    let again = call(
        &h,
        &repo,
        Role::Injector,
        r#"{"command":"create","path":"a.py","file_text":"y"}"#,
    );
    assert_eq!(err_kind(&again), "conflict");
    assert_eq!(repo.read("a.py"), "x\n");
}

#[test]
fn str_replace_needs_exactly_one_match() {
    let repo = Repo::new(&[("a.py", "x = 1\ny = 1\nx = 1\n")]);
    let h = host();
    let twice = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"str_replace","path":"a.py","old_str":"x = 1","new_str":"x = 2"}"#,
    );
    let e = twice.result.as_ref().unwrap_err();
    assert_eq!(e.kind(), "conflict");
    assert!(e.message().contains("matched 2 times"), "{e}");
    let none = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"str_replace","path":"a.py","old_str":"z","new_str":"w"}"#,
    );
    assert!(
        none.result
            .as_ref()
            .unwrap_err()
            .message()
            .contains("matched 0 times")
    );
    let once = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"str_replace","path":"a.py","old_str":"y = 1","new_str":"y = 3"}"#,
    );
    assert!(ok(&once).contains("y = 3"));
    assert_eq!(repo.read("a.py"), "x = 1\ny = 3\nx = 1\n");
}

#[test]
fn insert_and_undo_survive_across_calls() {
    let repo = Repo::new(&[("a.py", "one\ntwo\n")]);
    let h = host();
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"insert","path":"a.py","insert_line":1,"new_str":"one-and-a-half"}"#,
    ));
    assert_eq!(repo.read("a.py"), "one\none-and-a-half\ntwo\n");
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"str_replace","path":"a.py","old_str":"two","new_str":"2"}"#,
    ));
    assert_eq!(repo.read("a.py"), "one\none-and-a-half\n2\n");
    // Each call is a fresh instance: the history comes from the state directory.
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"undo_edit","path":"a.py"}"#,
    ));
    assert_eq!(repo.read("a.py"), "one\none-and-a-half\ntwo\n");
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"undo_edit","path":"a.py"}"#,
    ));
    assert_eq!(repo.read("a.py"), "one\ntwo\n");
    let nothing = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"undo_edit","path":"a.py"}"#,
    );
    assert_eq!(err_kind(&nothing), "conflict");
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"create","path":"c.py","file_text":"c"}"#,
    ));
    ok(&call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"undo_edit","path":"c.py"}"#,
    ));
    assert!(
        !repo.path().join("c.py").exists(),
        "undoing a create removes the file"
    );
}

#[test]
fn undo_without_a_state_grant_says_why() {
    let repo = Repo::new(&[("a.py", "one\n")]);
    let h = host();
    let mut episode = repo.episode(Role::Solver);
    episode.state_dir = None;
    ok(&h
        .call(
            &episode,
            "editor",
            r#"{"command":"insert","path":"a.py","insert_line":0,"new_str":"zero"}"#,
            Default::default(),
        )
        .unwrap());
    let r = h
        .call(
            &episode,
            "editor",
            r#"{"command":"undo_edit","path":"a.py"}"#,
            Default::default(),
        )
        .unwrap();
    assert!(
        r.result
            .unwrap_err()
            .message()
            .contains("no state directory")
    );
}

#[test]
fn solver_cannot_edit_test_infrastructure_or_oracle_files() {
    let repo = Repo::new(&[
        ("conftest.py", "x = 1\n"),
        ("pkg/pyproject.toml", "[x]\n"),
        ("tests/test_a.py", "assert 1\n"),
        ("src.py", "a\n"),
    ]);
    let h = host();
    let mut episode = repo.episode(Role::Solver);
    episode.oracle_files = vec!["tests/test_a.py".into()];
    for path in ["conftest.py", "pkg/pyproject.toml", "tests/test_a.py"] {
        let args =
            format!(r#"{{"command":"insert","path":"{path}","insert_line":0,"new_str":"evil"}}"#);
        let r = h
            .call(&episode, "editor", &args, Default::default())
            .unwrap();
        assert_eq!(err_kind(&r), "permission-denied", "{path}");
    }
    assert_eq!(repo.read("conftest.py"), "x = 1\n");
    assert_eq!(repo.read("tests/test_a.py"), "assert 1\n");
    ok(&h
        .call(
            &episode,
            "editor",
            r#"{"command":"insert","path":"src.py","insert_line":0,"new_str":"ok"}"#,
            Default::default(),
        )
        .unwrap());
    // The injector may write the same files.
    let injector = repo.episode(Role::Injector);
    ok(&h
        .call(
            &injector,
            "editor",
            r#"{"command":"insert","path":"conftest.py","insert_line":0,"new_str":"fine"}"#,
            Default::default(),
        )
        .unwrap());
}

#[test]
fn read_only_grant_refuses_writes() {
    let policy =
        Policy::from_toml("[roles.solver.tools.editor]\nrepo = \"ro\"\nstate = true\n").unwrap();
    let repo = Repo::new(&[("a.py", "one\n")]);
    let h = host_with(policy);
    let view = h
        .call(
            &repo.episode(Role::Solver),
            "editor",
            r#"{"command":"view","path":"a.py"}"#,
            Default::default(),
        )
        .unwrap();
    ok(&view);
    let write = h
        .call(
            &repo.episode(Role::Solver),
            "editor",
            r#"{"command":"create","path":"b.py","file_text":"x"}"#,
            Default::default(),
        )
        .unwrap();
    assert_eq!(err_kind(&write), "permission-denied");
    assert!(!repo.path().join("b.py").exists());
    // The injector is not in this policy at all.
    let denied = h.call(
        &repo.episode(Role::Injector),
        "editor",
        r#"{"command":"view","path":"a.py"}"#,
        Default::default(),
    );
    assert!(matches!(
        denied,
        Err(ssr_toolhost::ToolHostError::NotGranted { .. })
    ));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let repo = Repo::new(&[("a.py", "one\n")]);
    let h = host();
    for args in [
        "not json",
        r#"{"command":"fly","path":"a.py"}"#,
        r#"{"command":"create","path":"x.py"}"#,
    ] {
        let r = call(&h, &repo, Role::Solver, args);
        assert_eq!(err_kind(&r), "invalid-arguments", "{args}");
    }
}

#[test]
fn view_of_any_text_matches_str_lines_numbering() {
    // Lines of every length around the guest's 16-byte vectors, CRLF endings, multibyte
    // characters across vector edges, an empty line, and a last line with a lone `\r`
    // and no newline.
    let mut text = String::new();
    for len in 0..40 {
        text.push_str(&"é".repeat(len % 3));
        text.push_str(&"x".repeat(len));
        text.push_str(if len % 5 == 0 { "\r\n" } else { "\n" });
    }
    text.push_str("\nlast\r");
    let repo = Repo::new(&[("t.txt", text.as_str())]);
    let h = host();
    let expected: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{:6}\t{l}\n", i + 1))
        .collect();
    let whole = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"t.txt"}"#,
    );
    assert_eq!(ok(&whole), expected);
    let part = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"t.txt","view_range":[3,7]}"#,
    );
    let expected_part: String = expected
        .lines()
        .skip(2)
        .take(5)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ok(&part), expected_part);
}

#[test]
fn view_of_a_binary_file_says_it_is_not_text() {
    let repo = Repo::new(&[]);
    let mut bytes = b"ascii start that fills more than one vector\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    std::fs::write(repo.path().join("bin.dat"), bytes).unwrap();
    let h = host();
    let r = call(
        &h,
        &repo,
        Role::Solver,
        r#"{"command":"view","path":"bin.dat"}"#,
    );
    assert_eq!(err_kind(&r), "failed");
    assert!(r.text().contains("not UTF-8"), "{}", r.text());
}
