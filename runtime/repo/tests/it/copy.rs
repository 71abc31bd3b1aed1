//! History-free copies.

use crate::support::{git, read_tree, tree, write_tree};
use ssr_repo::copy::{CopyOptions, history_free_copy};

#[test]
fn copy_drops_history_and_leftovers_and_is_deterministic() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    git(s, &["init", "-q"]);
    write_tree(
        s,
        &tree(&[
            ("pkg/mod.py", "x = 1\n"),
            ("pkg/__pycache__/mod.cpython-311.pyc", "bytecode"),
            ("stray.pyc", "bytecode"),
            ("target/debug/app", "bin"),
            ("build/lib/pkg.py", "old copy"),
            ("pkg.egg-info/PKG-INFO", "meta"),
            ("src/build.rs", "fn main() {}\n"),
            ("tests/test_mod.py", "def test(): pass\n"),
        ]),
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(s.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(s.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    git(s, &["add", "-A"]);
    git(s, &["commit", "-qm", "secret original history"]);

    let dest1 = tempfile::tempdir().unwrap();
    let out1 = history_free_copy(s, &dest1.path().join("copy"), &CopyOptions::default()).unwrap();
    let d = dest1.path().join("copy");
    let files = read_tree(&d);
    let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["pkg/mod.py", "run.sh", "src/build.rs", "tests/test_mod.py"]
    );
    assert_eq!(out1.files, 4);
    assert!(out1.excluded.contains(&"target".to_owned()));
    // One commit, made by the fixed identity, and a clean status (index written).
    let log = String::from_utf8(git(&d, &["log", "--format=%H %an <%ae> %at %s"])).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.starts_with(&out1.commit_id));
    assert!(log.contains("ssr <ssr@localhost> 1700000000"));
    assert!(!log.contains("secret"));
    let status = String::from_utf8(git(&d, &["status", "--porcelain"])).unwrap();
    assert_eq!(status, "");
    let mode = String::from_utf8(git(&d, &["ls-files", "-s", "run.sh"])).unwrap();
    assert!(mode.starts_with("100755"), "{mode}");
    // Same content, same commit id.
    let dest2 = tempfile::tempdir().unwrap();
    let out2 = history_free_copy(s, dest2.path(), &CopyOptions::default()).unwrap();
    assert_eq!(out1.commit_id, out2.commit_id);
    // A non-empty destination is refused.
    assert!(history_free_copy(s, &d, &CopyOptions::default()).is_err());
}
