//! Build caches of a cargo project: prebuilt once, each run on a private layer.
//!
//! Without a cache, every test run (verify's checks, evaluate) and every solver shell
//! command builds the crate and all its crates.io dependencies from nothing. With one:
//! - the **full** cache holds the units `cargo test` builds from the original code
//!   (`cargo build --tests --examples --keep-going`), built in the sandbox over a
//!   snapshot of the repository, exactly as a test run builds. Every
//!   test run gets its own copy-on-write layer over it ([`TargetBase::layer`]: an
//!   overlay, else reflinks, else a copy, the methods of `ssr-repo`'s snapshots) as
//!   its `CARGO_TARGET_DIR`, so parallel runs never share a writable target or cargo's
//!   build lock, and nothing one run builds reaches another;
//! - the **dependency** cache, for solver episodes, is the same build over a copy of
//!   the repository whose code is replaced by stubs that do not compile (manifests,
//!   lock and `.cargo/` kept): only dependency units are built (`--keep-going`), and
//!   nothing of the original code is in it. A cache of the crate's own units would
//!   hand the solver the original, which is the answer.
//!
//! Both are keyed by what decides their contents: the repository's files (the
//! manifests only, for the dependency cache), the run environment (its mounts hold the
//! vendored lock's key and the toolchain's sysroot; its variables), and the toolchain's
//! own version text, asked inside the sandbox. A change to any of them makes a new
//! cache; an unchanged repository reuses its cache across runs and processes.
//!
//! Paths are the same in every run: the workspace at `/repo`, the vendored crates at
//! `/.ssr-vendor`, the target at [`TARGET_GUEST`]. Cargo's units are then identical
//! between the build of the cache and each run (build scripts record absolute
//! `OUT_DIR`s, and `env!` paths are part of a unit's freshness).
//!
//! **Freshness.** Cargo decides by file times: a unit is fresh when no source is newer
//! than its dep-info. The cache is built from the original, so a run is right only if
//! every file it changes is newer than the cache; [`written_time`] is the time
//! `workspace` stamps on every file it writes, and a cache with times ahead of the
//! clock (copied from another machine, a clock stepped back) is not used at all
//! ([`TargetBase::open`]): cargo could not tell a file the run wrote from the original.
//!
//! Does not own: snapshot mechanics (`ssr-repo`), vendoring (`vendor`), when a
//! workspace gets a layer (`workspace`).

use crate::config::RunEnv;
use crate::reporter::{CARGO_EVENTS_GUEST, Reporter, cargo_test_roots};
use crate::vendor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssr_repo::snapshot::{Snapshot, SnapshotBase, SnapshotError, SnapshotMethod};
use ssr_sandbox::{Command, ExecSpec, Limits, Mount, Sandbox};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where a run's target directory appears inside the sandbox (its `CARGO_TARGET_DIR`).
pub const TARGET_GUEST: &str = "/.ssr-target";
/// The variable that points cargo at it.
pub const TARGET_VAR: &str = "CARGO_TARGET_DIR";
/// How long one cache build may take (a cold build of a large dependency tree on a
/// loaded machine).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// Bumped when the layout or the build command changes: old caches are not reused.
const FORMAT: &str = "ssr-build-cache-2";
/// The build: the units a test run's `cargo test` builds (the same units, by their
/// hashes, as `cargo test --no-run`), all of them even when one fails: the dependency
/// cache's stubs fail on purpose, and a partial full cache still saves every unit that
/// built. `cargo build`, because `cargo test` has no `--keep-going`.
const BUILD_SCRIPT: &str = "cargo build --tests --examples --offline --keep-going 2>&1";
#[derive(Debug, thiserror::Error)]
pub enum BuildCacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox could not run the cache build: {0}")]
    Sandbox(String),
    #[error("asking the toolchain's version in the sandbox failed: {0}")]
    Toolchain(String),
    #[error("{path}: not a build record: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error("the cache build did not finish within {} s", BUILD_TIMEOUT.as_secs())]
    TimedOut,
    #[error("the cache build built nothing; log tail: {0}")]
    NothingBuilt(String),
    #[error("making a layer of the build cache: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("copying the manifests: {0}")]
    Stub(#[from] vendor::VendorError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildCacheError + '_ {
    move |source| BuildCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which of a repository's caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// Every unit of the original code's `cargo test` build (test runs).
    Full,
    /// Dependency units only (solver episodes).
    Dependencies,
}

impl CacheKind {
    fn name(self) -> &'static str {
        match self {
            CacheKind::Full => "full",
            CacheKind::Dependencies => "deps",
        }
    }
}

/// A repository's prebuilt caches (host target directories, never written after
/// they are made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCaches {
    /// The repository they were built from (canonical).
    pub repo: PathBuf,
    /// Test runs' base.
    pub full: PathBuf,
    /// Solver episodes' base.
    pub dependencies: PathBuf,
    /// The secret of the cargo canaries compiled into the full cache (hex; the
    /// reporter's, `reporter::cargo`): runs over it place the same module. `None`:
    /// the cache holds none, and each run compiles its own.
    #[serde(default)]
    pub canary_secret: Option<String>,
}

impl BuildCaches {
    /// Whether these caches were built from `repo`.
    pub fn serves(&self, repo: &Path) -> bool {
        repo.canonicalize().is_ok_and(|r| r == self.repo)
    }

    /// A solver episode's private layer over the dependency cache, under `scratch`;
    /// `None` when the cache cannot be used (see [`TargetBase::open`]).
    pub fn solver_layer(&self, scratch: &Path) -> Result<Option<TargetLayer>, BuildCacheError> {
        TargetBase::open(&self.dependencies, scratch)?
            .map(|b| b.layer())
            .transpose()
    }
}

/// What the cache build of one kind left.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BuildRecord {
    kind: CacheKind,
    exit_code: Option<i32>,
    seconds: f64,
    /// The secret of the canary module built into the full cache (hex); kept here,
    /// outside the target directory that runs mount, so code under test cannot read
    /// it from the cache.
    #[serde(default)]
    canary_secret: Option<String>,
    /// The end of the build's log (why units failed, for a user reading the cache).
    log_tail: String,
}

/// The host directory of build caches: `$SSR_BUILD_CACHE`, else under
/// `$XDG_CACHE_HOME` or `~/.cache` (`ssr/cargo-target`).
pub fn build_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SSR_BUILD_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("ssr/cargo-target");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/ssr/cargo-target");
    }
    PathBuf::from("/var/tmp/ssr-cargo-target")
}

/// The caches of the cargo project at `repo` (a `Cargo.toml` at its root) for runs in
/// `env`, built in `sandbox` into `cache` unless already there; `None` when `repo` is
/// not a cargo project. A build that fails leaves a cache of the units that built
/// (cargo rebuilds the rest in each run, as without a cache). With `canaries` the
/// full cache holds the trusted reporter's cargo canaries (`reporter::cargo`), as
/// every run with the reporter needs; without, it is the plain build (`ssr bench
/// verify`'s baseline).
pub fn prepare(
    sandbox: &dyn Sandbox,
    repo: &Path,
    env: &RunEnv,
    cache: &Path,
    canaries: bool,
) -> Result<Option<BuildCaches>, BuildCacheError> {
    if !repo.join("Cargo.toml").is_file() {
        return Ok(None);
    }
    let repo = repo.canonicalize().map_err(io(repo))?;
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(cache)
        .map_err(io(cache))?;
    let toolchain = toolchain(sandbox, env, work.path())?;
    // The full cache builds the original in a snapshot of it (`.git` and any
    // `target/` of the repository left out, as in every run).
    let snapshots =
        SnapshotBase::new(&repo, &work.path().join("snap"))?.hiding(&[".git", "target"])?;
    let snapshot = snapshots.snapshot()?;
    let (full, canary_secret) = ensure(
        sandbox,
        env,
        cache,
        CacheKind::Full,
        (&repo, snapshot.path()),
        &toolchain,
        canaries,
    )?;
    drop(snapshot);
    // The dependency cache builds a copy holding no code at all.
    let stubs = work.path().join("stubs");
    vendor::stub_tree(&repo, &stubs, vendor::StubFor::Sandbox)?;
    let (dependencies, _) = ensure(
        sandbox,
        env,
        cache,
        CacheKind::Dependencies,
        (&repo, &stubs),
        &toolchain,
        false,
    )?;
    Ok(Some(BuildCaches {
        repo,
        full,
        dependencies,
        canary_secret,
    }))
}

/// The cache of `kind` for the tree `src` (made from `repo`): its target directory
/// and the secret of its canaries, built first when no cache has its key. With
/// `canaries`, the full cache is built with the cargo canary module of a fresh secret
/// in every test binary root of `src` (which it changes: a private snapshot), so that
/// runs over it compile none.
fn ensure(
    sandbox: &dyn Sandbox,
    env: &RunEnv,
    cache: &Path,
    kind: CacheKind,
    (repo, src): (&Path, &Path),
    toolchain: &str,
    canaries: bool,
) -> Result<(PathBuf, Option<String>), BuildCacheError> {
    let times_of = (kind == CacheKind::Full).then_some(repo);
    let key = cache_key(kind, src, times_of, env, toolchain)?;
    let plain = if canaries { "" } else { "plain-" };
    let dir = cache.join(format!("{}-{plain}{key}", kind.name()));
    let target = dir.join("target");
    let record = dir.join("build.json");
    if record.is_file() {
        return Ok((target, read_record(&record)?.canary_secret));
    }
    // Built in a temporary sibling renamed into place at the end: a concurrent or
    // interrupted build never leaves a partial cache under the key.
    let tmp = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache)
        .map_err(io(cache))?;
    let out = tmp.path().join("target");
    std::fs::create_dir(&out).map_err(io(&out))?;
    let canaries = match kind {
        CacheKind::Full if canaries => {
            let reporter = Reporter::draw();
            let roots = cargo_test_roots(src);
            let all = roots.iter().cloned().collect();
            // Kept past the build (restored on drop): the snapshot is thrown away.
            let placed = reporter
                .place_cargo(src, &roots, &all, Path::new(CARGO_EVENTS_GUEST))
                .map_err(io(src))?;
            Some((reporter, placed))
        }
        _ => None,
    };
    let mut built_record = build(sandbox, env, src, &out, kind)?;
    built_record.canary_secret = canaries.as_ref().map(|(r, _)| r.secret().to_string());
    drop(canaries);
    let json = tmp.path().join("build.json");
    let text = serde_json::to_string_pretty(&built_record).expect("a build record serializes");
    std::fs::write(&json, text).map_err(io(&json))?;
    let built = tmp.keep();
    match std::fs::rename(&built, &dir) {
        Ok(()) => Ok((target, built_record.canary_secret)),
        // Another process built the same key first: same inputs, same units, but its
        // own canaries: the record that won says which.
        Err(_) if record.is_file() => {
            let _ = std::fs::remove_dir_all(&built);
            Ok((target, read_record(&record)?.canary_secret))
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&built);
            Err(BuildCacheError::Io {
                path: dir,
                source: e,
            })
        }
    }
}

/// Runs [`BUILD_SCRIPT`] over `src` (at `/repo`, as a test run sees its workspace)
/// with `out` as the target directory.
fn build(
    sandbox: &dyn Sandbox,
    env: &RunEnv,
    src: &Path,
    out: &Path,
    kind: CacheKind,
) -> Result<BuildRecord, BuildCacheError> {
    let mut spec = ExecSpec::new(Command::Script(BUILD_SCRIPT.into()), src);
    spec.mounts = env.mounts.clone();
    spec.mounts.push(Mount {
        host: out.to_path_buf(),
        guest: TARGET_GUEST.into(),
        read_only: false,
    });
    spec.env = env.env.clone();
    spec.env.insert(TARGET_VAR.into(), TARGET_GUEST.into());
    spec.limits = Limits {
        timeout: BUILD_TIMEOUT,
        memory_bytes: env.memory_bytes,
        pids: env.pids,
        file_size_bytes: Some(4 << 30),
        ..Limits::default()
    };
    let t0 = Instant::now();
    let res = sandbox
        .exec(&spec)
        .map_err(|e| BuildCacheError::Sandbox(e.to_string()))?;
    if res.timed_out {
        return Err(BuildCacheError::TimedOut);
    }
    let log = format!("{}{}", res.stdout, res.stderr);
    let n = log.chars().count();
    let log_tail: String = log.chars().skip(n.saturating_sub(2000)).collect();
    // Units that fail are expected (the stubs; an original that does not build); a
    // build that made no unit at all (cargo refused its arguments or the manifest) is
    // no cache.
    if !out.join("debug").is_dir() {
        return Err(BuildCacheError::NothingBuilt(log_tail));
    }
    Ok(BuildRecord {
        kind,
        exit_code: res.exit_code,
        seconds: t0.elapsed().as_secs_f64(),
        canary_secret: None,
        log_tail,
    })
}

fn read_record(path: &Path) -> Result<BuildRecord, BuildCacheError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| BuildCacheError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `rustc -vV` and `cargo -V` as the runs see them (the sandbox's `PATH`).
fn toolchain(sandbox: &dyn Sandbox, env: &RunEnv, empty: &Path) -> Result<String, BuildCacheError> {
    let mut spec = ExecSpec::new(Command::Script("rustc -vV && cargo -V".into()), empty);
    spec.mounts = env.mounts.clone();
    spec.env = env.env.clone();
    spec.limits.timeout = Duration::from_secs(60);
    let out = sandbox
        .exec(&spec)
        .map_err(|e| BuildCacheError::Sandbox(e.to_string()))?;
    if !out.success() {
        return Err(BuildCacheError::Toolchain(format!(
            "exit {:?}: {}",
            out.exit_code,
            out.stderr.trim()
        )));
    }
    Ok(out.stdout)
}

/// The key of a cache: its kind, the tree it is built from, the run environment and
/// the toolchain. The full cache's key also holds the file times of the repository
/// (`times_of`, whose contents are `src`'s): cargo takes a unit for fresh by times,
/// so a cache built from an earlier checkout of the same files is older than every
/// file of the new one, and each run would rebuild the crate whole (measured: a
/// second `ssr examples create` made every rust-ledger run compile everything).
fn cache_key(
    kind: CacheKind,
    src: &Path,
    times_of: Option<&Path>,
    env: &RunEnv,
    toolchain: &str,
) -> Result<String, BuildCacheError> {
    let mut h = Sha256::new();
    h.update(format!("{FORMAT}\n{}\n{toolchain}\n", kind.name()));
    // The mounts and variables of a run (not the limits: they do not change units).
    let env_part = serde_json::json!({ "mounts": env.mounts, "env": env.env });
    h.update(env_part.to_string());
    match times_of {
        Some(repo) => tree_digest(repo, Path::new(""), true, &mut h)?,
        None => tree_digest(src, Path::new(""), false, &mut h)?,
    }
    Ok(hex::encode(&h.finalize()[..12]))
}

/// Hashes every entry under `root/rel` (names sorted; files with their content and
/// executable bit, and with `times` their modification time; links with their
/// target), skipping a top-level `.git` and `target`.
fn tree_digest(
    root: &Path,
    rel: &Path,
    times: bool,
    h: &mut Sha256,
) -> Result<(), BuildCacheError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if rel.as_os_str().is_empty() && (name == ".git" || name == "target") {
            continue;
        }
        let child = rel.join(&name);
        let path = e.path();
        let meta = path.symlink_metadata().map_err(io(&path))?;
        let shown = child.to_string_lossy();
        if meta.is_dir() {
            h.update(format!("D {shown}\n"));
            tree_digest(root, &child, times, h)?;
        } else if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&path).map_err(io(&path))?;
            h.update(format!("L {shown} {}\n", to.to_string_lossy()));
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            h.update(format!("F {shown} {} {exec}\n", bytes.len()));
            h.update(&bytes);
            if times {
                let t = meta.modified().map_err(io(&path))?;
                let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                h.update(format!("T {}\n", since.as_nanos()));
            }
        }
    }
    Ok(())
}

/// A prebuilt cache as the base of per-run layers.
#[derive(Debug)]
pub struct TargetBase {
    snapshots: SnapshotBase,
    /// The newest modification time in the cache.
    newest: SystemTime,
}

impl TargetBase {
    /// Prepares layers of the cache `target` under `scratch`. `None` when the cache has
    /// a file time ahead of the clock: a run's files, written now, would look older
    /// than the cache, and cargo would take the original's units for theirs (wrong
    /// verdicts), so such a cache is not used; runs build from nothing instead.
    pub fn open(target: &Path, scratch: &Path) -> Result<Option<TargetBase>, BuildCacheError> {
        let newest = newest_time(target)?;
        if newest > SystemTime::now() {
            eprintln!(
                "ssr: the build cache {} has file times ahead of the clock; not used",
                target.display()
            );
            return Ok(None);
        }
        Ok(Some(TargetBase {
            snapshots: SnapshotBase::new(target, scratch)?,
            newest,
        }))
    }

    /// The newest file time in the cache.
    pub fn newest(&self) -> SystemTime {
        self.newest
    }

    /// How this base's layers are made.
    pub fn method(&self) -> SnapshotMethod {
        self.snapshots.method()
    }

    /// A private writable layer over the cache.
    pub fn layer(&self) -> Result<TargetLayer, BuildCacheError> {
        let snapshot = self.snapshots.snapshot()?;
        if snapshot.method() != SnapshotMethod::Overlay {
            // A copied or reflinked file is written now, in parallel and in no order:
            // cargo would see dependencies newer than the units built on them and
            // rebuild those. The cache's own times put back keep its units fresh.
            copy_times(self.snapshots.base(), snapshot.path())?;
        }
        Ok(TargetLayer { snapshot })
    }
}

/// A private writable copy-on-write layer over a build cache; removed on drop.
#[derive(Debug)]
pub struct TargetLayer {
    snapshot: Snapshot,
}

impl TargetLayer {
    /// The layer on the host.
    pub fn path(&self) -> &Path {
        self.snapshot.path()
    }

    /// The read-write mount that makes it the target directory of a run (with
    /// [`TARGET_VAR`] set to [`TARGET_GUEST`]).
    pub fn mount(&self) -> Mount {
        Mount {
            host: self.path().to_path_buf(),
            guest: TARGET_GUEST.into(),
            read_only: false,
        }
    }
}

/// The time to give a file a run writes into its workspace, over a cache whose newest
/// file time is `newest`: now, and at least a second after `newest`. Why not just
/// "now": cargo calls a unit stale only when a source is strictly newer than its
/// dep-info, a file system may keep times in whole seconds, and a copy may keep its
/// source's time; a file written in the same second as the cache's build, or carried
/// over with an old time, would be taken for the original and its unit left unbuilt.
pub fn written_time(newest: SystemTime) -> SystemTime {
    SystemTime::now().max(newest + Duration::from_secs(1))
}

/// The newest modification time of any file under `dir` (the epoch for none).
fn newest_time(dir: &Path) -> Result<SystemTime, BuildCacheError> {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let meta = e.path().symlink_metadata().map_err(io(&e.path()))?;
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                newest = newest.max(meta.modified().map_err(io(&e.path()))?);
            }
        }
    }
    Ok(newest)
}

/// Gives every file under `to` the modification time of the same file under `from`.
fn copy_times(from: &Path, to: &Path) -> Result<(), BuildCacheError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let d = from.join(&rel);
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let meta = e.path().symlink_metadata().map_err(io(&e.path()))?;
            let child = rel.join(e.file_name());
            if meta.is_dir() {
                stack.push(child);
            } else if meta.is_file() {
                let dst = to.join(&child);
                let f = std::fs::File::options()
                    .write(true)
                    .open(&dst)
                    .map_err(io(&dst))?;
                let t = meta.modified().map_err(io(&e.path()))?;
                f.set_modified(t).map_err(io(&dst))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(dir: &Path) -> String {
        let mut h = Sha256::new();
        tree_digest(dir, Path::new(""), false, &mut h).unwrap();
        hex::encode(h.finalize())
    }

    /// Regression: a cache built from an earlier checkout of the same files is older
    /// than every file of the new one (cargo rebuilt the whole crate in every run), so
    /// the full cache's key holds the files' times.
    #[test]
    fn the_full_cache_key_sees_file_times() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("lib.rs"), "fn a() {}").unwrap();
        let with_times = |p: &Path| {
            let mut h = Sha256::new();
            tree_digest(p, Path::new(""), true, &mut h).unwrap();
            hex::encode(h.finalize())
        };
        let (a, plain) = (with_times(p), digest(p));
        let f = std::fs::File::options()
            .write(true)
            .open(p.join("lib.rs"))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        assert_ne!(a, with_times(p));
        assert_eq!(plain, digest(p), "the dependency cache's key has no times");
    }

    #[test]
    fn the_tree_digest_sees_content_and_skips_git_and_target() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("src")).unwrap();
        std::fs::write(p.join("src/lib.rs"), "fn a() {}").unwrap();
        let a = digest(p);
        std::fs::create_dir_all(p.join("target/debug")).unwrap();
        std::fs::write(p.join("target/debug/x"), "bin").unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join(".git/HEAD"), "ref").unwrap();
        assert_eq!(
            a,
            digest(p),
            "target/ and .git/ are not the repository state"
        );
        std::fs::write(p.join("src/lib.rs"), "fn b() {}").unwrap();
        assert_ne!(a, digest(p));
        // A nested `target` (not the build directory) is code.
        std::fs::write(p.join("src/lib.rs"), "fn a() {}").unwrap();
        std::fs::create_dir_all(p.join("src/target")).unwrap();
        assert_ne!(a, digest(p));
    }

    #[test]
    fn a_cache_with_times_ahead_of_the_clock_is_not_used() {
        let cache = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let f = cache.path().join("debug/dep-lib-x");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "").unwrap();
        let base = TargetBase::open(cache.path(), scratch.path())
            .unwrap()
            .expect("a cache from the past is used");
        assert!(written_time(base.newest()) >= base.newest() + Duration::from_secs(1));
        let ahead = SystemTime::now() + Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(ahead)
            .unwrap();
        assert!(
            TargetBase::open(cache.path(), scratch.path())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn every_layer_method_keeps_the_cache_times_and_stays_private() {
        let cache = tempfile::tempdir().unwrap();
        let f = cache.path().join("debug/.fingerprint/x/dep-lib-x");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "dep").unwrap();
        let old = SystemTime::now() - Duration::from_secs(86_400);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        for method in [
            SnapshotMethod::Overlay,
            SnapshotMethod::Reflink,
            SnapshotMethod::Copy,
        ] {
            let scratch = tempfile::tempdir().unwrap();
            let Ok(snapshots) = SnapshotBase::with_method(cache.path(), scratch.path(), method)
            else {
                continue;
            };
            let base = TargetBase {
                snapshots,
                newest: old,
            };
            let layer = base.layer().unwrap();
            let g = layer.path().join("debug/.fingerprint/x/dep-lib-x");
            assert_eq!(g.metadata().unwrap().modified().unwrap(), old, "{method:?}");
            std::fs::write(&g, "changed").unwrap();
            assert_eq!(std::fs::read_to_string(&f).unwrap(), "dep", "{method:?}");
            let other = base.layer().unwrap();
            assert_eq!(
                std::fs::read_to_string(other.path().join("debug/.fingerprint/x/dep-lib-x"))
                    .unwrap(),
                "dep",
                "{method:?}: a layer sees no other layer's writes"
            );
            assert_eq!(layer.mount().guest, PathBuf::from(TARGET_GUEST));
        }
    }
}
