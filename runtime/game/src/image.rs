//! Repositories taken out of container images (SWE-bench, SWE-Gym, SWE-smith, R2E-Gym
//! ship theirs at `/testbed` inside an image with its own environment).
//!
//! Owns: copying the repository out of an image's unpacked root onto the host, giving it
//! the history the game needs (commit 1: the tree as the image has it; commit 2, with a
//! base patch: the patch applied, the clean original the game starts from: SWE-bench
//! images hold the benchmark's own bug until its gold patch is applied), the cache of
//! such repositories (keyed by image id, repository path and base patch), and
//! [`ImageMeta`], what a bug made on an image records for `ssr export swebench`.
//!
//! Also owns [`ImageGame`]: the game's environment on an image (the sandbox that enters
//! it, the run environment with the image's own `PATH` and never the host's
//! toolchains, and the repository taken out of it), opened the same way by every game
//! command (`inject`, `verify`, `evaluate`, `doctor`) and by `ssr selfplay`.
//!
//! Does not own: unpacking the image or running anything in it (`ssr_sandbox::image`),
//! git (`examples::create_from_steps`), patch application (`ssr_repo::Patch`).

use crate::RunEnv;
use crate::examples::{ExamplesError, Step, copy_tree, create_from_steps};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssr_sandbox::{
    ImageExec, ImageSandbox, SandboxError, UnpackedImage, first_engine, image_cache_dir,
    unpack_image,
};
use std::path::{Path, PathBuf};

/// The file in a bug's directory that records the image it was made on.
pub const IMAGE_META_FILE: &str = "image.json";

/// Where a repository taken out of an image came from: recorded next to the repository
/// and in every bug made on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The image name as given (`ssr-test-swebench:latest`).
    pub image: String,
    /// Its content id (`sha256:...`).
    pub image_id: String,
    /// The repository's path inside the image (`/testbed`).
    pub workdir: PathBuf,
    /// The base patch applied before the game's original, when one was given.
    pub base_patch: Option<String>,
    /// The commit holding the tree exactly as the image has it.
    pub image_commit: String,
    /// The game's original (HEAD): the image's tree plus the base patch.
    pub base_commit: String,
}

impl ImageMeta {
    /// Writes `image.json` into a bug's directory.
    pub fn write_to(&self, bug_dir: &Path) -> Result<(), ImageRepoError> {
        let path = bug_dir.join(IMAGE_META_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| ImageRepoError::Meta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|source| ImageRepoError::Io { path, source })
    }

    /// Reads a bug directory's `image.json`; `None` for a bug not made on an image.
    pub fn read_from(bug_dir: &Path) -> Result<Option<ImageMeta>, ImageRepoError> {
        let path = bug_dir.join(IMAGE_META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ImageRepoError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ImageRepoError::Meta {
                path,
                reason: e.to_string(),
            })
    }

    /// The fields a SWE-bench-style harness needs, on top of the instance's own, to
    /// rebuild the instance from the image: `image_name`, `image_id`, `workdir` (where
    /// the repository is), `base_patch` (apply it to the image's tree first; then the
    /// instance's `setup_patch`), and `image_commit` (the tree as the image has it).
    pub fn swebench_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("image_name".into(), self.image.clone().into());
        m.insert("image_id".into(), self.image_id.clone().into());
        m.insert(
            "workdir".into(),
            self.workdir.to_string_lossy().into_owned().into(),
        );
        m.insert(
            "base_patch".into(),
            self.base_patch.clone().unwrap_or_default().into(),
        );
        m.insert("image_commit".into(), self.image_commit.clone().into());
        m
    }
}

/// Why a repository could not be taken out of an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageRepoError {
    #[error("the image has no directory {workdir} (its repository path; pass --workdir)")]
    NoRepository { workdir: PathBuf },
    #[error("the repository path must be absolute, got {0}")]
    RelativeWorkdir(PathBuf),
    #[error("the base patch does not parse: {0}")]
    BasePatchParse(String),
    #[error("the base patch does not apply to the image's repository: {0}")]
    BasePatchApply(String),
    #[error(transparent)]
    Git(#[from] ExamplesError),
    #[error("reading the image from the engine: {0}")]
    Engine(#[source] SandboxError),
    #[error("{path}: {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The game's environment on a container image: commands enter it by [`ImageExec`],
/// test runs and agent shell commands get [`ImageGame::run_env`].
#[derive(Debug)]
pub struct ImageGame {
    pub sandbox: ImageSandbox,
    /// The image's own `PATH` over the game's defaults, no host mounts: the image's
    /// interpreter and packages, never the host's.
    pub run_env: RunEnv,
}

impl ImageGame {
    /// Enters `image` by `exec`, the repository at `workdir` (default: the image's
    /// `WORKDIR`, else `/repo`). Needs an engine that answers and the image in it.
    pub fn open(
        image: &str,
        exec: ImageExec,
        workdir: Option<PathBuf>,
    ) -> Result<ImageGame, SandboxError> {
        let sandbox = ImageSandbox::new(image, exec, workdir)?;
        let mut run_env = RunEnv::default();
        run_env.env.insert("PATH".into(), sandbox.info().path_var());
        Ok(ImageGame { sandbox, run_env })
    }

    /// One line for reports: which image, its id, how commands enter it, where the
    /// repository is.
    pub fn describe(&self) -> String {
        let info = self.sandbox.info();
        let how = match self.sandbox.exec_kind() {
            ImageExec::RootFs => "bubblewrap over its unpacked root",
            ImageExec::Docker => "`docker run` per command",
        };
        format!(
            "image {} ({}), {how}, repository at {}, no network",
            info.image,
            info.id.get(..19).unwrap_or(&info.id),
            self.sandbox.workdir().display()
        )
    }

    /// The repository at the image's repository path, with `base_patch` (its text)
    /// applied as the clean original: taken once per image id, path and patch into
    /// the image cache's `repos/`, and kept on the host.
    pub fn take_repo(&self, base_patch: Option<&str>) -> Result<ImageRepo, ImageRepoError> {
        let (_, program) = first_engine().map_err(ImageRepoError::Engine)?;
        let cache = image_cache_dir();
        let unpacked = unpack_image(&program, &self.sandbox.info().image, &cache)
            .map_err(ImageRepoError::Engine)?;
        repo_from_image(
            &unpacked,
            self.sandbox.workdir(),
            base_patch,
            &cache.join("repos"),
        )
    }
}

/// Reads a base patch file (`--base-patch FILE`, `base_patch` in a settings file).
pub fn read_base_patch(path: &Path) -> Result<String, ImageRepoError> {
    std::fs::read_to_string(path).map_err(io_error(path))
}

/// A repository on the host taken out of an image.
#[derive(Clone, Debug)]
pub struct ImageRepo {
    /// The git repository (read it, never write it: it is shared by every run on the image).
    pub repo: PathBuf,
    pub meta: ImageMeta,
    /// Whether this call made it (false: taken from the cache).
    pub fresh: bool,
}

/// A name for the repository directory from the image name (`ssr-test-swebench:latest`
/// → `ssr-test-swebench_latest`): it becomes the bug store's `repo` field.
fn repo_dir_name(image: &str) -> String {
    let name: String = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("image{name}")
    } else {
        name
    }
}

/// The repository at `workdir` of the unpacked image, with `base_patch` applied, as a
/// git repository under `cache/<key>/`. Made once per image id, repository path and
/// base patch; concurrent callers each build in private and rename into place.
pub fn repo_from_image(
    image: &UnpackedImage,
    workdir: &Path,
    base_patch: Option<&str>,
    cache: &Path,
) -> Result<ImageRepo, ImageRepoError> {
    if !workdir.is_absolute() {
        return Err(ImageRepoError::RelativeWorkdir(workdir.to_path_buf()));
    }
    let source = image
        .root
        .join(workdir.strip_prefix("/").unwrap_or(workdir));
    if !source.is_dir() {
        return Err(ImageRepoError::NoRepository {
            workdir: workdir.to_path_buf(),
        });
    }
    let patch = base_patch
        .map(|t| {
            ssr_repo::Patch::parse(t).map_err(|e| ImageRepoError::BasePatchParse(e.to_string()))
        })
        .transpose()?;
    let slot = cache.join(cache_key(image, workdir, base_patch));
    let name = repo_dir_name(&image.info.image);
    if let Some(meta) = cached_meta(&slot, image)? {
        return Ok(ImageRepo {
            repo: slot.join(&name),
            meta,
            fresh: false,
        });
    }
    std::fs::create_dir_all(cache).map_err(io_error(cache))?;
    let staging = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(cache)
        .map_err(io_error(cache))?;
    let dest = staging.path().join(&name);
    let (image_commit, base_commit) =
        build_history(image, workdir, &source, patch.as_ref(), &dest)?;
    let meta = ImageMeta {
        image: image.info.image.clone(),
        image_id: image.info.id.clone(),
        workdir: workdir.to_path_buf(),
        base_patch: base_patch.map(str::to_string),
        image_commit,
        base_commit,
    };
    publish(staging, &meta, &slot)?;
    Ok(ImageRepo {
        repo: slot.join(&name),
        meta,
        fresh: true,
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageRepoError {
    let path = path.to_path_buf();
    move |source| ImageRepoError::Io { path, source }
}

/// The cache slot of an image's repository: its content (image id), where in it, and
/// the base patch.
fn cache_key(image: &UnpackedImage, workdir: &Path, base_patch: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(image.info.id.as_bytes());
    h.update([0]);
    h.update(workdir.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(base_patch.unwrap_or("").as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

/// The metadata of a repository already built in `slot`, if one is.
fn cached_meta(slot: &Path, image: &UnpackedImage) -> Result<Option<ImageMeta>, ImageRepoError> {
    let meta_path = slot.join(IMAGE_META_FILE);
    if !meta_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&meta_path).map_err(io_error(&meta_path))?;
    let mut meta: ImageMeta = serde_json::from_str(&text).map_err(|e| ImageRepoError::Meta {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    // The same content under another name keeps the name it was asked for.
    meta.image.clone_from(&image.info.image);
    Ok(Some(meta))
}

/// The game's own history at `dest`: the image's tree as one commit, then the base
/// patch as another. Gives (the image's commit, the base commit).
fn build_history(
    image: &UnpackedImage,
    workdir: &Path,
    source: &Path,
    patch: Option<&ssr_repo::Patch>,
    dest: &Path,
) -> Result<(String, String), ImageRepoError> {
    let mut steps: Vec<Step<'_>> = vec![(
        format!(
            "{} as the image {} ({}) has it",
            workdir.display(),
            image.info.image,
            image.info.id
        ),
        Box::new(|dest: &Path| {
            // The image's own history (if any) is not the game's: the game needs one
            // it made, with known commits.
            copy_tree(source, dest, &|rel| rel == Path::new(".git")).map_err(|e| e.to_string())
        }),
    )];
    if let Some(patch) = patch {
        steps.push((
            "base patch: the clean original the game starts from".into(),
            Box::new(move |dest: &Path| patch.apply_to_dir(dest).map_err(|e| e.to_string())),
        ));
    }
    let created = create_from_steps(dest, steps).map_err(|e| match e {
        ExamplesError::BadSource { reason, .. } if reason.starts_with("base patch") => {
            ImageRepoError::BasePatchApply(reason)
        }
        other => ImageRepoError::Git(other),
    })?;
    let image_commit = if patch.is_some() {
        ssr_repo::Repo::open(dest)
            .and_then(|r| r.resolve("HEAD~1"))
            .map(|id| id.to_string())
            .unwrap_or_default()
    } else {
        created.head.clone()
    };
    Ok((image_commit, created.head))
}

/// Writes the metadata into the staging directory and renames it to `slot`; a caller
/// that finished first wins (the same content).
fn publish(
    staging: tempfile::TempDir,
    meta: &ImageMeta,
    slot: &Path,
) -> Result<(), ImageRepoError> {
    let meta_file = staging.path().join(IMAGE_META_FILE);
    let text = serde_json::to_string_pretty(meta).map_err(|e| ImageRepoError::Meta {
        path: slot.join(IMAGE_META_FILE),
        reason: e.to_string(),
    })?;
    std::fs::write(&meta_file, text).map_err(io_error(&meta_file))?;
    let built = staging.keep();
    match std::fs::rename(&built, slot) {
        Ok(()) => Ok(()),
        // Another caller finished first: same content.
        Err(_) if slot.join(IMAGE_META_FILE).is_file() => {
            let _ = std::fs::remove_dir_all(&built);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&built);
            Err(ImageRepoError::Io {
                path: slot.to_path_buf(),
                source: e,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_dir_name_keeps_safe_characters_only() {
        assert_eq!(
            repo_dir_name("ssr-test-swebench:latest"),
            "ssr-test-swebench_latest"
        );
        assert_eq!(
            repo_dir_name("swebench/sweb.eval.x86_64.astropy__astropy-12907:v1"),
            "sweb.eval.x86_64.astropy__astropy-12907_v1"
        );
        assert_eq!(repo_dir_name(".."), "image..");
    }
}
