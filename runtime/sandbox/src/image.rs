//! Image-based environments (SWE-bench-style container images): how a command enters an
//! image's environment, chosen by [`ImageExec`].
//!
//! - [`ImageExec::Docker`]: `docker run` per command through [`DockerSandbox`].
//! - [`ImageExec::RootFs`]: bubblewrap over the image's root filesystem, unpacked once
//!   from the engine (`docker create` + `docker export`) into a cache keyed by the image
//!   id, then used as an ordinary [`RootFs::Dir`]: no second isolation mechanism.
//!
//! Owns: the image's metadata read from the engine ([`ImageInfo`]: id, `PATH`, working
//! directory), the unpacked-rootfs cache, the workspace's place inside the image (the
//! image's repository path, `/testbed` for SWE-bench), and [`KeptContainer`] (one
//! container kept for a series of `docker exec`s, measured by `ssr bench sandbox`).
//! Does not own: the `docker run` command line or the sweep of stale containers
//! (`docker`), the bubblewrap command line (`bwrap`), or taking a repository out of an
//! image (the game does that with [`unpack_image`]'s tree).

use crate::bwrap::BwrapSandbox;
use crate::docker::{
    DockerSandbox, Engine, NAME_PREFIX, OWNER_LABEL, boot_id, engine_env, engine_output,
    first_engine, next_seq,
};
use crate::spec::{Environment, ExecOutcome, ExecSpec, RootFs, Sandbox, SandboxError};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How commands enter an image's environment.
/// Its names are the same on the command line (`--image-exec`) and in settings files
/// (`image_exec = "rootfs"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImageExec {
    /// `docker run` (or podman) per command.
    #[serde(rename = "docker")]
    Docker,
    /// Bubblewrap over the image's root filesystem unpacked once (the default: see
    /// `ssr bench sandbox --image` and NOTES.md for the measured reason).
    #[default]
    #[serde(rename = "rootfs")]
    RootFs,
}

impl ImageExec {
    /// The name `--image-exec` takes.
    pub fn name(self) -> &'static str {
        match self {
            ImageExec::Docker => "docker",
            ImageExec::RootFs => "rootfs",
        }
    }
}

impl std::str::FromStr for ImageExec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [ImageExec::Docker, ImageExec::RootFs]
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("`{s}` is not an image exec (docker|rootfs)"))
    }
}

/// What the engine says about an image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    pub image: String,
    /// The content id (`sha256:...`): the unpacked cache's key.
    pub id: String,
    /// The image's `ENV` entries (`PATH` among them), in order.
    pub env: Vec<(String, String)>,
    /// The image's `WORKDIR` (empty when unset).
    pub working_dir: String,
}

impl ImageInfo {
    /// The image's `PATH`, or Debian's default when it sets none.
    pub fn path_var(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            })
    }
}

/// Reads `image`'s id, environment and working directory from the engine.
pub fn inspect_image(program: &Path, image: &str) -> Result<ImageInfo, SandboxError> {
    let unavailable = |reason: String| SandboxError::Unavailable {
        backend: "docker",
        reason,
    };
    let out = engine_output(
        program,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}\n{{.Config.WorkingDir}}\n{{range .Config.Env}}{{println .}}{{end}}",
            image,
        ],
    )
    .map_err(|e| unavailable(format!("image `{image}` is not in the engine: {e}")))?;
    let mut lines = out.lines();
    let id = lines.next().unwrap_or_default().trim().to_string();
    if id.is_empty() {
        return Err(unavailable(format!("image `{image}` has no id")));
    }
    let working_dir = lines.next().unwrap_or_default().trim().to_string();
    let env = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(ImageInfo {
        image: image.to_string(),
        id,
        env,
        working_dir,
    })
}

/// The directory unpacked images are kept in: `$SSR_IMAGE_CACHE`, else
/// `$XDG_CACHE_HOME/ssr/rootfs`, else `~/.cache/ssr/rootfs`, else `/var/tmp/ssr-rootfs`.
pub fn image_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SSR_IMAGE_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("ssr/rootfs");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/ssr/rootfs");
    }
    PathBuf::from("/var/tmp/ssr-rootfs")
}

/// An image's root filesystem on the host.
#[derive(Clone, Debug)]
pub struct UnpackedImage {
    pub info: ImageInfo,
    /// The root directory (read it only: it is shared by every user of the image).
    pub root: PathBuf,
    /// Whether this call unpacked it (false: taken from the cache).
    pub fresh: bool,
    /// Time spent unpacking (zero from the cache).
    pub unpack: Duration,
}

/// The root filesystem of `image`, unpacked from `program`'s engine into
/// `cache/<id>` on first use. Concurrent callers each unpack into a private directory
/// and rename it into place; the loser drops its copy, so a present directory is always
/// complete.
pub fn unpack_image(
    program: &Path,
    image: &str,
    cache: &Path,
) -> Result<UnpackedImage, SandboxError> {
    let info = inspect_image(program, image)?;
    let root = cache.join(info.id.replace(':', "-"));
    if root.is_dir() {
        return Ok(UnpackedImage {
            info,
            root,
            fresh: false,
            unpack: Duration::ZERO,
        });
    }
    let start = Instant::now();
    std::fs::create_dir_all(cache)?;
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(cache)?;
    let name = format!("{NAME_PREFIX}{}-unpack-{}", std::process::id(), next_seq());
    engine_output(
        program,
        &[
            "create",
            "--name",
            &name,
            "--label",
            &format!("{OWNER_LABEL}={}", boot_id()),
            &info.id,
            "true",
        ],
    )
    .map_err(|reason| SandboxError::Unavailable {
        backend: "docker",
        reason,
    })?;
    let exported = export_into(program, &name, staging.path());
    let _ = engine_output(program, &["rm", "-f", &name]);
    exported?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &root) {
        Ok(()) => {}
        // Another caller finished first: its copy is as good as ours.
        Err(_) if root.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e.into());
        }
    }
    Ok(UnpackedImage {
        info,
        root,
        fresh: true,
        unpack: start.elapsed(),
    })
}

/// `engine export NAME | tar -x -C dir`. Device nodes are left out: bubblewrap gives
/// the sandbox its own `/dev`.
fn export_into(program: &Path, name: &str, dir: &Path) -> Result<(), SandboxError> {
    let mut export = std::process::Command::new(program)
        .args(["export", name])
        .env_clear()
        .envs(engine_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SandboxError::Spawn)?;
    let pipe = export.stdout.take().expect("piped stdout");
    let tar = std::process::Command::new("tar")
        .args(["-x", "--exclude=dev/*", "-C"])
        .arg(dir)
        .stdin(pipe)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(SandboxError::Spawn)?;
    let exp = export.wait_with_output()?;
    if !exp.status.success() || !tar.status.success() {
        return Err(SandboxError::Unavailable {
            backend: "docker",
            reason: format!(
                "unpacking the image failed: export {}: {}; tar {}: {}",
                exp.status,
                String::from_utf8_lossy(&exp.stderr).trim(),
                tar.status,
                String::from_utf8_lossy(&tar.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// A sandbox over a container image: commands see the image's root filesystem, the
/// image's `PATH`, and the workspace at the image's repository path.
pub struct ImageSandbox {
    inner: Box<dyn Sandbox>,
    info: ImageInfo,
    exec: ImageExec,
    workdir: PathBuf,
    /// The unpacked root ([`ImageExec::RootFs`] only).
    root: Option<PathBuf>,
}

impl std::fmt::Debug for ImageSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSandbox")
            .field("image", &self.info.image)
            .field("exec", &self.exec)
            .field("workdir", &self.workdir)
            .field("root", &self.root)
            .finish()
    }
}

impl ImageSandbox {
    /// A sandbox over `image` entered by `exec`. The workspace is mounted at `workdir`
    /// (default: the image's `WORKDIR`, else `/repo`). Both mechanisms need an engine
    /// that answers (the rootfs path to unpack the image once).
    pub fn new(
        image: &str,
        exec: ImageExec,
        workdir: Option<PathBuf>,
    ) -> Result<Self, SandboxError> {
        let (engine, program) = first_engine()?;
        Self::with_engine(image, exec, workdir, engine, program, &image_cache_dir())
    }

    /// As [`ImageSandbox::new`] with the engine and cache given.
    pub fn with_engine(
        image: &str,
        exec: ImageExec,
        workdir: Option<PathBuf>,
        engine: Engine,
        program: PathBuf,
        cache: &Path,
    ) -> Result<Self, SandboxError> {
        let mut env = Environment {
            env_allowlist: vec!["LANG".into(), "LC_ALL".into(), "TERM".into()],
            ..Environment::default()
        };
        let (inner, info, root): (Box<dyn Sandbox>, _, _) = match exec {
            ImageExec::Docker => {
                let info = inspect_image(&program, image)?;
                env.rootfs = RootFs::Image(image.to_string());
                env.env.insert("PATH".into(), info.path_var());
                let sb = DockerSandbox::with_engine(env, engine, program)?;
                (Box::new(sb), info, None)
            }
            ImageExec::RootFs => {
                let unpacked = unpack_image(&program, image, cache)?;
                env.rootfs = RootFs::Dir(unpacked.root.clone());
                env.env.insert("PATH".into(), unpacked.info.path_var());
                let sb = BwrapSandbox::new(env)?;
                (Box::new(sb), unpacked.info, Some(unpacked.root))
            }
        };
        let workdir = workdir.unwrap_or_else(|| {
            if info.working_dir.starts_with('/') && info.working_dir != "/" {
                PathBuf::from(&info.working_dir)
            } else {
                PathBuf::from("/repo")
            }
        });
        if !workdir.is_absolute() || workdir == Path::new("/") {
            return Err(SandboxError::InvalidSpec(format!(
                "the image's repository path must be an absolute directory below /, got {}",
                workdir.display()
            )));
        }
        Ok(ImageSandbox {
            inner,
            info,
            exec,
            workdir,
            root,
        })
    }

    pub fn info(&self) -> &ImageInfo {
        &self.info
    }

    pub fn exec_kind(&self) -> ImageExec {
        self.exec
    }

    /// Where the workspace is mounted inside the image.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The unpacked root filesystem ([`ImageExec::RootFs`]).
    pub fn unpacked_root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}

impl Sandbox for ImageSandbox {
    fn name(&self) -> &'static str {
        match self.exec {
            ImageExec::Docker => self.inner.name(),
            ImageExec::RootFs => "bwrap-image",
        }
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        // Callers that did not choose a place get the image's repository path: a
        // SWE-bench image's environment expects its code at /testbed.
        if spec.workspace_guest == Path::new("/repo") && self.workdir != Path::new("/repo") {
            let mut moved = spec.clone();
            moved.workspace_guest.clone_from(&self.workdir);
            return self.inner.exec(&moved);
        }
        self.inner.exec(spec)
    }
}

/// One container kept running for a series of `docker exec`s over one workspace (the
/// third mechanism `ssr bench sandbox --image` measures). Same isolation flags as
/// [`DockerSandbox`]'s `run`; removed on drop, and swept like any other container of
/// this crate when its maker dies.
pub struct KeptContainer {
    program: PathBuf,
    name: String,
}

impl KeptContainer {
    /// Starts `image` with `workspace` mounted read-write at `guest`.
    pub fn start(
        program: &Path,
        image: &str,
        workspace: &Path,
        guest: &Path,
    ) -> Result<Self, SandboxError> {
        let name = format!("{NAME_PREFIX}{}-kept-{}", std::process::id(), next_seq());
        let vol = format!("{}:{}:rw", workspace.display(), guest.display());
        engine_output(
            program,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                &format!("{OWNER_LABEL}={}", boot_id()),
                "--network",
                "none",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--read-only",
                "--init",
                "-v",
                &vol,
                "-w",
                &guest.to_string_lossy(),
                image,
                "sleep",
                "infinity",
            ],
        )
        .map_err(|reason| SandboxError::Unavailable {
            backend: "docker",
            reason,
        })?;
        Ok(KeptContainer {
            program: program.to_path_buf(),
            name,
        })
    }

    /// `docker exec` of `argv` in the kept container; the exit code.
    pub fn exec(&self, argv: &[&str]) -> Result<Option<i32>, SandboxError> {
        let status = std::process::Command::new(&self.program)
            .arg("exec")
            .arg(&self.name)
            .args(argv)
            .env_clear()
            .envs(engine_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(SandboxError::Spawn)?;
        Ok(status.code())
    }
}

impl Drop for KeptContainer {
    fn drop(&mut self) {
        let _ = engine_output(&self.program, &["rm", "-f", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_exec_parses_its_two_names_and_refuses_others() {
        assert_eq!("docker".parse::<ImageExec>(), Ok(ImageExec::Docker));
        assert_eq!("rootfs".parse::<ImageExec>(), Ok(ImageExec::RootFs));
        assert!("podman".parse::<ImageExec>().is_err());
        // Settings files use the same names as the flag.
        for e in [ImageExec::Docker, ImageExec::RootFs] {
            assert_eq!(
                serde_json::to_value(e).unwrap(),
                serde_json::json!(e.name())
            );
        }
    }

    #[test]
    fn path_falls_back_to_debians_default() {
        let mut info = ImageInfo {
            image: "x".into(),
            id: "sha256:1".into(),
            env: vec![],
            working_dir: String::new(),
        };
        assert!(info.path_var().contains("/usr/bin"));
        info.env
            .push(("PATH".into(), "/opt/conda/bin:/usr/bin".into()));
        assert_eq!(info.path_var(), "/opt/conda/bin:/usr/bin");
    }
}
