//! The protected set: the oracle test files of an artifact plus the test
//! infrastructure (files that change how tests are collected or run: `conftest.py`,
//! `sitecustomize.py`, `*.pth`, pytest and tox configuration, `build.rs`, cargo's
//! configuration, ...), matched by configurable globs.
//!
//! One definition serves both ends of a solver attempt: the episode makes these paths
//! read-only for the solver's tools (`episode`), and the evaluator drops every section
//! of a solver patch that touches one (`evaluate`), so a patch made outside the tools
//! (or a new file the tools could not stop) cannot change how the oracle runs.
//!
//! Does not own: enforcing read-only access (the tool host and sandbox), or which
//! paths a bug may touch (the verifier's check 1).

use crate::artifact::check_repo_path;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::BTreeSet;

/// The default test-infrastructure globs (`SSR_SPEC.md` section 4, **[decision]**),
/// relative to the repository root; `**/x` also matches `x` at the root.
pub const DEFAULT_PROTECTED_GLOBS: &[&str] = &[
    // pytest: plugins, configuration, and code every Python process imports.
    "**/conftest.py",
    "**/pytest.ini",
    "**/.pytest.ini",
    "**/tox.ini",
    "**/setup.cfg",
    "**/pyproject.toml",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "**/*.pth",
    // cargo: build scripts and configuration that run before or around the tests.
    "**/build.rs",
    "**/.cargo/config.toml",
    "**/.cargo/config",
    "**/rust-toolchain",
    "**/rust-toolchain.toml",
];

/// A glob that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob `{glob}`: {error}")]
pub struct GlobError {
    pub glob: String,
    pub error: String,
}

/// Compiles globs; `**/x` also matches `x` at the root.
pub fn globset(globs: &[String]) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    let mut add = |g: &str, orig: &str| -> Result<(), GlobError> {
        let glob = Glob::new(g).map_err(|e| GlobError {
            glob: orig.to_string(),
            error: e.to_string(),
        })?;
        b.add(glob);
        Ok(())
    };
    for g in globs {
        add(g, g)?;
        if let Some(rest) = g.strip_prefix("**/") {
            add(rest, g)?;
        }
    }
    b.build().map_err(|e| GlobError {
        glob: globs.join(","),
        error: e.to_string(),
    })
}

/// The paths of a repository that the solver may not change.
#[derive(Clone, Debug)]
pub struct ProtectedSet {
    oracle: BTreeSet<String>,
    infrastructure: GlobSet,
    globs: Vec<String>,
}

impl ProtectedSet {
    /// The oracle files `test_files` (unacceptable paths are skipped: check 1 has
    /// refused them already) and the infrastructure `globs`.
    pub fn new(test_files: &[String], globs: &[String]) -> Result<ProtectedSet, GlobError> {
        Ok(ProtectedSet {
            oracle: test_files
                .iter()
                .filter_map(|f| check_repo_path(f).ok())
                .collect(),
            infrastructure: globset(globs)?,
            globs: globs.to_vec(),
        })
    }

    /// True for an oracle file.
    pub fn is_oracle(&self, path: &str) -> bool {
        self.oracle.contains(path)
    }

    /// True for a path matching the infrastructure globs.
    pub fn is_infrastructure(&self, path: &str) -> bool {
        self.infrastructure.is_match(path)
    }

    /// True when `path` is protected (oracle or infrastructure).
    pub fn contains(&self, path: &str) -> bool {
        self.is_oracle(path) || self.is_infrastructure(path)
    }

    /// The oracle files, sorted.
    pub fn oracle(&self) -> impl Iterator<Item = &String> {
        self.oracle.iter()
    }

    /// The infrastructure globs.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }
}

/// [`DEFAULT_PROTECTED_GLOBS`] as owned strings.
pub fn default_globs() -> Vec<String> {
    DEFAULT_PROTECTED_GLOBS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_and_infrastructure_are_protected_at_any_depth() {
        let set = ProtectedSet::new(&["tests/test_a.py".into()], &default_globs()).unwrap();
        for p in [
            "tests/test_a.py",
            "conftest.py",
            "tests/conftest.py",
            "sitecustomize.py",
            "src/sitecustomize.py",
            "evil.pth",
            "pytest.ini",
            "setup.cfg",
            "pyproject.toml",
            "build.rs",
            ".cargo/config.toml",
            "sub/.cargo/config.toml",
        ] {
            assert!(set.contains(p), "{p}");
        }
        for p in ["src/m.py", "tests/test_b.py", "src/lib.rs", "Cargo.toml"] {
            assert!(!set.contains(p), "{p}");
        }
    }

    #[test]
    fn bad_glob_is_a_typed_error() {
        assert!(ProtectedSet::new(&[], &["a[".into()]).is_err());
    }
}
