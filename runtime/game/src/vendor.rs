//! A Rust repository's crates.io dependencies, vendored for the sandbox, which has no
//! network: offline cargo cannot resolve even an optional dependency it will not build.
//!
//! Owns: reading the registry packages of a repository's `Cargo.lock` (or of a lock
//! generated for it), fetching each `.crate` with its checksum checked, unpacking them
//! into a read-only directory source, and the cargo configuration that points cargo at
//! it ([`VendoredCrates::mounts`]: the crates at [`VENDOR_GUEST`], the configuration at
//! `/.cargo`, which cargo reads from every directory above the workspace).
//!
//! Does not own: downloads and archive safety (`fetch`), how a run mounts them
//! (`RunEnv`, the sandbox).
//!
//! **Cargo never runs on the host in the repository**: its `.cargo/config.toml` can name
//! programs cargo executes (`build.rustc-wrapper`, credential providers), and a
//! `rust-toolchain.toml` makes rustup fetch and run another toolchain. Where there is no
//! lock file, `cargo generate-lockfile` runs on a copy that holds only the manifests
//! (every `.rs` file an empty stub, so targets are found as cargo finds them, and no
//! code), with a fresh `CARGO_HOME` and without any `.cargo/` directory.
//!
//! The vendored directory is keyed by the lock's registry packages, so repositories
//! (and the releases of one repository) with the same dependencies share it, and a run
//! sees exactly the locked versions: with no lock in the workspace, cargo resolves to
//! them because they are the only ones there.

use crate::fetch::{self, FetchError};
use sha2::{Digest, Sha256};
use ssr_sandbox::Mount;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the vendored crates appear inside a run.
pub const VENDOR_GUEST: &str = "/.ssr-vendor";
/// Where the cargo configuration appears inside a run (cargo reads `/.cargo/config.toml`
/// for every workspace below `/`).
pub const CARGO_CONFIG_GUEST: &str = "/.cargo";
/// How long `cargo generate-lockfile` may take on the manifests-only copy.
const LOCKFILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The index URLs under which `Cargo.lock` names crates.io.
const CRATES_IO_SOURCES: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid Cargo.lock: {reason}")]
    BadLock { path: PathBuf, reason: String },
    #[error(
        "dependency {name} {version} comes from {source_url}, which cannot be vendored (only crates.io dependencies can be made available offline)"
    )]
    UnsupportedSource {
        name: String,
        version: String,
        source_url: String,
    },
    #[error(
        "the repository has no Cargo.lock and `cargo generate-lockfile` on its manifests failed: {0}"
    )]
    Lockfile(String),
    #[error("fetching {name} {version}: {source}")]
    Fetch {
        name: String,
        version: String,
        source: FetchError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VendorError + '_ {
    move |source| VendorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One registry package of a lock file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    /// The `.crate`'s sha256 (lock format 1 keeps it elsewhere: then asked of the index).
    pub checksum: Option<String>,
}

/// A repository's dependencies, vendored on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct VendoredCrates {
    /// The directory source (one `name-version/` per crate).
    pub dir: PathBuf,
    /// The directory holding the `config.toml` that points cargo at it.
    pub config_dir: PathBuf,
    pub crates: usize,
    /// Whether the lock was generated (the repository has none).
    pub generated_lock: bool,
}

impl VendoredCrates {
    /// The read-only mounts that give a run the crates and the configuration.
    pub fn mounts(&self) -> [Mount; 2] {
        [
            Mount {
                host: self.dir.clone(),
                guest: VENDOR_GUEST.into(),
                read_only: true,
            },
            Mount {
                host: self.config_dir.clone(),
                guest: CARGO_CONFIG_GUEST.into(),
                read_only: true,
            },
        ]
    }
}

/// The host cache of vendored crates: `$SSR_VENDOR_CACHE`, else under
/// `$XDG_CACHE_HOME` or `~/.cache` (`ssr/cargo-vendor`).
pub fn vendor_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SSR_VENDOR_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("ssr/cargo-vendor");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/ssr/cargo-vendor");
    }
    PathBuf::from("/var/tmp/ssr-cargo-vendor")
}

/// Vendors the crates.io dependencies of the cargo project at `repo` (a `Cargo.toml`
/// at its root) into `cache`; `None` when `repo` is not a cargo project or depends on
/// no registry crate.
pub fn vendor_repo(repo: &Path, cache: &Path) -> Result<Option<VendoredCrates>, VendorError> {
    if !repo.join("Cargo.toml").is_file() {
        return Ok(None);
    }
    let lock_path = repo.join("Cargo.lock");
    let (text, generated_lock) = if lock_path.is_file() {
        (
            std::fs::read_to_string(&lock_path).map_err(io(&lock_path))?,
            false,
        )
    } else {
        (generate_lockfile(repo)?, true)
    };
    let crates = registry_crates(&text, &lock_path)?;
    if crates.is_empty() {
        return Ok(None);
    }
    let key = lock_key(&crates);
    let dir = cache.join(&key);
    let config_dir = cache.join(format!("{key}.cargo"));
    if !dir.is_dir() {
        // On a thread of its own: the blocking HTTP client must not run (or be
        // dropped) inside an async runtime, and self-play and the environment server
        // open their arenas from one.
        std::thread::scope(|s| s.spawn(|| fill(&dir, &crates)).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    }
    if !config_dir.join("config.toml").is_file() {
        write_config(&config_dir)?;
    }
    Ok(Some(VendoredCrates {
        dir,
        config_dir,
        crates: crates.len(),
        generated_lock,
    }))
}

/// The registry packages of a lock file, sorted; a git or foreign-registry package is
/// an error (it cannot be made available offline here); path packages are skipped.
pub fn registry_crates(lock: &str, path: &Path) -> Result<Vec<LockedCrate>, VendorError> {
    let bad = |reason: String| VendorError::BadLock {
        path: path.to_path_buf(),
        reason,
    };
    let doc: toml::Table = toml::from_str(lock).map_err(|e| bad(e.to_string()))?;
    let packages = match doc.get("package") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a,
        Some(_) => return Err(bad("`package` is not an array".into())),
    };
    let mut out = Vec::new();
    for p in packages {
        let field = |k: &str| p.get(k).and_then(toml::Value::as_str).map(str::to_string);
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            return Err(bad("a package without a name or version".into()));
        };
        let Some(source_url) = field("source") else {
            continue;
        };
        if !CRATES_IO_SOURCES.contains(&source_url.as_str()) {
            return Err(VendorError::UnsupportedSource {
                name,
                version,
                source_url,
            });
        }
        out.push(LockedCrate {
            checksum: field("checksum"),
            name,
            version,
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The cache key of a set of crates: a hash of their names, versions and checksums.
fn lock_key(crates: &[LockedCrate]) -> String {
    let mut h = Sha256::new();
    for c in crates {
        h.update(format!(
            "{} {} {}\n",
            c.name,
            c.version,
            c.checksum.as_deref().unwrap_or("-")
        ));
    }
    hex::encode(&h.finalize()[..12])
}

/// Fetches and unpacks every crate into `dir`, through a temporary sibling renamed into
/// place at the end (a concurrent or interrupted fill never leaves a partial source).
fn fill(dir: &Path, crates: &[LockedCrate]) -> Result<(), VendorError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fill-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let client = fetch::client().map_err(|source| VendorError::Fetch {
        name: "(client)".into(),
        version: String::new(),
        source,
    })?;
    for c in crates {
        let dest = tmp.path().join(format!("{}-{}", c.name, c.version));
        let sum = fetch::fetch_crate(&client, &c.name, &c.version, c.checksum.as_deref(), &dest)
            .map_err(|source| VendorError::Fetch {
                name: c.name.clone(),
                version: c.version.clone(),
                source,
            })?;
        // A directory source's crate carries the package checksum (cargo checks it
        // against the lock); an empty file list: the files were checked as a whole.
        let meta = serde_json::json!({ "files": {}, "package": sum });
        let f = dest.join(".cargo-checksum.json");
        std::fs::write(&f, meta.to_string()).map_err(io(&f))?;
    }
    let filled = tmp.keep();
    match std::fs::rename(&filled, dir) {
        Ok(()) => Ok(()),
        // Another process filled it first: same key, same contents.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&filled);
            Ok(())
        }
        Err(e) => Err(VendorError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

fn write_config(config_dir: &Path) -> Result<(), VendorError> {
    std::fs::create_dir_all(config_dir).map_err(io(config_dir))?;
    let text = format!(
        "# Written by ssr: crates.io is replaced by the vendored crates (no network in a run).\n\
         [source.crates-io]\nreplace-with = \"ssr-vendored\"\n\n\
         [source.ssr-vendored]\ndirectory = \"{VENDOR_GUEST}\"\n\n\
         [net]\noffline = true\n"
    );
    let f = config_dir.join("config.toml");
    let tmp = config_dir.join(format!(".config.toml.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &f).map_err(io(&f))
}

/// `cargo generate-lockfile` on a manifests-only copy of `repo` (see the module doc).
fn generate_lockfile(repo: &Path) -> Result<String, VendorError> {
    let work = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
    let copy = work.path().join("manifests");
    stub_tree(repo, &copy, StubFor::Host)?;
    let home = work.path().join("cargo-home");
    std::fs::create_dir_all(&home).map_err(io(&home))?;
    let mut cmd = Command::new("cargo");
    cmd.arg("generate-lockfile")
        .current_dir(&copy)
        .env_clear()
        .env("CARGO_HOME", &home)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Only what finds the toolchain: never the caller's cargo settings.
    for key in ["PATH", "HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| VendorError::Lockfile(format!("cannot start cargo: {e}")))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > LOCKFILE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VendorError::Lockfile(format!(
                    "timed out after {} s",
                    LOCKFILE_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(VendorError::Lockfile(e.to_string())),
        }
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut err);
        }
        let tail: String = err.lines().rev().take(6).collect::<Vec<_>>().join(" | ");
        return Err(VendorError::Lockfile(format!("{status}: {tail}")));
    }
    let lock = copy.join("Cargo.lock");
    std::fs::read_to_string(&lock).map_err(io(&lock))
}

/// Who a manifests-only copy ([`stub_tree`]) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubFor {
    /// `cargo generate-lockfile` on the host: nothing cargo could execute comes from
    /// the repository (no `.cargo/`), and every `.rs` file is empty.
    Host,
    /// A build in the sandbox (`build_cache`'s dependency cache): `Cargo.lock` and
    /// `.cargo/` are kept (a run reads them too, and they decide the dependency
    /// units), and every `.rs` file is [`SANDBOX_STUB`], which does not compile, so
    /// no unit of the repository's own packages is built, not even an empty one.
    Sandbox,
}

/// The content of every `.rs` file of a [`StubFor::Sandbox`] copy.
pub const SANDBOX_STUB: &str =
    "compile_error!(\"ssr dependency cache: no code of the repository\");\n";

/// Copies `src`'s `Cargo.toml` files to `dst` and stands a stub in for each `.rs` file:
/// the layout cargo reads targets from, without any code (see [`StubFor`] for what
/// else is kept). Skips `.git`, `target` and symbolic links.
pub fn stub_tree(src: &Path, dst: &Path, whom: StubFor) -> Result<(), VendorError> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let name = entry.file_name();
        let ty = entry.file_type().map_err(io(&entry.path()))?;
        let to = dst.join(&name);
        if ty.is_dir() {
            if name == ".git" || name == "target" {
                continue;
            }
            if name == ".cargo" {
                if whom == StubFor::Sandbox {
                    copy_plain(&entry.path(), &to)?;
                }
                continue;
            }
            stub_tree(&entry.path(), &to, whom)?;
        } else if ty.is_file() {
            let keep = name == "Cargo.toml" || (whom == StubFor::Sandbox && name == "Cargo.lock");
            if keep {
                std::fs::copy(entry.path(), &to).map_err(io(&to))?;
            } else if Path::new(&name).extension().is_some_and(|e| e == "rs") {
                let stub = match whom {
                    StubFor::Host => "",
                    StubFor::Sandbox => SANDBOX_STUB,
                };
                std::fs::write(&to, stub).map_err(io(&to))?;
            }
        }
    }
    Ok(())
}

/// Copies the files and directories under `src` to `dst` (links skipped).
fn copy_plain(src: &Path, dst: &Path) -> Result<(), VendorError> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let ty = entry.file_type().map_err(io(&entry.path()))?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_plain(&entry.path(), &to)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 3

[[package]]
name = "either"
version = "1.19.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.228"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "9a8e94ea7f378bd32cbbd37198a4a91436180c5bb472411e48b5ec2e2124ae9e"

[[package]]
name = "itoa"
version = "1.0.15"
source = "sparse+https://index.crates.io/"
checksum = "4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c"
"#;

    #[test]
    fn registry_crates_skip_path_packages_and_sort() {
        let c = registry_crates(LOCK, Path::new("Cargo.lock")).unwrap();
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["itoa", "serde"]);
        assert!(c.iter().all(|c| c.checksum.is_some()));
    }

    #[test]
    fn a_git_dependency_is_refused_with_its_name() {
        let lock = format!(
            "{LOCK}\n[[package]]\nname = \"foo\"\nversion = \"0.1.0\"\nsource = \"git+https://example.com/foo#abc\"\n"
        );
        let e = registry_crates(&lock, Path::new("Cargo.lock")).unwrap_err();
        assert!(
            matches!(&e, VendorError::UnsupportedSource { name, .. } if name == "foo"),
            "{e}"
        );
        assert!(e.to_string().contains("git+https://example.com/foo"));
    }

    #[test]
    fn a_malformed_lock_is_a_typed_error() {
        let e = registry_crates("[[package]\nname=", Path::new("x/Cargo.lock")).unwrap_err();
        assert!(matches!(e, VendorError::BadLock { .. }), "{e}");
        let e =
            registry_crates("[[package]]\nversion = \"1\"\n", Path::new("Cargo.lock")).unwrap_err();
        assert!(e.to_string().contains("without a name"), "{e}");
    }

    #[test]
    fn the_key_depends_on_every_crate_and_checksum() {
        let a = registry_crates(LOCK, Path::new("Cargo.lock")).unwrap();
        let mut b = a.clone();
        b[0].checksum = Some("00".into());
        assert_ne!(lock_key(&a), lock_key(&b));
        assert_eq!(lock_key(&a), lock_key(&a.clone()));
    }

    #[test]
    fn not_a_cargo_project_vendors_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("setup.py"), "").unwrap();
        assert_eq!(vendor_repo(d.path(), d.path()).unwrap(), None);
    }

    #[test]
    fn the_stub_tree_keeps_manifests_and_empties_code() {
        let src = tempfile::tempdir().unwrap();
        let p = src.path();
        std::fs::create_dir_all(p.join("src/bin")).unwrap();
        std::fs::create_dir_all(p.join(".cargo")).unwrap();
        std::fs::create_dir_all(p.join("target/debug")).unwrap();
        std::fs::write(p.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(p.join("build.rs"), "fn main() { evil() }").unwrap();
        std::fs::write(p.join("src/bin/tool.rs"), "fn main() {}").unwrap();
        std::fs::write(
            p.join(".cargo/config.toml"),
            "[build]\nrustc-wrapper = \"x\"",
        )
        .unwrap();
        std::fs::write(p.join("rust-toolchain.toml"), "[toolchain]\n").unwrap();
        std::fs::write(p.join("target/debug/x"), "bin").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = dst.path().join("m");
        stub_tree(p, &d, StubFor::Host).unwrap();
        assert!(d.join("Cargo.toml").is_file());
        assert_eq!(std::fs::read_to_string(d.join("build.rs")).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(d.join("src/bin/tool.rs")).unwrap(),
            ""
        );
        assert!(!d.join(".cargo").exists());
        assert!(!d.join("target").exists());
        assert!(!d.join("rust-toolchain.toml").exists());
    }

    #[test]
    fn the_sandbox_stub_tree_keeps_lock_and_config_and_no_code() {
        let src = tempfile::tempdir().unwrap();
        let p = src.path();
        std::fs::create_dir_all(p.join("src")).unwrap();
        std::fs::create_dir_all(p.join(".cargo")).unwrap();
        std::fs::write(p.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(p.join("Cargo.lock"), "version = 3\n").unwrap();
        std::fs::write(p.join("src/lib.rs"), "pub fn secret() {}").unwrap();
        std::fs::write(p.join(".cargo/config.toml"), "[build]\n").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = dst.path().join("m");
        stub_tree(p, &d, StubFor::Sandbox).unwrap();
        assert!(d.join("Cargo.lock").is_file());
        assert!(d.join(".cargo/config.toml").is_file());
        assert_eq!(
            std::fs::read_to_string(d.join("src/lib.rs")).unwrap(),
            SANDBOX_STUB
        );
    }
}
