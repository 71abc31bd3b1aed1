//! Enforcement of a repository grant: the host side of the `workspace` import and the
//! set of protected files.
//!
//! Decision (why writes go through the host): WASI can only preopen directories, so a
//! read-write preopen of the repository cannot keep `conftest.py` or an oracle test
//! read-only, and a check after the call would have to walk and hash the repository on
//! every call and race the guest. So the repository is always preopened read-only to
//! WASI and every write is a host call that (1) normalises the path lexically and
//! refuses absolute paths and `..` escapes, (2) resolves symlinks with cap-std, which
//! refuses any that leave the repository, (3) matches both the written and the resolved
//! path against the protected globs and oracle files, and (4) writes a temporary file
//! and renames it into place, so a hard link to a protected file is replaced, never
//! written through. Revisit if WASI grows per-file permissions.
//!
//! Does not own the bash sandbox's view: `exec` passes the same protected files to the
//! sandbox as read-only mounts.

use crate::ToolError;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Files that stay read-only inside a read-write grant: globs from the policy plus the
/// episode's oracle files (exact repository-relative paths).
#[derive(Clone, Debug)]
pub struct Protected {
    /// Shared: compiling the glob set costs far more than a whole tool call.
    globs: std::sync::Arc<GlobSet>,
    /// Shared too: every call's grant copies the set.
    patterns: std::sync::Arc<[String]>,
    exact: BTreeSet<String>,
}

impl Protected {
    pub fn new(globs: &[String], exact: &[String]) -> Result<Protected, String> {
        let mut builder = GlobSetBuilder::new();
        for g in globs {
            let glob = GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("protected glob `{g}`: {e}"))?;
            builder.add(glob);
        }
        let exact = exact
            .iter()
            .filter_map(|p| normalize(p).ok())
            .collect::<BTreeSet<_>>();
        Ok(Protected {
            globs: std::sync::Arc::new(builder.build().map_err(|e| e.to_string())?),
            patterns: globs.into(),
            exact,
        })
    }

    /// The same globs with another episode's oracle files.
    pub fn with_exact(&self, exact: &[String]) -> Protected {
        Protected {
            globs: self.globs.clone(),
            patterns: self.patterns.clone(),
            exact: exact.iter().filter_map(|p| normalize(p).ok()).collect(),
        }
    }

    /// Whether the repository-relative `path` is protected.
    pub fn matches(&self, path: &str) -> bool {
        self.exact.contains(path) || self.globs.is_match(path)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.exact.is_empty()
    }

    /// Every existing protected file under `root`, repository-relative, for the
    /// sandbox's read-only mounts. Walks the tree (skipping `.git`), capped at
    /// `max_entries` visited entries.
    pub fn existing_files(&self, root: &Path, max_entries: usize) -> Vec<PathBuf> {
        let mut found: BTreeSet<PathBuf> = self
            .exact
            .iter()
            .filter(|p| root.join(p).symlink_metadata().is_ok())
            .map(PathBuf::from)
            .collect();
        if !self.patterns.is_empty() {
            let mut stack = vec![PathBuf::new()];
            let mut visited = 0usize;
            while let Some(rel) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    visited += 1;
                    if visited > max_entries {
                        return found.into_iter().collect();
                    }
                    let name = entry.file_name();
                    if name == ".git" {
                        continue;
                    }
                    let child = rel.join(&name);
                    let Ok(ft) = entry.file_type() else { continue };
                    if self.globs.is_match(&child) {
                        found.insert(child.clone());
                    }
                    if ft.is_dir() {
                        stack.push(child);
                    }
                }
            }
        }
        found.into_iter().collect()
    }
}

/// Lexical normalisation of a path the guest gave: relative, `/`-separated, no `.` or
/// `..` components, not empty. Refuses absolute paths and escapes.
pub fn normalize(raw: &str) -> Result<String, ToolError> {
    if raw.contains('\0') {
        return Err(ToolError::InvalidArguments(
            "path contains a NUL byte".into(),
        ));
    }
    if raw.starts_with('/') {
        return Err(ToolError::PermissionDenied(format!(
            "{raw}: absolute paths are outside the grant; use a path relative to the repository"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ToolError::PermissionDenied(format!(
                        "{raw}: leaves the repository"
                    )));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(ToolError::InvalidArguments(format!(
            "{raw}: names the repository itself, not a file"
        )));
    }
    Ok(parts.join("/"))
}

/// The repository as one call's tools see it for writing.
#[derive(Debug)]
pub struct WorkspaceGrant {
    path: PathBuf,
    /// Opened at the first write or removal: most calls only read (through WASI), and
    /// opening a directory is a system call with a path walk. It is the same path the
    /// call's WASI preopen opened, within the same call.
    root: std::cell::OnceCell<Dir>,
    writable: bool,
    protected: Protected,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl WorkspaceGrant {
    /// The grant of the directory `root` (opened when first written to).
    pub fn new(root: &Path, writable: bool, protected: Protected) -> Self {
        WorkspaceGrant {
            path: root.to_path_buf(),
            root: std::cell::OnceCell::new(),
            writable,
            protected,
        }
    }

    /// The repository directory, opened on first use.
    fn root(&self) -> Result<&Dir, ToolError> {
        if let Some(d) = self.root.get() {
            return Ok(d);
        }
        let dir = Dir::open_ambient_dir(&self.path, ambient_authority()).map_err(|e| {
            ToolError::Failed(format!(
                "the repository directory could not be opened for writing: {e}"
            ))
        })?;
        Ok(self.root.get_or_init(|| dir))
    }

    /// Resolves symlinks in the existing part of a normalised path. cap-std refuses
    /// symlinks that leave the repository; the rest of the path does not exist yet, so
    /// it cannot be a link.
    fn resolve(&self, lexical: &str) -> Result<String, ToolError> {
        let root = self.root()?;
        let parts: Vec<&str> = lexical.split('/').collect();
        let mut existing = parts.len();
        while existing > 0 && root.symlink_metadata(parts[..existing].join("/")).is_err() {
            existing -= 1;
        }
        let mut resolved = if existing == 0 {
            PathBuf::new()
        } else {
            root.canonicalize(parts[..existing].join("/"))
                .map_err(|e| escape_error(lexical, &e))?
        };
        for p in &parts[existing..] {
            resolved.push(p);
        }
        let resolved = resolved
            .to_str()
            .ok_or_else(|| ToolError::InvalidArguments(format!("{lexical}: not UTF-8")))?;
        normalize(resolved)
    }

    /// Checks that `raw` may be written and returns the resolved repository-relative
    /// path to write (symlinks inside the repository followed).
    fn writable_target(&self, raw: &str) -> Result<String, ToolError> {
        let lexical = normalize(raw)?;
        if !self.writable {
            return Err(ToolError::PermissionDenied(format!(
                "{lexical}: this tool's grant of the repository is read-only"
            )));
        }
        if self.protected.matches(&lexical) {
            return Err(protected_error(&lexical));
        }
        let resolved = self.resolve(&lexical)?;
        if self.protected.matches(&resolved) {
            return Err(protected_error(&resolved));
        }
        if let Ok(meta) = self.root()?.metadata(&resolved)
            && meta.is_dir()
        {
            return Err(ToolError::InvalidArguments(format!(
                "{lexical} is a directory"
            )));
        }
        Ok(resolved)
    }

    /// Atomically replaces (or creates) a file, keeping an existing file's permissions.
    pub fn write_file(&self, raw: &str, contents: &[u8]) -> Result<(), ToolError> {
        let target = self.writable_target(raw)?;
        let root = self.root()?;
        let path = Path::new(&target);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            root.create_dir_all(parent)
                .map_err(|e| io_error(&target, &e))?;
        }
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let temp = path.with_file_name(format!(
            ".{file_name}.ssr-tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let permissions = root.metadata(path).ok().map(|m| m.permissions());
        let result = (|| {
            let mut file = root.create(&temp)?;
            file.write_all(contents)?;
            if let Some(perms) = permissions {
                file.set_permissions(perms)?;
            }
            drop(file);
            root.rename(&temp, root, path)
        })();
        if let Err(e) = result {
            let _ = root.remove_file(&temp);
            return Err(io_error(&target, &e));
        }
        Ok(())
    }

    /// Removes a file (a symlink itself, never its target).
    pub fn remove_file(&self, raw: &str) -> Result<(), ToolError> {
        let lexical = normalize(raw)?;
        // The entry removed is the last component inside the resolved parent.
        let (parent, name) = match lexical.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, lexical.as_str()),
        };
        if !self.writable {
            return Err(ToolError::PermissionDenied(format!(
                "{lexical}: this tool's grant of the repository is read-only"
            )));
        }
        let resolved_parent = match parent {
            Some(p) => Some(self.resolve(p)?),
            None => None,
        };
        let entry = match resolved_parent {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        if self.protected.matches(&lexical) || self.protected.matches(&entry) {
            return Err(protected_error(&entry));
        }
        let root = self.root()?;
        let meta = root
            .symlink_metadata(&entry)
            .map_err(|e| io_error(&entry, &e))?;
        if meta.is_dir() {
            return Err(ToolError::InvalidArguments(format!(
                "{entry} is a directory"
            )));
        }
        root.remove_file(&entry).map_err(|e| io_error(&entry, &e))
    }
}

fn protected_error(path: &str) -> ToolError {
    ToolError::PermissionDenied(format!(
        "{path} is protected (an oracle test or test infrastructure) and stays read-only"
    ))
}

fn escape_error(path: &str, e: &std::io::Error) -> ToolError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ToolError::NotFound(format!("{path}: {e}"))
    } else {
        ToolError::PermissionDenied(format!("{path}: resolves outside the repository ({e})"))
    }
}

fn io_error(path: &str, e: &std::io::Error) -> ToolError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ToolError::NotFound(format!("{path}: {e}")),
        std::io::ErrorKind::PermissionDenied => ToolError::PermissionDenied(format!("{path}: {e}")),
        _ => ToolError::Failed(format!("{path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c").unwrap(), "a/c");
        assert!(matches!(
            normalize("../x"),
            Err(ToolError::PermissionDenied(_))
        ));
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(ToolError::PermissionDenied(_))
        ));
        assert!(matches!(
            normalize("a/../.."),
            Err(ToolError::PermissionDenied(_))
        ));
    }

    #[test]
    fn protected_globs_match_at_any_depth() {
        let p = Protected::new(&["**/conftest.py".into()], &["tests/test_a.py".into()]).unwrap();
        assert!(p.matches("conftest.py"));
        assert!(p.matches("pkg/tests/conftest.py"));
        assert!(p.matches("tests/test_a.py"));
        assert!(!p.matches("tests/test_b.py"));
    }
}
