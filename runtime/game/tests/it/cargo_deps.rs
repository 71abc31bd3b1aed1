//! Rust projects with crates.io dependencies in the offline sandbox (`vendor`), and the
//! build cache that must never decide a verdict (`workspace`'s hidden `target/`).
//!
//! Needs the network to crates.io once per cache (CI has the package registries).

use super::fixture::{self, test_config};
use ssr_game::{Artifact, RunEnv, Verifier, VerifyConfig};
use std::path::Path;
use std::time::{Duration, SystemTime};

const LIB: &str = "\
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

pub fn show(n: i64) -> String {
    itoa::Buffer::new().format(n).to_string()
}
";

const TESTS: &str = "\
use calc::*;

#[test]
fn adds() {
    assert_eq!(add(2, 3), 5);
}

#[test]
fn shows() {
    assert_eq!(show(-42), \"-42\");
}

#[test]
fn adds_zero() {
    assert_eq!(add(0, 7), 7);
}

#[test]
fn shows_zero() {
    assert_eq!(show(0), \"0\");
}

#[test]
fn shows_the_largest() {
    assert_eq!(show(i64::MAX), \"9223372036854775807\");
}

#[test]
fn shows_a_sum() {
    assert_eq!(show(add(40, 2)), \"42\");
}
";

/// A crate with a required and an optional crates.io dependency (offline cargo must
/// resolve both, though it builds only one) and no lock file.
fn crate_repo() -> (tempfile::TempDir, Artifact) {
    let manifest = "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
        [dependencies]\nitoa = \"1\"\nserde = { version = \"1\", optional = true }\n";
    fixture::cargo_crate(
        manifest,
        LIB,
        TESTS,
        ("    a + b", "    a + b + 1"),
        "assert_eq!(add(2, 3), 5);",
    )
}

fn config(repo: &Path, scratch: &Path) -> VerifyConfig {
    let mut cfg = test_config(scratch);
    // Cold builds of the crate and its dependency, on a loaded CI machine.
    cfg.hard_timeout_secs = 240.0;
    cfg.soft_timeout_secs = 200.0;
    cfg.run_env = RunEnv::host_toolchains().with_cargo_deps(repo).unwrap();
    cfg
}

#[test]
fn a_crate_with_crates_io_dependencies_and_no_lock_file_verifies_offline() {
    let (repo, a) = crate_repo();
    let scratch = tempfile::tempdir().unwrap();
    let cfg = config(repo.path(), scratch.path());
    let guests: Vec<_> = cfg.run_env.mounts.iter().map(|m| m.guest.clone()).collect();
    assert!(
        guests.contains(&ssr_game::vendor::VENDOR_GUEST.into())
            && guests.contains(&ssr_game::vendor::CARGO_CONFIG_GUEST.into()),
        "{guests:?}"
    );
    let r = Verifier::new(fixture::sandbox(), cfg).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    // The generated lock was made on a copy: the repository is untouched.
    assert!(!repo.path().join("Cargo.lock").exists());
}

/// Regression: self-play and `ssr env serve` open their arenas inside a tokio runtime,
/// where the blocking HTTP client of the first fill panicked ("Cannot drop a runtime in
/// a context where blocking is not allowed"). The fill runs on a thread of its own.
#[test]
fn vendoring_works_from_inside_an_async_runtime() {
    let (repo, _) = crate_repo();
    let cache = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v = rt
        .block_on(async { ssr_game::vendor::vendor_repo(repo.path(), cache.path()) })
        .unwrap()
        .expect("a crate with dependencies");
    assert!(v.generated_lock && v.crates >= 1, "{v:?}");
    let names: Vec<String> = std::fs::read_dir(&v.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("itoa-")), "{names:?}");
}

#[test]
fn without_vendored_crates_the_same_crate_cannot_build() {
    // The baseline the vendoring fixes: offline cargo cannot resolve `itoa`.
    let (repo, a) = crate_repo();
    let scratch = tempfile::tempdir().unwrap();
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(!r.valid, "{}", r.summary());
}

/// Sets every file's modification time under `dir` to `t`.
fn set_times(dir: &Path, t: SystemTime) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            set_times(&e.path(), t);
        } else if ty.is_file() {
            let f = std::fs::File::options().write(true).open(e.path()).unwrap();
            f.set_modified(t).unwrap();
        }
    }
}

/// Regression (issue 16, build caches): a repository that holds a build cache newer
/// than every file a run writes. Check 5 patches `src/lib.rs` and check 7 restores
/// it, each leaving a file older than the cache: cargo would call the cache fresh and
/// run the original's binary (the bug would break nothing), had the workspace kept
/// `target/`. Workspaces of a cargo project leave it out, so the bug verifies.
#[test]
fn a_build_cache_newer_than_the_restored_file_decides_no_verdict() {
    let (repo, a) = crate_repo();
    // The cache: the original's test binaries, built by cargo in the sandbox the way
    // a test run builds them, then kept in the repository with times a day ahead.
    let scratch = tempfile::tempdir().unwrap();
    let cfg = config(repo.path(), scratch.path());
    let mut spec = ssr_sandbox::ExecSpec::argv(["cargo", "test", "--no-run"], repo.path());
    spec.env = cfg.run_env.env.clone();
    spec.mounts = cfg.run_env.mounts.clone();
    spec.limits.timeout = Duration::from_secs(240);
    let out = fixture::sandbox().exec(&spec).unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.stderr);
    let target = repo.path().join("target");
    assert!(target.is_dir());
    set_times(&target, SystemTime::now() + Duration::from_secs(86_400));
    let r = Verifier::new(fixture::sandbox(), cfg).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
}
