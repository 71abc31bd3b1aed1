//! History walk, commit diffs and worktree diffs against the `git` CLI.

use crate::support::{Tree, git, git_apply, read_tree, tree, write_tree};
use ssr_repo::{Patch, PathChange, Repo};

/// A repository with three commits; returns (dir, trees after each commit).
fn three_commits() -> (tempfile::TempDir, Vec<Tree>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    let mut states = Vec::new();
    let steps: [&[(&str, &str)]; 3] = [
        &[("a.py", "def f():\n    return 1\n"), ("README", "hello\n")],
        &[
            ("a.py", "def f():\n    return 2\n"),
            ("README", "hello\n"),
            ("b/c.txt", "new\n"),
        ],
        &[
            ("a.py", "def f():\n    return 2\n"),
            ("b/c.txt", "new\nmore"),
        ],
    ];
    for (i, step) in steps.iter().enumerate() {
        for p in read_tree(d).keys() {
            std::fs::remove_file(d.join(p)).unwrap();
        }
        let t = tree(step);
        write_tree(d, &t);
        git(d, &["add", "-A"]);
        let date = format!("2024-01-0{} 12:00:00 +0000", i + 1);
        let out = crate::support::git_cmd(d)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "-m", &format!("step {i}\n\nbody {i}")])
            .output()
            .unwrap();
        assert!(out.status.success());
        states.push(t);
    }
    (dir, states)
}

#[test]
fn log_is_newest_first_with_metadata_like_git() {
    let (dir, _) = three_commits();
    let repo = Repo::open(dir.path()).unwrap();
    let log = repo.log("HEAD", None).unwrap();
    let git_ids = String::from_utf8(git(dir.path(), &["log", "--format=%H"])).unwrap();
    let ids: Vec<&str> = log.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, git_ids.lines().collect::<Vec<_>>());
    assert_eq!(log[0].summary(), "step 2");
    assert!(log[0].message.contains("body 2"));
    assert_eq!(log[0].author_name, "t");
    assert_eq!(log[0].author_email, "t@t");
    assert_eq!(log[2].time, 1_704_110_400);
    assert_eq!(log[0].parents, vec![log[1].id.clone()]);
    assert!(log[2].parents.is_empty());
    assert_eq!(repo.log("HEAD", Some(2)).unwrap().len(), 2);
    assert_eq!(repo.head_id().unwrap(), log[0].id);
}

#[test]
fn commit_diffs_apply_to_the_parent_like_git_show() {
    let (dir, states) = three_commits();
    let repo = Repo::open(dir.path()).unwrap();
    let log = repo.log("HEAD", None).unwrap();
    // Root commit: diff against the empty tree.
    let root = repo.commit_diff(&log[2].id).unwrap();
    assert!(
        root.touched_paths()
            .iter()
            .all(|t| t.change == PathChange::Added)
    );
    let mut files = Tree::new();
    root.apply_to_files(&mut files).unwrap();
    assert_eq!(files, states[0]);
    for (parent, child) in [(1usize, 0usize), (2, 1)] {
        let patch = repo.commit_diff(&log[child].id).unwrap();
        let before = &states[2 - parent];
        let after = &states[2 - child];
        assert_eq!(git_apply(before, &patch.to_string(), &[]).unwrap(), *after);
        let mut mem = before.clone();
        patch.apply_to_files(&mut mem).unwrap();
        assert_eq!(mem, *after);
    }
    // diff_revs agrees with the commit diff for a single step.
    assert_eq!(
        repo.diff_revs("HEAD~1", "HEAD").unwrap(),
        repo.commit_diff("HEAD").unwrap()
    );
    assert!(repo.resolve("no-such-branch").is_err());
}

#[test]
fn worktree_diff_includes_untracked_and_respects_gitignore() {
    let (dir, states) = three_commits();
    let d = dir.path();
    std::fs::write(d.join(".gitignore"), "*.log\nbuild/\n").unwrap();
    std::fs::write(d.join("debug.log"), "ignored\n").unwrap();
    std::fs::create_dir(d.join("build")).unwrap();
    std::fs::write(d.join("build/out.o"), "ignored\n").unwrap();
    std::fs::write(d.join("new.txt"), "untracked\n").unwrap();
    std::fs::write(d.join("a.py"), "def f():\n    return 3\n").unwrap();
    std::fs::remove_file(d.join("b/c.txt")).unwrap();
    std::fs::write(d.join("data.bin"), [0u8, 1, 2, 0, 255]).unwrap();
    let repo = Repo::open(d).unwrap();
    let patch = repo.diff_worktree().unwrap();
    let mut touched: Vec<_> = patch
        .touched_paths()
        .into_iter()
        .map(|t| (t.path, t.change))
        .collect();
    touched.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        touched,
        vec![
            (".gitignore".into(), PathChange::Added),
            ("a.py".into(), PathChange::Modified),
            ("b/c.txt".into(), PathChange::Deleted),
            ("data.bin".into(), PathChange::Added),
            ("new.txt".into(), PathChange::Added),
        ]
    );
    // Applying it to HEAD's tree gives the worktree (minus ignored files), also with git.
    let mut expected = read_tree(d);
    expected.remove("debug.log");
    expected.remove("build/out.o");
    assert_eq!(
        git_apply(&states[2], &patch.to_string(), &[]).unwrap(),
        expected
    );
    let reparsed = Patch::parse(&patch.to_string()).unwrap();
    assert_eq!(
        crate::support::our_apply_dir(&states[2], &reparsed).unwrap(),
        expected
    );
}

#[test]
fn worktree_mode_change_is_a_mode_only_patch_that_git_applies() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, states) = three_commits();
    let d = dir.path();
    std::fs::set_permissions(d.join("a.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let patch = Repo::open(d).unwrap().diff_worktree().unwrap();
    let text = patch.to_string();
    assert!(
        text.contains("old mode 100644\nnew mode 100755\n"),
        "{text}"
    );
    let target = tempfile::tempdir().unwrap();
    write_tree(target.path(), &states[2]);
    let out = crate::support::git_cmd(target.path())
        .arg("apply")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(out.success());
    let mode = std::fs::metadata(target.path().join("a.py"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    // And ours does the same on a fresh copy.
    let ours = tempfile::tempdir().unwrap();
    write_tree(ours.path(), &states[2]);
    patch.apply_to_dir(ours.path()).unwrap();
    let mode = std::fs::metadata(ours.path().join("a.py"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}
