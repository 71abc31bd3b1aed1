//! The patch operations the game needs, behind one narrow interface: reading a
//! `git diff` with the game's path rules, which files it touches, reversing it,
//! dropping some files' sections, writing one from new file contents, and applying it
//! strictly (all or nothing) to a workspace directory.
//!
//! The backend is `ssr-repo`'s [`Patch`] (pure Rust, no `git` program): its parser,
//! printer, reversal and its strict apply, which refuses absolute paths, `..`, paths
//! into `.git` and paths through symbolic links, and writes nothing when one hunk
//! fails. On top of that every path a diff names must pass the game's own rule
//! ([`check_repo_path`]) when the diff is read, so a bad path is reported as such
//! (check 1 tells "outside the repository" from "malformed").
//!
//! Why hunk counts are trusted (no `git apply --recount`): the diffs the game sees
//! come from `git diff` (the agent's submit tool, the procedural injectors); a hunk
//! whose counts do not match its body is a damaged diff and is refused as malformed.
//! Revisit if model-written diffs turn out to need the leniency.
//!
//! Does not own: running repository code (that is the sandbox), or deciding which
//! files a diff may touch (the verifier's check 1, the evaluator's protected set).

use crate::artifact::{PathRuleError, check_repo_path};
use ssr_repo::patch::{FileSide, MODE_EXECUTABLE, MODE_FILE};
pub use ssr_repo::{FilePatch, Patch};
use std::collections::BTreeSet;
use std::path::Path;

/// Why a diff could not be read, written or applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("diff touches an unacceptable path: {0}")]
    BadPath(#[from] PathRuleError),
    #[error("malformed diff: {0}")]
    Malformed(String),
    #[error("diff does not apply: {0}")]
    DoesNotApply(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `diff` (`git diff` output or a plain unified diff; text before the first
/// file section, such as a commit message, is skipped). Every path must be a plain
/// path inside the repository; non-blank text without any file section is malformed.
pub fn parse(diff: &str) -> Result<Patch, PatchError> {
    let patch = Patch::parse(diff).map_err(|e| PatchError::Malformed(e.to_string()))?;
    if patch.is_empty() && !diff.trim().is_empty() {
        return Err(PatchError::Malformed(
            "no file sections (`diff --git` or `---`/`+++` headers) found".into(),
        ));
    }
    for file in &patch.files {
        for path in file.paths() {
            check_repo_path(path)?;
        }
    }
    Ok(patch)
}

/// Every path the diff touches (both sides of renames).
pub fn touched_paths(diff: &str) -> Result<BTreeSet<String>, PatchError> {
    Ok(parse(diff)?
        .files
        .iter()
        .flat_map(|f| f.paths().map(str::to_owned).collect::<Vec<_>>())
        .collect())
}

/// The diff without the file sections `drop` accepts, and the paths of the sections
/// dropped (sorted, each once).
pub fn drop_sections(
    diff: &str,
    drop: impl Fn(&FilePatch) -> bool,
) -> Result<(String, Vec<String>), PatchError> {
    let (kept, dropped) = parse(diff)?.partition(|f| !drop(f));
    let dropped: BTreeSet<String> = dropped
        .files
        .iter()
        .flat_map(|f| f.paths().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    Ok((kept.to_string(), dropped.into_iter().collect()))
}

/// The reverse of a diff: applying it undoes the original.
pub fn reverse(diff: &str) -> Result<String, PatchError> {
    Ok(parse(diff)?.reverse().to_string())
}

/// Applies `diff` to the directory `dir`, all or nothing. An empty diff is a no-op.
pub fn apply(dir: &Path, diff: &str) -> Result<(), PatchError> {
    apply_patch(dir, &parse(diff)?)
}

/// Applies a parsed patch to `dir`, all or nothing.
pub fn apply_patch(dir: &Path, patch: &Patch) -> Result<(), PatchError> {
    if patch.is_empty() {
        return Ok(());
    }
    patch
        .apply_to_dir(dir)
        .map_err(|e| PatchError::DoesNotApply(e.to_string()))
}

/// One file change for [`diff_of_changes`]: new content, or `None` to delete.
pub type FileChange = (String, Option<String>);

/// Writes the `git diff` that turns the files of `original` into `changes` (paths
/// relative to the repository; `None` deletes). Only the touched files are read.
pub fn diff_of_changes(original: &Path, changes: &[FileChange]) -> Result<String, PatchError> {
    let mut patch = Patch::default();
    for (rel, content) in changes {
        let rel = check_repo_path(rel)?;
        let full = original.join(&rel);
        let io = |source| PatchError::Io {
            path: rel.clone(),
            source,
        };
        let (old, mode) = match full.symlink_metadata() {
            Ok(meta) if meta.is_file() => {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    MODE_EXECUTABLE
                } else {
                    MODE_FILE
                };
                (Some(std::fs::read(&full).map_err(io)?), mode)
            }
            Ok(_) => {
                return Err(PatchError::Malformed(format!(
                    "`{rel}` is not a regular file in the original"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, MODE_FILE),
            Err(e) => return Err(io(e)),
        };
        let old_side = old.as_deref().map(|content| FileSide {
            path: &rel,
            content,
            mode,
        });
        let new_side = content.as_ref().map(|t| FileSide {
            path: &rel,
            content: t.as_bytes(),
            mode,
        });
        if let Some(file) = FilePatch::from_contents(old_side, new_side) {
            patch.files.push(file);
        }
    }
    Ok(patch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDIT: &str = "\
diff --git a/src/m.py b/src/m.py
index 1111111..2222222 100644
--- a/src/m.py
+++ b/src/m.py
@@ -1,3 +1,3 @@
 def f(x):
-    return x + 1
+    return x + 2
 
diff --git a/src/new.py b/src/new.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/src/new.py
@@ -0,0 +1 @@
+X = 1
";

    const ORIG: &str = "def f(x):\n    return x + 1\n\n";

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/m.py"), ORIG).unwrap();
        dir
    }

    #[test]
    fn files_and_paths_are_read() {
        let p = parse(EDIT).unwrap();
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.files[1].old_path, None);
        assert_eq!(p.files[1].new_path.as_deref(), Some("src/new.py"));
        let t = touched_paths(EDIT).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec!["src/m.py", "src/new.py"]
        );
    }

    #[test]
    fn escaping_paths_are_refused_when_read() {
        for bad in [
            "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
            "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
            "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-x\n+y\n",
        ] {
            assert!(matches!(parse(bad), Err(PatchError::BadPath(_))), "{bad}");
        }
    }

    #[test]
    fn garbage_is_malformed_and_blank_is_empty() {
        assert!(matches!(
            parse("this is not a diff\n"),
            Err(PatchError::Malformed(_))
        ));
        assert!(parse("  \n").unwrap().is_empty());
        let truncated = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n";
        assert!(matches!(parse(truncated), Err(PatchError::Malformed(_))));
    }

    #[test]
    fn reverse_round_trips_through_apply() {
        let dir = repo();
        apply(dir.path(), EDIT).unwrap();
        assert!(dir.path().join("src/new.py").exists());
        let rev = reverse(EDIT).unwrap();
        apply(dir.path(), &rev).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/m.py")).unwrap(),
            ORIG
        );
        assert!(!dir.path().join("src/new.py").exists());
        assert_eq!(reverse(&rev).unwrap(), EDIT);
    }

    /// `git apply` wrote nothing when one hunk failed; neither may the backend.
    #[test]
    fn failed_hunk_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/m.py"), "something else\n").unwrap();
        let err = apply(dir.path(), EDIT).unwrap_err();
        assert!(err.to_string().contains("src/m.py"), "{err}");
        assert!(!dir.path().join("src/new.py").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/m.py")).unwrap(),
            "something else\n"
        );
        // With the creation first and the failing edit second, still nothing.
        let p = parse(EDIT).unwrap();
        let swapped = Patch {
            files: vec![p.files[1].clone(), p.files[0].clone()],
        };
        assert!(apply_patch(dir.path(), &swapped).is_err());
        assert!(!dir.path().join("src/new.py").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no staging directory is left behind");
    }

    /// `git apply` refused to write through a symbolic link; so does the backend.
    #[test]
    fn paths_through_symlinks_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("src")).unwrap();
        let err = apply(dir.path(), EDIT).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A file that is itself a symlink is not patched either.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let target = outside.path().join("m.py");
        std::fs::write(&target, ORIG).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("src/m.py")).unwrap();
        assert!(apply(dir.path(), EDIT).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), ORIG);
    }

    /// `..`, absolute paths and `.git/` are refused at apply time too, for patches
    /// that did not come through [`parse`].
    #[test]
    fn unsafe_paths_are_refused_at_apply() {
        let dir = repo();
        for path in ["../escape.py", "/tmp/abs.py", ".git/hooks/pre-commit"] {
            let patch = Patch {
                files: vec![
                    FilePatch::from_contents(
                        None,
                        Some(FileSide {
                            path,
                            content: b"x = 1\n",
                            mode: MODE_FILE,
                        }),
                    )
                    .unwrap(),
                ],
            };
            let err = apply_patch(dir.path(), &patch).unwrap_err();
            assert!(err.to_string().contains("unsafe path"), "{path}: {err}");
        }
        assert!(!dir.path().join(".git").exists());
    }

    #[test]
    fn drop_sections_names_what_it_dropped() {
        let (kept, dropped) =
            drop_sections(EDIT, |f| f.paths().any(|p| p == "src/new.py")).unwrap();
        assert_eq!(dropped, vec!["src/new.py"]);
        assert_eq!(touched_paths(&kept).unwrap().len(), 1);
    }

    #[test]
    fn diff_of_changes_edits_adds_and_deletes() {
        let dir = repo();
        std::fs::write(dir.path().join("src/gone.py"), "G = 1\n").unwrap();
        let diff = diff_of_changes(
            dir.path(),
            &[
                (
                    "src/m.py".into(),
                    Some("def f(x):\n    return x + 2\n\n".into()),
                ),
                ("src/new.py".into(), Some("X = 1\n".into())),
                ("src/gone.py".into(), None),
            ],
        )
        .unwrap();
        apply(dir.path(), &diff).unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join("src/m.py"))
                .unwrap()
                .contains("x + 2")
        );
        assert!(dir.path().join("src/new.py").exists());
        assert!(!dir.path().join("src/gone.py").exists());
        assert!(diff_of_changes(dir.path(), &[("../x".into(), None)]).is_err());
    }
}
