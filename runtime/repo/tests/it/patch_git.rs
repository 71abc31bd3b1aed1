//! `Patch` against `git apply` on the same fixtures.

use crate::support::{Tree, git_apply, git_diff, our_apply_dir, tree};
use ssr_repo::{ApplyFailure, Patch, PathChange, UnsafePath};

/// Diffs `old` → `new` with git, then checks: our apply (dir and memory) gives `new`, agrees
/// with `git apply`, and the reverse gives `old` back; printing re-parses to the same patch.
fn check_round_trip(old: &Tree, new: &Tree) {
    let text = git_diff(old, new);
    let patch = Patch::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(our_apply_dir(old, &patch).unwrap(), *new, "{text}");
    let mut mem = old.clone();
    patch.apply_to_files(&mut mem).unwrap();
    assert_eq!(mem, *new);
    assert_eq!(git_apply(old, &text, &[]).unwrap(), *new);
    let reversed = patch.reverse();
    assert_eq!(our_apply_dir(new, &reversed).unwrap(), *old);
    assert_eq!(git_apply(new, &reversed.to_string(), &[]).unwrap(), *old);
    let printed = patch.to_string();
    assert_eq!(Patch::parse(&printed).unwrap(), patch);
    assert_eq!(git_apply(old, &printed, &[]).unwrap(), *new, "{printed}");
}

/// Applies `patch_text` to `old` with both; results (tree, or failure) must agree.
fn check_agrees(old: &Tree, patch_text: &str) -> Result<Tree, String> {
    let git = git_apply(old, patch_text, &[]);
    let ours = Patch::parse(patch_text)
        .map_err(|e| e.to_string())
        .and_then(|p| our_apply_dir(old, &p).map_err(|e| e.to_string()));
    match (&git, &ours) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("disagree on\n{patch_text}\ngit: {git:?}\nours: {ours:?}"),
    }
    ours
}

fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("line {i}\n")).collect()
}

#[test]
fn modify_add_delete_round_trip() {
    let old = tree(&[
        ("a.txt", &numbered(20)),
        ("dir/b.py", "x = 1\n"),
        ("gone.txt", "bye\n"),
    ]);
    let mut new = old.clone();
    new.insert(
        "a.txt".into(),
        numbered(20).replace("line 10\n", "line ten\n").into_bytes(),
    );
    new.insert("dir/new.rs".into(), b"fn main() {}\n".to_vec());
    new.remove("gone.txt");
    check_round_trip(&old, &new);
}

#[test]
fn empty_files_are_added_and_deleted() {
    let old = tree(&[("keep", "k\n"), ("empty_old", "")]);
    let new = tree(&[("keep", "k\n"), ("empty_new", "")]);
    check_round_trip(&old, &new);
}

#[test]
fn no_newline_at_eof_in_every_direction() {
    for (a, b) in [
        ("one\ntwo\n", "one\ntwo"),
        ("one\ntwo", "one\ntwo\n"),
        ("one\ntwo", "one\nthree"),
        ("x", ""),
        ("", "y"),
    ] {
        check_round_trip(&tree(&[("f", a)]), &tree(&[("f", b)]));
    }
}

#[test]
fn crlf_lines_round_trip() {
    let old = tree(&[("win.txt", "a\r\nb\r\nc\r\n")]);
    let new = tree(&[("win.txt", "a\r\nB\r\nc\r\nd")]);
    check_round_trip(&old, &new);
    // A CRLF file patched with an LF patch does not match: exact bytes, like git.
    let lf_patch = git_diff(
        &tree(&[("win.txt", "a\nb\nc\n")]),
        &tree(&[("win.txt", "a\nB\nc\n")]),
    );
    assert!(check_agrees(&old, &lf_patch).is_err());
}

#[test]
fn binary_files_round_trip() {
    let mut big: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    let old: Tree = [
        ("bin.dat".to_owned(), big.clone()),
        ("t".to_owned(), b"t\n".to_vec()),
    ]
    .into();
    big[100] = 0;
    big.extend_from_slice(b"\0tail");
    let mut new = old.clone();
    new.insert("bin.dat".into(), big);
    new.insert("added.bin".into(), vec![0, 1, 2, 3]);
    check_round_trip(&old, &new);
    // Our own binary patches (literal) apply with git too.
    let ours = ssr_repo::FilePatch::from_contents(
        Some(ssr_repo::patch::FileSide {
            path: "bin.dat",
            content: &old["bin.dat"],
            mode: 0o100644,
        }),
        Some(ssr_repo::patch::FileSide {
            path: "bin.dat",
            content: &new["bin.dat"],
            mode: 0o100644,
        }),
    )
    .unwrap();
    let text = Patch { files: vec![ours] }.to_string();
    assert!(text.contains("GIT binary patch"));
    assert_eq!(
        git_apply(&old, &text, &[]).unwrap()["bin.dat"],
        new["bin.dat"]
    );
}

#[test]
fn binary_without_data_is_a_clear_error() {
    let text = "diff --git a/x.bin b/x.bin\nindex 1234567..89abcde 100644\nBinary files a/x.bin and b/x.bin differ\n";
    let patch = Patch::parse(text).unwrap();
    let err = our_apply_dir(&[("x.bin".to_owned(), vec![0u8, 1])].into(), &patch).unwrap_err();
    assert!(
        matches!(err.reason, ApplyFailure::BinaryWithoutData),
        "{err}"
    );
    assert_eq!(err.file, "x.bin");
}

#[test]
fn hunks_found_at_an_offset_like_git() {
    let old = tree(&[("f", &numbered(30))]);
    let new = tree(&[("f", &numbered(30).replace("line 15\n", "line fifteen\n"))]);
    let text = git_diff(&old, &new);
    let shifted = tree(&[("f", &format!("extra 1\nextra 2\n{}", numbered(30)))]);
    let result = check_agrees(&shifted, &text).unwrap();
    assert!(String::from_utf8_lossy(&result["f"]).contains("extra 2\nline 1\n"));
    let shrunk = tree(&[(
        "f",
        &numbered(30).replacen("line 1\nline 2\nline 3\n", "", 1),
    )]);
    check_agrees(&shrunk, &text).unwrap();
}

#[test]
fn hunk_at_line_one_and_at_eof_must_match_there_like_git() {
    // Change line 1: the hunk must match at the start; with lines inserted above, git refuses.
    let old = tree(&[("f", &numbered(10))]);
    let new = tree(&[("f", &numbered(10).replace("line 1\n", "first\n"))]);
    let text = git_diff(&old, &new);
    let _ = check_agrees(&tree(&[("f", &format!("top\n{}", numbered(10)))]), &text);
    // Append at the end: no trailing context, must match at the end.
    let new = tree(&[("f", &format!("{}appended\n", numbered(10)))]);
    let text = git_diff(&old, &new);
    let _ = check_agrees(&tree(&[("f", &format!("{}more\n", numbered(10)))]), &text);
}

#[test]
fn repeated_context_picks_the_nearest_match_like_git() {
    let block = "a\nb\nc\nd\ne\nf\ng\n";
    let old = tree(&[("f", &block.repeat(5))]);
    let mut changed = block.repeat(5);
    changed.replace_range(7 * 2 * 2 + 6..7 * 2 * 2 + 7, "D");
    let new = tree(&[("f", &changed)]);
    let text = git_diff(&old, &new);
    for prefix in ["", "z\n", "z\nz\nz\nz\nz\nz\nz\nz\n"] {
        let _ = check_agrees(
            &tree(&[("f", &format!("{prefix}{}", block.repeat(5)))]),
            &text,
        );
    }
}

#[test]
fn context_mismatch_names_file_and_hunk_and_changes_nothing() {
    let old = tree(&[("a", &numbered(40)), ("b", &numbered(40))]);
    let mut new = old.clone();
    new.insert(
        "a".into(),
        numbered(40).replace("line 2\n", "two\n").into_bytes(),
    );
    new.insert(
        "b".into(),
        numbered(40)
            .replace("line 5\n", "five\n")
            .replace("line 30\n", "thirty\n")
            .into_bytes(),
    );
    let text = git_diff(&old, &new);
    let mut target = old.clone();
    target.insert(
        "b".into(),
        numbered(40).replace("line 31\n", "XXX\n").into_bytes(),
    );
    let patch = Patch::parse(&text).unwrap();
    let err = our_apply_dir(&target, &patch).unwrap_err();
    assert_eq!(err.file, "b");
    assert_eq!(err.hunk, Some(2));
    assert!(
        matches!(
            err.reason,
            ApplyFailure::ContextMismatch { expected_line: 27 }
        ),
        "{err}"
    );
    assert!(git_apply(&target, &text, &[]).is_err());
    let mut mem = target.clone();
    assert!(patch.apply_to_files(&mut mem).is_err());
    assert_eq!(mem, target);
}

#[test]
fn corrupt_patches_are_parse_errors() {
    let good = git_diff(
        &tree(&[("f", &numbered(10))]),
        &tree(&[("f", &numbered(10).replace("line 5", "5"))]),
    );
    let truncated: String = good
        .lines()
        .take(good.lines().count() - 2)
        .map(|l| format!("{l}\n"))
        .collect();
    let e = Patch::parse(&truncated).unwrap_err();
    assert!(
        matches!(e.reason, ssr_repo::ParseFailure::TruncatedHunk { .. }),
        "{e}"
    );
    let garbled = good.replace("\n line 6\n", "\n#line 6\n");
    assert!(matches!(
        Patch::parse(&garbled).unwrap_err().reason,
        ssr_repo::ParseFailure::UnexpectedHunkLine(_)
    ));
    let headless = "@@ -1 +1 @@\n-a\n+b\n";
    assert!(matches!(
        Patch::parse(headless).unwrap_err().reason,
        ssr_repo::ParseFailure::HunkWithoutFile
    ));
    assert!(Patch::parse("@@ -x +1 @@\n").is_err());
    for bad in [truncated.as_str(), garbled.as_str()] {
        assert!(git_apply(&tree(&[("f", &numbered(10))]), bad, &[]).is_err());
    }
}

#[test]
fn plain_unified_diff_with_omitted_counts() {
    let text = "--- a/f.txt\t2024-01-01 00:00:00\n+++ b/f.txt\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-two\n+TWO\n";
    let result = check_agrees(&tree(&[("f.txt", "two\n")]), text).unwrap();
    assert_eq!(result["f.txt"], b"TWO\n");
    let patch = Patch::parse(text).unwrap();
    assert_eq!(patch.touched_paths()[0].change, PathChange::Modified);
    assert!(patch.to_string().contains("@@ -1 +1 @@\n"));
    // A hunk without trailing context must match at the end of the file: git refuses it
    // in the middle, and so do we.
    let middle = "--- a/f.txt\n+++ b/f.txt\n@@ -2 +2 @@\n-two\n+TWO\n";
    assert!(check_agrees(&tree(&[("f.txt", "one\ntwo\nthree\n")]), middle).is_err());
}

#[test]
fn touched_paths_distinguish_changes() {
    let old = tree(&[("m", "1\n"), ("d", "2\n")]);
    let new = tree(&[("m", "3\n"), ("a", "4\n")]);
    let patch = Patch::parse(&git_diff(&old, &new)).unwrap();
    let mut touched: Vec<_> = patch
        .touched_paths()
        .into_iter()
        .map(|t| (t.path, t.change))
        .collect();
    touched.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        touched,
        vec![
            ("a".into(), PathChange::Added),
            ("d".into(), PathChange::Deleted),
            ("m".into(), PathChange::Modified)
        ]
    );
}

#[test]
fn partition_drops_file_sections_and_the_rest_still_applies() {
    let old = tree(&[("src/m.py", "1\n"), ("conftest.py", "a\n")]);
    let new = tree(&[
        ("src/m.py", "2\n"),
        ("conftest.py", "b\n"),
        ("tests/conftest.py", "c\n"),
    ]);
    let patch = Patch::parse(&git_diff(&old, &new)).unwrap();
    let (kept, dropped) = patch.partition(|f| !f.paths().any(|p| p.ends_with("conftest.py")));
    let dropped: Vec<&str> = dropped.files.iter().map(|f| f.display_path()).collect();
    assert_eq!(dropped, vec!["conftest.py", "tests/conftest.py"]);
    let applied = our_apply_dir(&old, &kept).unwrap();
    assert_eq!(
        applied,
        tree(&[("src/m.py", "2\n"), ("conftest.py", "a\n")])
    );
    // Printing the kept part gives a patch git applies the same way.
    assert_eq!(git_apply(&old, &kept.to_string(), &[]).unwrap(), applied);
}

#[test]
fn file_paths_name_both_sides_of_a_rename_once_each() {
    let text = "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n";
    let patch = Patch::parse(text).unwrap();
    let paths: Vec<&str> = patch.files[0].paths().collect();
    assert_eq!(paths, vec!["old.py", "new.py"]);
    let edit = Patch::parse("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n").unwrap();
    assert_eq!(edit.files[0].paths().collect::<Vec<_>>(), vec!["x"]);
}

#[test]
fn renames_and_mode_changes_from_git() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::support::git(d, &["init", "-q"]);
    crate::support::write_tree(
        d,
        &tree(&[("old_name.txt", &numbered(20)), ("run.sh", "echo hi\n")]),
    );
    crate::support::git(d, &["add", "-A"]);
    crate::support::git(d, &["commit", "-qm", "x"]);
    crate::support::git(d, &["mv", "old_name.txt", "new name.txt"]);
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::support::git(d, &["add", "-A"]);
    let text = String::from_utf8(crate::support::git(d, &["diff", "--cached", "-M"])).unwrap();
    assert!(text.contains("rename from"), "{text}");
    let patch = Patch::parse(&text).unwrap();
    let target = tempfile::tempdir().unwrap();
    crate::support::write_tree(
        target.path(),
        &tree(&[("old_name.txt", &numbered(20)), ("run.sh", "echo hi\n")]),
    );
    patch.apply_to_dir(target.path()).unwrap();
    assert!(!target.path().join("old_name.txt").exists());
    assert_eq!(
        std::fs::read_to_string(target.path().join("new name.txt")).unwrap(),
        numbered(20)
    );
    let mode = std::fs::metadata(target.path().join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    patch.reverse().apply_to_dir(target.path()).unwrap();
    assert!(target.path().join("old_name.txt").exists());
}

#[test]
fn unsafe_paths_are_refused() {
    for path in [
        "../escape.txt",
        "/etc/evil",
        "a/../../b",
        ".git/hooks/pre-commit",
    ] {
        let text = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+boom\n");
        let text = text.replace("b//etc", "/etc");
        let patch = Patch::parse(&text).unwrap();
        let err = our_apply_dir(&Tree::new(), &patch).unwrap_err();
        assert!(
            matches!(err.reason, ApplyFailure::UnsafePath(_)),
            "{path}: {err}"
        );
    }
    // A symlinked directory pointing out of the target.
    let outside = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), target.path().join("link")).unwrap();
    let patch = Patch::parse("--- /dev/null\n+++ b/link/planted\n@@ -0,0 +1 @@\n+boom\n").unwrap();
    let err = patch.apply_to_dir(target.path()).unwrap_err();
    assert!(
        matches!(
            err.reason,
            ApplyFailure::UnsafePath(UnsafePath::ThroughSymlink(_))
        ),
        "{err}"
    );
    assert!(!outside.path().join("planted").exists());
}

#[test]
fn creating_an_existing_file_or_changing_a_missing_one_fails() {
    let text = git_diff(&Tree::new(), &tree(&[("n", "new\n")]));
    let err = Patch::parse(&text).unwrap().apply_to_dir(&{
        let d = tempfile::tempdir().unwrap().keep();
        std::fs::write(d.join("n"), "there\n").unwrap();
        d
    });
    assert!(matches!(
        err.unwrap_err().reason,
        ApplyFailure::AlreadyExists
    ));
    let text = git_diff(&tree(&[("m", "a\n")]), &tree(&[("m", "b\n")]));
    let err = our_apply_dir(&Tree::new(), &Patch::parse(&text).unwrap()).unwrap_err();
    assert!(matches!(err.reason, ApplyFailure::MissingFile));
}

#[test]
fn printing_git_text_patches_reproduces_them() {
    let old = tree(&[("a.txt", &numbered(50)), ("z", "q\n")]);
    let mut new = old.clone();
    new.insert(
        "a.txt".into(),
        numbered(50)
            .replace("line 3\n", "3\n")
            .replace("line 40\n", "")
            .into_bytes(),
    );
    new.insert("added".into(), b"x\ny".to_vec());
    new.remove("z");
    let text = git_diff(&old, &new);
    assert_eq!(Patch::parse(&text).unwrap().to_string(), text);
}

#[test]
fn corrupt_binary_patch_is_a_parse_error() {
    let old: Tree = [("b.bin".to_owned(), vec![0u8, 1, 2, 3])].into();
    let new: Tree = [("b.bin".to_owned(), vec![0u8, 9, 9, 9, 9])].into();
    let text = git_diff(&old, &new);
    assert!(text.contains("GIT binary patch"), "{text}");
    // Damage one base85 character of the first data line.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("literal ") || l.starts_with("delta "))
        .unwrap()
        + 1;
    lines[at].replace_range(3..4, "\"");
    let damaged = lines.join("\n") + "\n";
    let err = Patch::parse(&damaged).unwrap_err();
    assert!(
        matches!(err.reason, ssr_repo::ParseFailure::BadBinary(_)),
        "{err}"
    );
    assert!(git_apply(&old, &damaged, &[]).is_err());
    // A binary patch applied to a different preimage is refused (full index check).
    let other: Tree = [("b.bin".to_owned(), vec![7u8, 7, 7, 7])].into();
    let err = our_apply_dir(&other, &Patch::parse(&text).unwrap()).unwrap_err();
    assert!(matches!(err.reason, ApplyFailure::Binary(_)), "{err}");
    assert!(git_apply(&other, &text, &[]).is_err());
}
