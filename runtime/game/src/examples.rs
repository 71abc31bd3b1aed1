//! Example repositories for the game, built from source material that can be
//! committed (a nested `.git` cannot): each example under `examples/<name>/` holds
//! `commits/NN-slug/` directories replayed in order into a fresh git repository —
//! `message` (the commit message), `tree/` (files written, full contents) and an
//! optional `delete` (paths removed, one per line). Dates and identity are fixed, so
//! the same source always gives the same commit ids with the same git.
//!
//! Also builds a repository from a real third-party project: several sdists of a
//! PyPI package, fetched and unpacked in Rust by [`crate::fetch`] (sha256 checked, no
//! package code run: `pip download` would run the build backend) and committed in the
//! order given, one commit per version with only that release's files.
//!
//! Does not own: anything about bugs (the injectors read these repositories like any
//! other).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fixed identity of every example commit.
const AUTHOR_NAME: &str = "SSR Examples";
const AUTHOR_EMAIL: &str = "examples@ssr.local";
/// 2024-01-01T12:00:00Z; commit `i` is dated `i` days later.
const EPOCH: i64 = 1_704_110_400;

/// One repository that was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRepo {
    pub name: String,
    pub path: PathBuf,
    pub commits: usize,
    /// The commit id of HEAD.
    pub head: String,
}

/// Why an example could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    #[error("no example source found in {0} (expected <name>/commits/NN-slug/)")]
    NoExamples(PathBuf),
    #[error("{path} already exists; choose an empty output directory")]
    Exists { path: PathBuf },
    #[error("example source {path}: {reason}")]
    BadSource { path: PathBuf, reason: String },
    #[error("`{program} {args}` failed: {error}")]
    Command {
        program: String,
        args: String,
        error: String,
    },
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExamplesError {
    let path = path.to_path_buf();
    move |source| ExamplesError::Io { path, source }
}

fn run(
    program: &str,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, String)],
) -> Result<String, ExamplesError> {
    let fail = |error: String| ExamplesError::Command {
        program: program.to_string(),
        args: args.join(" "),
        error,
    };
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(fail(tail));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A git repository being written commit by commit.
struct Builder {
    dir: PathBuf,
    count: usize,
}

impl Builder {
    fn init(dir: &Path) -> Result<Builder, ExamplesError> {
        if dir.exists() {
            return Err(ExamplesError::Exists {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        run("git", &["init", "-q", "-b", "main"], dir, &[])?;
        Ok(Builder {
            dir: dir.to_path_buf(),
            count: 0,
        })
    }

    fn commit(&mut self, message: &str) -> Result<(), ExamplesError> {
        self.count += 1;
        let date = format!("@{} +0000", EPOCH + 86_400 * self.count as i64);
        let env = [
            ("GIT_AUTHOR_NAME", AUTHOR_NAME.to_string()),
            ("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL.to_string()),
            ("GIT_COMMITTER_NAME", AUTHOR_NAME.to_string()),
            ("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL.to_string()),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ];
        run("git", &["add", "-A"], &self.dir, &[])?;
        run(
            "git",
            &[
                "-c",
                "commit.gpgsign=false",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                message,
            ],
            &self.dir,
            &env,
        )?;
        Ok(())
    }

    fn head(&self) -> Result<String, ExamplesError> {
        run("git", &["rev-parse", "HEAD"], &self.dir, &[])
    }
}

/// The example sources under `source` (directories with a `commits/` folder).
pub fn list(source: &Path) -> Result<Vec<PathBuf>, ExamplesError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(source).map_err(io(source))? {
        let p = e.map_err(io(source))?.path();
        if p.join("commits").is_dir() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ExamplesError::NoExamples(source.to_path_buf()));
    }
    Ok(out)
}

/// Replays one example source into a new git repository at `dest`.
pub fn create_one(example: &Path, dest: &Path) -> Result<CreatedRepo, ExamplesError> {
    let commits_dir = example.join("commits");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&commits_dir)
        .map_err(io(&commits_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    commits.sort();
    let mut b = Builder::init(dest)?;
    for c in &commits {
        let message = std::fs::read_to_string(c.join("message")).map_err(io(&c.join("message")))?;
        if let Ok(list) = std::fs::read_to_string(c.join("delete")) {
            for rel in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let rel = crate::artifact::check_repo_path(rel).map_err(|e| {
                    ExamplesError::BadSource {
                        path: c.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let p = dest.join(rel);
                if p.is_file() {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
        let tree = c.join("tree");
        if tree.is_dir() {
            copy_tree(&tree, dest, &|_| false).map_err(|e| ExamplesError::BadSource {
                path: tree.clone(),
                reason: e.to_string(),
            })?;
        }
        b.commit(message.trim_end())?;
    }
    Ok(CreatedRepo {
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: dest.to_path_buf(),
        commits: b.count,
        head: b.head()?,
    })
}

/// Creates every example of `source` under `out/<name>`.
pub fn create_all(source: &Path, out: &Path) -> Result<Vec<CreatedRepo>, ExamplesError> {
    let mut created = Vec::new();
    for ex in list(source)? {
        let name = ex.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        created.push(create_one(&ex, &out.join(name))?);
    }
    Ok(created)
}

/// One release of a PyPI package to commit, optionally pinned to its sdist's sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedRelease {
    pub version: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Builds `dest` from sdists of a PyPI package, one commit per version in the order
/// given. Needs network access to PyPI; runs nothing of the package's.
pub fn create_from_pypi(
    package: &str,
    versions: &[String],
    dest: &Path,
) -> Result<CreatedRepo, ExamplesError> {
    let releases: Vec<PinnedRelease> = versions
        .iter()
        .map(|v| PinnedRelease {
            version: v.clone(),
            sha256: None,
        })
        .collect();
    create_from_pypi_pinned(package, &releases, dest)
}

/// [`create_from_pypi`] with each sdist's sha256 pinned (a corpus file's releases):
/// a release whose sdist on PyPI no longer has that digest is an error.
pub fn create_from_pypi_pinned(
    package: &str,
    releases: &[PinnedRelease],
    dest: &Path,
) -> Result<CreatedRepo, ExamplesError> {
    let client = crate::fetch::client()?;
    create_from_releases(package, releases, dest, &|r, top| {
        crate::fetch::fetch_sdist(&client, package, &r.version, r.sha256.as_deref(), top)
    })
}

/// Builds `dest` from `.crate` files of a crates.io crate, one commit per version in
/// the order given (each checked against its pinned sha256, or the index's checksum).
pub fn create_from_crates_pinned(
    krate: &str,
    releases: &[PinnedRelease],
    dest: &Path,
) -> Result<CreatedRepo, ExamplesError> {
    let client = crate::fetch::client()?;
    create_from_releases(krate, releases, dest, &|r, top| {
        crate::fetch::fetch_crate(&client, krate, &r.version, r.sha256.as_deref(), top)
    })
}

/// One commit per release: `fetch` unpacks a release into the directory it is given,
/// and the repository's tree is replaced by exactly those files.
fn create_from_releases(
    package: &str,
    releases: &[PinnedRelease],
    dest: &Path,
    fetch: &dyn Fn(&PinnedRelease, &Path) -> Result<String, crate::fetch::FetchError>,
) -> Result<CreatedRepo, ExamplesError> {
    if releases.is_empty() {
        return Err(ExamplesError::BadSource {
            path: PathBuf::from(package),
            reason: "no versions given".into(),
        });
    }
    let downloads = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
    let mut b = Builder::init(dest)?;
    for (k, r) in releases.iter().enumerate() {
        let v = &r.version;
        let top = downloads.path().join(k.to_string());
        fetch(r, &top)?;
        // Replace the tree: remove everything but .git, then copy the version in.
        for e in std::fs::read_dir(dest).map_err(io(dest))? {
            let p = e.map_err(io(dest))?.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io(&p))?;
            } else {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        copy_tree(&top, dest, &|rel| {
            rel.components().any(|c| {
                let s = c.as_os_str().to_string_lossy();
                s == ".git" || s.ends_with(".egg-info") || s == "__pycache__"
            })
        })
        .map_err(|e| ExamplesError::BadSource {
            path: top.clone(),
            reason: e.to_string(),
        })?;
        b.commit(&format!("Release {package} {v}"))?;
    }
    Ok(CreatedRepo {
        name: package.to_string(),
        path: dest.to_path_buf(),
        commits: b.count,
        head: b.head()?,
    })
}

/// One commit of [`create_from_steps`]: its message and the change it makes to the tree.
pub type Step<'a> = (String, Box<dyn FnOnce(&Path) -> Result<(), String> + 'a>);

/// Builds a git repository at `dest` (which must not exist) commit by commit: each step
/// changes the tree under `dest` and is committed with its message, with the examples'
/// fixed identity and dates. Used for repositories taken out of container images
/// (`crate::image`).
pub fn create_from_steps(dest: &Path, steps: Vec<Step<'_>>) -> Result<CreatedRepo, ExamplesError> {
    let mut b = Builder::init(dest)?;
    for (message, change) in steps {
        change(dest).map_err(|reason| ExamplesError::BadSource {
            path: dest.to_path_buf(),
            reason: format!("{message}: {reason}"),
        })?;
        b.commit(&message)?;
    }
    Ok(CreatedRepo {
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: dest.to_path_buf(),
        commits: b.count,
        head: b.head()?,
    })
}

/// Copies the tree under `src` into `dst` (which exists), skipping entries whose path
/// relative to `src` satisfies `skip`. Symlinks are copied as links, never followed.
/// (Building examples is a setup step: a plain copy is all it needs.)
pub(crate) fn copy_tree(
    src: &Path,
    dst: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> std::io::Result<()> {
    fn walk(
        root: &Path,
        dir: &Path,
        dst_root: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            if skip(rel) {
                continue;
            }
            let target = dst_root.join(rel);
            let ft = entry.file_type()?;
            if ft.is_dir() {
                std::fs::create_dir_all(&target)?;
                walk(root, &path, dst_root, skip)?;
            } else if ft.is_symlink() {
                if target.symlink_metadata().is_ok() {
                    std::fs::remove_file(&target)?;
                }
                std::os::unix::fs::symlink(std::fs::read_link(&path)?, &target)?;
            } else {
                std::fs::copy(&path, &target)?;
            }
        }
        Ok(())
    }
    walk(src, src, dst, skip)
}
