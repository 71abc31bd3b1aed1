//! The five-file bug artifact (`SSR_SPEC.md` section 2): reading it from a directory
//! (both the canonical and the paper's spellings), writing it (canonical names only),
//! and the path rules for `test_files.txt`.
//!
//! Does not own: checking that the artifact is a valid bug (that is `verify`), or
//! applying its diffs (that is `patch_ops`).

use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// Canonical file names, written by [`Artifact::write_dir`].
pub const TEST_SCRIPT: &str = "test_script.sh";
pub const TEST_FILES: &str = "test_files.txt";
pub const TEST_PARSER: &str = "test_parser.py";
pub const BUG_INJECT: &str = "bug_inject.diff";
pub const TEST_WEAKEN: &str = "test_weaken.diff";

/// The paper's prompt names, accepted on input.
const TEST_PARSER_ALT: &str = "parse_test_output.py";
const BUG_INJECT_ALT: &str = "bug_patch.diff";
const TEST_WEAKEN_ALT: &str = "test_patch.diff";

/// Largest artifact file read (a diff of a whole repository is far below this); larger
/// files are refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Largest solver patch taken from a workspace, as a submitted file or as the
/// workspace's diff (one limit for both ways of answering): a patch is a diff like
/// the artifact's, so it has the artifact files' limit.
pub const MAX_PATCH_BYTES: u64 = MAX_FILE_BYTES;

/// A bug artifact as submitted by an injector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Bash script running the selected tests verbosely.
    pub test_script: String,
    /// Oracle test files, relative paths, one per entry (blank lines dropped).
    pub test_files: Vec<String>,
    /// Python script: test log on stdin, JSON `{id: "passed"|"failed"}` on stdout.
    pub test_parser: String,
    /// Code-only diff that introduces the bug.
    pub bug_inject: String,
    /// Diff over oracle test files that hides the bug.
    pub test_weaken: String,
}

/// Why an artifact directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact file `{name}` is missing in {dir} (accepted names: {accepted})")]
    Missing {
        dir: PathBuf,
        name: &'static str,
        accepted: String,
    },
    #[error("artifact file {path} is {size} bytes, more than the {max} allowed")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("artifact file {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("artifact file {path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a path in `test_files.txt` (or in a diff) is not an acceptable repository path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRuleError {
    #[error("path `{0}` is empty")]
    Empty(String),
    #[error("path `{0}` is absolute")]
    Absolute(String),
    #[error("path `{0}` leaves the repository (`..`)")]
    Escapes(String),
    #[error("path `{0}` points into `.git`")]
    GitDir(String),
}

/// Checks that `path` is a plain relative path inside a repository and returns it
/// normalised (no `./` components).
pub fn check_repo_path(path: &str) -> Result<String, PathRuleError> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err(PathRuleError::Empty(path.to_string()));
    }
    let p = Path::new(trimmed);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathRuleError::Escapes(path.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathRuleError::Absolute(path.to_string()));
            }
        }
    }
    if parts.is_empty() {
        return Err(PathRuleError::Empty(path.to_string()));
    }
    if parts[0] == ".git" {
        return Err(PathRuleError::GitDir(path.to_string()));
    }
    Ok(parts.join("/"))
}

/// Parses the lines of `test_files.txt`: blank lines and surrounding whitespace are
/// dropped; the paths are returned as written (validation is the verifier's check 1).
pub fn parse_test_files(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whose directory an artifact is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A bug store or a directory the operator named.
    Trusted,
    /// A model's workspace: a symbolic link could lead to host files.
    Submitted,
}

fn read_one(dir: &Path, names: &[&'static str], origin: Origin) -> Result<String, ArtifactError> {
    for name in names {
        let path = dir.join(name);
        let meta = match origin {
            Origin::Trusted => std::fs::metadata(&path),
            Origin::Submitted => std::fs::symlink_metadata(&path),
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArtifactError::Io { path, source }),
        };
        if !meta.file_type().is_file() {
            return Err(ArtifactError::NotRegular { path });
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ArtifactError::TooLarge {
                path,
                size: meta.len(),
                max: MAX_FILE_BYTES,
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| ArtifactError::Io {
            path: path.clone(),
            source,
        })?;
        return String::from_utf8(bytes).map_err(|_| ArtifactError::NotUtf8 { path });
    }
    Err(ArtifactError::Missing {
        dir: dir.to_path_buf(),
        name: names[0],
        accepted: names.join(" | "),
    })
}

impl Artifact {
    /// Reads the five files from `dir`, accepting the canonical or the paper's names.
    pub fn read_dir(dir: &Path) -> Result<Artifact, ArtifactError> {
        Self::read(dir, Origin::Trusted)
    }

    /// Reads the five files a model submitted in its workspace: as [`Artifact::read_dir`],
    /// but every file must be a regular file (a symbolic link is refused, not
    /// followed). The caller checks that `dir` itself stays inside the workspace.
    pub fn read_submitted(dir: &Path) -> Result<Artifact, ArtifactError> {
        Self::read(dir, Origin::Submitted)
    }

    fn read(dir: &Path, origin: Origin) -> Result<Artifact, ArtifactError> {
        let one = |names: &[&'static str]| read_one(dir, names, origin);
        Ok(Artifact {
            test_script: one(&[TEST_SCRIPT])?,
            test_files: parse_test_files(&one(&[TEST_FILES])?),
            test_parser: one(&[TEST_PARSER, TEST_PARSER_ALT])?,
            bug_inject: one(&[BUG_INJECT, BUG_INJECT_ALT])?,
            test_weaken: one(&[TEST_WEAKEN, TEST_WEAKEN_ALT])?,
        })
    }

    /// Writes the five files into `dir` (created if needed) under the canonical names.
    pub fn write_dir(&self, dir: &Path) -> Result<(), ArtifactError> {
        let io = |path: PathBuf| move |source| ArtifactError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let mut files_txt = self.test_files.join("\n");
        files_txt.push('\n');
        for (name, text) in [
            (TEST_SCRIPT, &self.test_script),
            (TEST_FILES, &files_txt),
            (TEST_PARSER, &self.test_parser),
            (BUG_INJECT, &self.bug_inject),
            (TEST_WEAKEN, &self.test_weaken),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(path.clone()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_are_normalised_and_escapes_refused() {
        assert_eq!(check_repo_path("./tests/a.py").unwrap(), "tests/a.py");
        assert_eq!(
            check_repo_path("../x"),
            Err(PathRuleError::Escapes("../x".into()))
        );
        assert_eq!(
            check_repo_path("a/../../x"),
            Err(PathRuleError::Escapes("a/../../x".into()))
        );
        assert_eq!(
            check_repo_path("/etc/passwd"),
            Err(PathRuleError::Absolute("/etc/passwd".into()))
        );
        assert!(matches!(
            check_repo_path(".git/config"),
            Err(PathRuleError::GitDir(_))
        ));
    }

    #[test]
    fn reads_paper_spellings_and_writes_canonical_names() {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in [
            ("test_script.sh", "s"),
            ("test_files.txt", "a.py\n\n b.py \n"),
            ("parse_test_output.py", "p"),
            ("bug_patch.diff", "b"),
            ("test_patch.diff", "w"),
        ] {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        let a = Artifact::read_dir(dir.path()).unwrap();
        assert_eq!(a.test_files, vec!["a.py", "b.py"]);
        assert_eq!(a.test_parser, "p");
        let out = tempfile::tempdir().unwrap();
        a.write_dir(out.path()).unwrap();
        for n in [
            TEST_SCRIPT,
            TEST_FILES,
            TEST_PARSER,
            BUG_INJECT,
            TEST_WEAKEN,
        ] {
            assert!(out.path().join(n).exists(), "{n}");
        }
        assert_eq!(Artifact::read_dir(out.path()).unwrap(), a);
    }

    #[test]
    fn missing_file_names_accepted_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let err = Artifact::read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("test_script.sh"), "{err}");
    }
}
