//! Environments and sandboxed execution of commands and tests.
//!
//! Owns: the [`Environment`] a repository runs in (root filesystem, repository path,
//! environment-variable allowlist), the [`Sandbox`] trait, and its backends
//! (bubblewrap by default; docker/podman for image-based environments), with limits
//! enforced through cgroups v1 or v2 where the host allows.
//!
//! Does not own: what runs inside (the game decides that), repository snapshots
//! (`ssr-repo`), or the agent's tools (`ssr-toolhost`). Nothing here knows about bugs,
//! models or WASM.
//!
//! The trait is blocking on purpose: one exec is one child process tree waited on by a
//! thread; async callers wrap it in `spawn_blocking`. An async trait would buy nothing
//! but a runtime dependency here.
//!
//! Module layering (no cycles; the tidy test checks): `spec`, `probe`, `shell` and
//! `cgroup` are leaves; `plan`, `rootfs`, `supervise` and `outcome` build on them;
//! `prestart` is the one pre-started sandbox type, `ready` and `warm` the two ways to
//! start one, `pool` keeps them; `bwrap` and `docker` are the backends on top.

mod bwrap;
pub mod cgroup;
mod docker;
mod image;
mod outcome;
mod plan;
mod pool;
mod prestart;
mod probe;
mod ready;
mod rootfs;
mod shell;
mod spec;
mod supervise;
mod warm;

pub use bwrap::{BwrapSandbox, DEFAULT_TMP_BYTES, SANDBOX_UID, host_cgroups, probe_bwrap};
pub use docker::{
    DockerPlan, DockerSandbox, Engine, EngineProbe, OWNER_LABEL, docker_run_args, first_engine,
    probe_engines, sweep_stale_containers,
};
pub use image::{
    ImageExec, ImageInfo, ImageSandbox, KeptContainer, UnpackedImage, image_cache_dir,
    inspect_image, unpack_image,
};
pub use probe::BwrapInfo;
pub use shell::is_shell_name;
pub use spec::*;

/// The sandbox for `env`: bubblewrap for [`RootFs::Host`] and [`RootFs::Dir`], a docker
/// compatible engine for [`RootFs::Image`] (`docker run` per command; [`ImageSandbox`]
/// chooses between that and bubblewrap over the unpacked image).
pub fn default_sandbox(env: Environment) -> Result<Box<dyn Sandbox>, SandboxError> {
    match &env.rootfs {
        RootFs::Image(_) => Ok(Box::new(DockerSandbox::new(env)?)),
        _ => Ok(Box::new(BwrapSandbox::new(env)?)),
    }
}
