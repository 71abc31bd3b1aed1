//! The pinned corpus of real projects (`corpus/corpus.toml`): which PyPI packages and
//! crates.io crates, which releases (each pinned to its archive's sha256), the traits
//! each project stands for, and the settings its tests need. Building a project turns
//! its releases into a git history, one commit per release (see `examples`), with the
//! archives fetched and unpacked in Rust (see `fetch`): no project code runs on the
//! host.
//!
//! Does not own: running the game on the projects (the `ssr corpus` command drives
//! the injectors and the evaluator) or the download itself.

use crate::examples::{self, CreatedRepo, ExamplesError, PinnedRelease};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a project's releases come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Pypi,
    Crates,
}

/// One project of the corpus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusProject {
    /// The name of its repository (a directory name).
    pub name: String,
    pub source: Source,
    /// The package (PyPI) or crate (crates.io) name.
    pub package: String,
    /// What the project covers (layout, framework, indentation, suite size...).
    #[serde(default)]
    pub traits: Vec<String>,
    /// Variables the tests need (`--test-env KEY=VALUE` for `ssr inject`).
    #[serde(default)]
    pub test_env: BTreeMap<String, String>,
    /// Oldest first.
    pub releases: Vec<PinnedRelease>,
}

/// The whole corpus file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corpus {
    pub project: Vec<CorpusProject>,
}

/// Why the corpus file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Corpus {
    /// Reads and checks a corpus file: unique plain names, at least one release each,
    /// every release pinned to a 64-hex-digit sha256.
    pub fn load(path: &Path) -> Result<Corpus, CorpusError> {
        let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Corpus::parse(&text).map_err(|reason| CorpusError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// [`Corpus::load`] on text; the error is the reason.
    pub fn parse(text: &str) -> Result<Corpus, String> {
        let corpus: Corpus = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names = std::collections::BTreeSet::new();
        for p in &corpus.project {
            let plain = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            };
            if !plain(&p.name) {
                return Err(format!("project name `{}` is not a plain name", p.name));
            }
            if !names.insert(p.name.clone()) {
                return Err(format!("project `{}` is listed twice", p.name));
            }
            if p.releases.is_empty() {
                return Err(format!("project `{}` has no releases", p.name));
            }
            for r in &p.releases {
                let pinned = r
                    .sha256
                    .as_deref()
                    .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()));
                if !pinned {
                    return Err(format!(
                        "project `{}` release {} is not pinned to a sha256 (64 hex digits)",
                        p.name, r.version
                    ));
                }
            }
        }
        Ok(corpus)
    }
}

impl CorpusProject {
    /// Builds the project's repository at `dest` (one commit per release).
    pub fn build(&self, dest: &Path) -> Result<CreatedRepo, ExamplesError> {
        match self.source {
            Source::Pypi => examples::create_from_pypi_pinned(&self.package, &self.releases, dest),
            Source::Crates => {
                examples::create_from_crates_pinned(&self.package, &self.releases, dest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_pinned_corpus_is_read() {
        let text = format!(
            "[[project]]\nname = \"p\"\nsource = \"pypi\"\npackage = \"p\"\ntraits = [\"flat\"]\ntest_env = {{ K = \"v\" }}\nreleases = [{{ version = \"1.0\", sha256 = \"{PIN}\" }}]\n"
        );
        let c = Corpus::parse(&text).unwrap();
        assert_eq!(c.project[0].source, Source::Pypi);
        assert_eq!(c.project[0].test_env["K"], "v");
    }

    /// The shipped corpus file stays loadable and pinned.
    #[test]
    fn the_shipped_corpus_parses() {
        let c = Corpus::parse(include_str!("../../../corpus/corpus.toml")).unwrap();
        assert!(c.project.len() >= 12, "{}", c.project.len());
        assert!(c.project.iter().any(|p| p.source == Source::Crates));
    }

    #[test]
    fn unpinned_duplicate_or_odd_entries_are_refused() {
        let one = |name: &str, rel: &str| {
            format!(
                "[[project]]\nname = \"{name}\"\nsource = \"crates\"\npackage = \"x\"\nreleases = [{rel}]\n"
            )
        };
        let unpinned = one("p", "{ version = \"1\" }");
        assert!(Corpus::parse(&unpinned).unwrap_err().contains("not pinned"));
        let ok = one("p", &format!("{{ version = \"1\", sha256 = \"{PIN}\" }}"));
        assert!(
            Corpus::parse(&format!("{ok}{ok}"))
                .unwrap_err()
                .contains("twice")
        );
        let odd = one(
            "../p",
            &format!("{{ version = \"1\", sha256 = \"{PIN}\" }}"),
        );
        assert!(Corpus::parse(&odd).unwrap_err().contains("plain name"));
        assert!(
            Corpus::parse(&one("p", ""))
                .unwrap_err()
                .contains("no releases")
        );
        let typo = format!("{ok}tset_env = {{}}\n");
        assert!(Corpus::parse(&typo).is_err());
    }
}
