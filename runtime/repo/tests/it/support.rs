//! Shared fixtures: the `git` CLI as the reference, and trees as path → bytes maps.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub type Tree = BTreeMap<String, Vec<u8>>;

/// A `git` command isolated from the user's and system configuration.
pub fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .args(["-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"]);
    cmd
}

/// Runs git, panicking with its stderr on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = git_cmd(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes `tree` under `dir` (creating parents).
pub fn write_tree(dir: &Path, tree: &Tree) {
    for (path, content) in tree {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
}

/// Reads every file under `dir` except `.git`.
pub fn read_tree(dir: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = Tree::new();
    walk(dir, dir, &mut out);
    out
}

pub fn tree(entries: &[(&str, &str)]) -> Tree {
    entries
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

/// `git diff --binary` (no renames) between two trees, through a scratch repository.
pub fn git_diff(old: &Tree, new: &Tree) -> String {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    write_tree(dir.path(), old);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "old"]);
    for path in old.keys() {
        std::fs::remove_file(dir.path().join(path)).unwrap();
    }
    write_tree(dir.path(), new);
    git(dir.path(), &["add", "-A"]);
    let out = git(
        dir.path(),
        &[
            "diff",
            "--cached",
            "--binary",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
        ],
    );
    String::from_utf8(out).unwrap()
}

/// `git apply` of `patch` to a directory holding `old`; the resulting tree, or git's error.
pub fn git_apply(old: &Tree, patch: &str, extra: &[&str]) -> Result<Tree, String> {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), old);
    let patch_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(patch_file.path(), patch).unwrap();
    let out = git_cmd(dir.path())
        .arg("apply")
        .args(extra)
        .arg(patch_file.path())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(read_tree(dir.path()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// This crate's directory apply of `patch` to a directory holding `old`.
pub fn our_apply_dir(old: &Tree, patch: &ssr_repo::Patch) -> Result<Tree, ssr_repo::ApplyError> {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), old);
    let result = patch.apply_to_dir(dir.path());
    let after = read_tree(dir.path());
    match result {
        Ok(()) => Ok(after),
        Err(e) => {
            assert_eq!(&after, old, "failed apply changed the directory: {e}");
            Err(e)
        }
    }
}
