//! The patch operations the game needs, behind one narrow interface: which files a
//! `git diff` touches, reversing it, dropping some files' sections, and applying it
//! strictly (all or nothing) to a workspace directory.
//!
//! Why a local module: `ssr-repo` owns the pure-Rust `Patch`; the game only needs
//! these few operations, so every caller goes through here and the backend can be
//! swapped without touching the verifier. Parsing, reversing and filtering are done
//! here on the text; applying uses `git apply` (strict by default: nothing is written
//! when one hunk fails, and it refuses paths through symlinks).
//!
//! Does not own: running repository code (that is the sandbox), or deciding which
//! files a diff may touch (the verifier's check 1).

use crate::artifact::{PathRuleError, check_repo_path};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One file section of a diff: its path before and after (`None` for `/dev/null`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffFile {
    pub old: Option<String>,
    pub new: Option<String>,
    /// The section's text, header included.
    pub text: String,
}

impl DiffFile {
    /// Both paths (one for edits, two for renames).
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.old.iter().chain(
            self.new
                .iter()
                .filter(move |n| Some(*n) != self.old.as_ref()),
        )
    }
}

/// Why a diff could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("diff touches an unacceptable path: {0}")]
    BadPath(#[from] PathRuleError),
    #[error("malformed diff: {0}")]
    Malformed(String),
    #[error("diff does not apply: {0}")]
    DoesNotApply(String),
    #[error("could not run git: {0}")]
    Git(#[source] std::io::Error),
}

fn unquote(p: &str) -> String {
    let p = p.trim();
    if p.len() >= 2 && p.starts_with('"') && p.ends_with('"') {
        // git C-quotes unusual names; the common escapes are enough here.
        p[1..p.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\t", "\t")
            .replace("\\\\", "\\")
    } else {
        p.to_string()
    }
}

fn strip_side(p: &str, prefix: &str) -> Result<Option<String>, PatchError> {
    let p = unquote(p.split('\t').next().unwrap_or(""));
    if p == "/dev/null" {
        return Ok(None);
    }
    let rel = p.strip_prefix(prefix).unwrap_or(&p);
    Ok(Some(check_repo_path(rel)?))
}

/// Splits a diff into file sections and reads each one's paths. Accepts `git diff`
/// output and plain unified diffs (`--- a/x` / `+++ b/x`). Text before the first
/// section (a commit message) is ignored. Every path must stay inside the repository.
pub fn files(diff: &str) -> Result<Vec<DiffFile>, PatchError> {
    let lines: Vec<&str> = diff.split_inclusive('\n').collect();
    // Section starts: `diff --git` lines, or `--- ` lines not inside a git section.
    let mut starts = Vec::new();
    let mut saw_git = false;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("diff --git ") {
            starts.push(i);
            saw_git = true;
        }
    }
    if !saw_git {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].starts_with("--- ")
                && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "))
            {
                starts.push(i);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(lines.len());
        let section = &lines[s..end];
        let text: String = section.concat();
        let (mut old, mut new) = (None, None);
        let mut have_minus = false;
        let mut have_plus = false;
        let mut deleted = false;
        let mut added = false;
        for l in section {
            let l = l.trim_end_matches(['\n', '\r']);
            if let Some(p) = l.strip_prefix("--- ") {
                if !have_minus {
                    old = strip_side(p, "a/")?;
                    have_minus = true;
                }
            } else if let Some(p) = l.strip_prefix("+++ ") {
                if !have_plus {
                    new = strip_side(p, "b/")?;
                    have_plus = true;
                }
            } else if let Some(p) = l.strip_prefix("rename from ") {
                old = Some(check_repo_path(&unquote(p))?);
                have_minus = true;
            } else if let Some(p) = l.strip_prefix("rename to ") {
                new = Some(check_repo_path(&unquote(p))?);
                have_plus = true;
            } else if l.starts_with("deleted file mode") {
                deleted = true;
            } else if l.starts_with("new file mode") {
                added = true;
            } else if l.starts_with("@@") {
                break;
            }
        }
        if !have_minus || !have_plus {
            // A git section without ---/+++ (mode change, empty file, binary): read
            // the paths from the `diff --git a/X b/Y` header.
            let header = section[0].trim_end();
            let rest = header.strip_prefix("diff --git ").ok_or_else(|| {
                PatchError::Malformed(format!("section without file header: {header}"))
            })?;
            let (a, b) = split_git_header(rest)
                .ok_or_else(|| PatchError::Malformed(format!("unreadable header: {header}")))?;
            if !have_minus {
                old = if added { None } else { strip_side(&a, "a/")? };
            }
            if !have_plus {
                new = if deleted { None } else { strip_side(&b, "b/")? };
            }
        }
        if old.is_none() && new.is_none() {
            return Err(PatchError::Malformed("a file section names no path".into()));
        }
        out.push(DiffFile { old, new, text });
    }
    if out.is_empty() && !diff.trim().is_empty() {
        return Err(PatchError::Malformed(
            "no file sections (`diff --git` or `---`/`+++` headers) found".into(),
        ));
    }
    Ok(out)
}

fn split_git_header(rest: &str) -> Option<(String, String)> {
    if let Some(inner) = rest.strip_prefix('"') {
        let close = inner.find('"')? + 1;
        let a = &rest[..=close];
        let b = rest[close + 1..].trim();
        return Some((a.to_string(), b.to_string()));
    }
    // `a/X b/X`: split at the ` b/` that makes both halves equal when possible.
    let idx = rest.find(" b/")?;
    Some((rest[..idx].to_string(), rest[idx + 1..].to_string()))
}

/// Every path the diff touches (both sides of renames).
pub fn touched_paths(diff: &str) -> Result<BTreeSet<String>, PatchError> {
    Ok(files(diff)?
        .iter()
        .flat_map(|f| f.paths().cloned().collect::<Vec<_>>())
        .collect())
}

/// Keeps only the file sections for which `keep` is true.
pub fn filter(diff: &str, keep: impl Fn(&DiffFile) -> bool) -> Result<String, PatchError> {
    Ok(files(diff)?
        .into_iter()
        .filter(|f| keep(f))
        .map(|f| f.text)
        .collect())
}

/// The reverse of a diff: applying it undoes the original. Hunk headers' ranges are
/// swapped, `-`/`+` lines exchanged, additions become deletions and renames flip.
pub fn reverse(diff: &str) -> Result<String, PatchError> {
    let sections = files(diff)?;
    let mut out = String::with_capacity(diff.len());
    for f in sections {
        let mut minus_hdr: Option<String> = None;
        let mut in_hunk = false;
        for line in f.text.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            let nl = if line.ends_with('\n') { "\n" } else { "" };
            if in_hunk {
                if let Some(r) = body.strip_prefix('-') {
                    out.push_str(&format!("+{r}{nl}"));
                    continue;
                } else if let Some(r) = body.strip_prefix('+') {
                    out.push_str(&format!("-{r}{nl}"));
                    continue;
                } else if body.starts_with(' ') || body.starts_with('\\') || body.is_empty() {
                    out.push_str(line);
                    continue;
                }
                in_hunk = false;
            }
            if body.starts_with("@@") {
                in_hunk = true;
                out.push_str(&reverse_hunk_header(body));
                out.push_str(nl);
            } else if let Some(rest) = body.strip_prefix("diff --git ") {
                match split_git_header(rest) {
                    Some((a, b)) => {
                        let a2 = a.replacen("a/", "b/", 1);
                        let b2 = b.replacen("b/", "a/", 1);
                        out.push_str(&format!("diff --git {b2} {a2}{nl}"));
                    }
                    None => out.push_str(line),
                }
            } else if let Some(p) = body.strip_prefix("--- ") {
                minus_hdr = Some(p.to_string());
            } else if let Some(p) = body.strip_prefix("+++ ") {
                let old = minus_hdr.take().unwrap_or_default();
                let flip = |s: &str, from: &str, to: &str| {
                    if s == "/dev/null" {
                        s.to_string()
                    } else {
                        s.replacen(from, to, 1)
                    }
                };
                out.push_str(&format!("--- {}\n", flip(p, "b/", "a/")));
                out.push_str(&format!("+++ {}{nl}", flip(&old, "a/", "b/")));
            } else if let Some(m) = body.strip_prefix("new file mode ") {
                out.push_str(&format!("deleted file mode {m}{nl}"));
            } else if let Some(m) = body.strip_prefix("deleted file mode ") {
                out.push_str(&format!("new file mode {m}{nl}"));
            } else if let Some(p) = body.strip_prefix("rename from ") {
                out.push_str(&format!("rename to {p}{nl}"));
            } else if let Some(p) = body.strip_prefix("rename to ") {
                out.push_str(&format!("rename from {p}{nl}"));
            } else if let Some(p) = body.strip_prefix("old mode ") {
                out.push_str(&format!("new mode {p}{nl}"));
            } else if let Some(p) = body.strip_prefix("new mode ") {
                out.push_str(&format!("old mode {p}{nl}"));
            } else if let Some(rest) = body.strip_prefix("index ") {
                // `index abc..def 100644` → `index def..abc 100644`
                let mut parts = rest.splitn(2, ' ');
                let ids = parts.next().unwrap_or("");
                let mode = parts.next();
                let swapped = match ids.split_once("..") {
                    Some((x, y)) => format!("{y}..{x}"),
                    None => ids.to_string(),
                };
                match mode {
                    Some(m) => out.push_str(&format!("index {swapped} {m}{nl}")),
                    None => out.push_str(&format!("index {swapped}{nl}")),
                }
            } else {
                out.push_str(line);
            }
        }
    }
    Ok(out)
}

fn reverse_hunk_header(h: &str) -> String {
    // @@ -a,b +c,d @@ tail
    let inner = h.trim_start_matches('@').trim_start();
    let end = inner.find(" @@").unwrap_or(inner.len());
    let ranges = &inner[..end];
    let tail = &inner[end..];
    let mut it = ranges.split_whitespace();
    let (Some(old), Some(new)) = (it.next(), it.next()) else {
        return h.to_string();
    };
    format!(
        "@@ -{} +{}{}",
        new.trim_start_matches('+'),
        old.trim_start_matches('-'),
        tail
    )
}

/// Applies `diff` to the directory `dir`, all or nothing. An empty diff is a no-op.
pub fn apply(dir: &Path, diff: &str) -> Result<(), PatchError> {
    if files(diff)?.is_empty() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir);
    let mut child = Command::new("git")
        .args(["apply", "--whitespace=nowarn", "--recount", "-"])
        .current_dir(dir)
        // Never let git discover an enclosing repository of the workspace.
        .env("GIT_CEILING_DIRECTORIES", parent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(PatchError::Git)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let text = diff.to_string();
    // Feed from a thread: a large diff must not dead-lock against git's output pipe.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().map_err(PatchError::Git)?;
    let _ = feeder.join();
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: String = msg.lines().take(8).collect::<Vec<_>>().join("; ");
        Err(PatchError::DoesNotApply(msg))
    }
}

/// One file change for [`diff_of_changes`]: new content, or `None` to delete.
pub type FileChange = (String, Option<String>);

/// Writes the `git diff` that turns the files of `original` into `changes` (paths
/// relative to the repository; `None` deletes). Only the touched files are copied
/// into a throw-away git repository, so this is cheap on large repositories.
pub fn diff_of_changes(original: &Path, changes: &[FileChange]) -> Result<String, PatchError> {
    let tmp = tempfile::Builder::new()
        .prefix("ssr-diff-")
        .tempdir()
        .map_err(PatchError::Git)?;
    let root = tmp.path();
    let git = |args: &[&str]| -> Result<String, PatchError> {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=ssr",
                "-c",
                "user.email=ssr@localhost",
                "-c",
                "core.quotepath=off",
            ])
            .args(args)
            .current_dir(root)
            .env("GIT_CEILING_DIRECTORIES", root.parent().unwrap_or(root))
            .output()
            .map_err(PatchError::Git)?;
        if !out.status.success() {
            return Err(PatchError::Malformed(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    git(&["init", "-q"])?;
    for (rel, _) in changes {
        let rel = check_repo_path(rel)?;
        let src = original.join(&rel);
        if src.is_file() {
            let dst = root.join(&rel);
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p).map_err(PatchError::Git)?;
            }
            std::fs::copy(&src, &dst).map_err(PatchError::Git)?;
        }
    }
    git(&["add", "-A"])?;
    git(&["commit", "-q", "--allow-empty", "-m", "base"])?;
    for (rel, content) in changes {
        let dst = root.join(check_repo_path(rel)?);
        match content {
            Some(text) => {
                if let Some(p) = dst.parent() {
                    std::fs::create_dir_all(p).map_err(PatchError::Git)?;
                }
                std::fs::write(&dst, text).map_err(PatchError::Git)?;
            }
            None => {
                if dst.exists() {
                    std::fs::remove_file(&dst).map_err(PatchError::Git)?;
                }
            }
        }
    }
    git(&["add", "-A"])?;
    git(&["diff", "--cached", "--no-renames", "--no-color", "HEAD"])
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

    #[test]
    fn files_and_paths_are_read() {
        let f = files(EDIT).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].old, None);
        assert_eq!(f[1].new.as_deref(), Some("src/new.py"));
        let t = touched_paths(EDIT).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec!["src/m.py", "src/new.py"]
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        let bad = "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n";
        assert!(matches!(files(bad), Err(PatchError::BadPath(_))));
    }

    #[test]
    fn reverse_round_trips_through_apply() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let orig = "def f(x):\n    return x + 1\n\n";
        std::fs::write(dir.path().join("src/m.py"), orig).unwrap();
        apply(dir.path(), EDIT).unwrap();
        assert!(dir.path().join("src/new.py").exists());
        let rev = reverse(EDIT).unwrap();
        apply(dir.path(), &rev).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/m.py")).unwrap(),
            orig
        );
        assert!(!dir.path().join("src/new.py").exists());
        assert_eq!(reverse(&rev).unwrap(), EDIT);
    }

    #[test]
    fn failed_apply_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/m.py"), "something else\n").unwrap();
        let err = apply(dir.path(), EDIT).unwrap_err();
        assert!(err.to_string().contains("src/m.py"), "{err}");
        assert!(!dir.path().join("src/new.py").exists());
    }

    #[test]
    fn filter_drops_sections() {
        let kept = filter(EDIT, |f| f.new.as_deref() != Some("src/new.py")).unwrap();
        assert_eq!(touched_paths(&kept).unwrap().len(), 1);
    }
}
