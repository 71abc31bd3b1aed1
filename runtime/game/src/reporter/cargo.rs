//! cargo test's trusted reporter: canaries compiled into the oracle tests' own test
//! binaries, a panic hook installed before `main`, and events written out of band.
//!
//! Stable Rust has no hook into libtest's reporting (`--format json` and
//! `-Z panic-abort-tests` are unstable), so the reporter lives in the test binary
//! itself. For one run, every oracle test file that is the root of an integration
//! test binary run by libtest (`tests/NAME.rs`, `tests/NAME/main.rs`, or the path
//! of a `[[test]]` target) gets a module appended to its workspace copy, named and filled
//! from the secret, and is restored after the run; during the run it is read-only and
//! hashed like every protected file. The module holds:
//! - the canaries as `#[test]` functions: each must-pass canary appends a `canary`
//!   event after its check holds, each must-fail canary appends one and then fails
//!   by `resume_unwind` (no panic hook, no backtrace: libtest captures one for a
//!   panicking test when `RUST_BACKTRACE` is unset, about 0.1 s a binary);
//! - a function in `.init_array` (run before `main`, before any test) that appends a
//!   `start` event and installs a panic hook, chained to the previous one, which
//!   appends a `panic` event naming the panicking thread (libtest names each test's
//!   thread after the test).
//!
//! Events are lines of tab-separated fields: `start TARGET`, `canary TARGET NAME
//! pass|fail`, `panic TARGET THREAD`. The module is written to cost little to compile
//! (see [`MODULE_TEMPLATE`]).
//!
//! [`Reporter::read_cargo`] judges a run from those events and the log, per oracle
//! binary (`judge`), and says the run was tampered with when:
//! - a canary's log status is not the one it must have, or a must-pass canary is
//!   reported passed without having run;
//! - a must-fail canary failed but cargo never reported the binary failing (the
//!   binary exited with status 0: an exit from inside a test);
//! - canaries that ran, or that a complete block should hold, are not in the log;
//! - a test whose thread panicked is reported passed (unless the oracle files use
//!   `should_panic`, `catch_unwind` or their own panic hook, where a panic does not
//!   mean failure);
//! - the log holds results of the binary but its `start` event never came.
//!
//! **Which secret.** Without a build cache the secret is the run's own. A run over a
//! prebuilt build cache (`build_cache`) uses the cache's secret instead, drawn from
//! the OS random source when the cache was built: the full cache is built with the
//! same module appended to every test binary root ([`cargo_test_roots`]), events
//! going to the fixed [`CARGO_EVENTS_GUEST`], so a run appends byte for byte what
//! the cache compiled. Placement keeps every file's modification time, so cargo
//! rebuilds a test binary only when its file or its crate changed, as without
//! canaries; a module compiled per run would rebuild every oracle binary in every
//! run (measured on rust-ledger: +122 % of verify's test time). The cache's secret
//! lives in its record outside the mounted target directory, and solver episodes
//! use the dependency cache, which holds no canaries: no policy sees it.
//!
//! A binary that cannot hold the module (`harness = false`, `forbid(unsafe_code)`,
//! `no_main`, `no_std`) is listed as unguarded ([`CargoPlacement::unguarded`]);
//! `testrun` notes it and decides what its results count for.
//!
//! Canaries filtered out by the script's own name filter, or lost with a crashed
//! binary, make the run incomplete instead. Residual: code in the test process that
//! recognises the canaries (their module is in the file) and also erases its own
//! panic events from the channel can still forge a consistent result; the patch
//! scan (`scan`) flags the means (raw file descriptors, `dup2`, the channel path,
//! exits, panic hooks).
//!
//! Does not own: the secret and the canaries' names (`reporter`), or running the
//! script (`testrun`).

mod judge;

use super::{Canary, Reporter, ReporterReading};
use crate::trusted::{LogFormat, TrustedResults};
use judge::{Events, Judge, LogFacts};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The cargo events file inside the channel directory (the pytest reporter's is
/// `REPORT_FILE`; a script may run both).
pub const CARGO_EVENTS_FILE: &str = "cargo-events.tsv";

/// The events file of a run over a build cache, as the sandbox sees it: the run's
/// channel directory is also mounted at [`CHANNEL_GUEST`], so the path compiled into
/// the cache is the same for every run.
pub const CARGO_EVENTS_GUEST: &str = "/.ssr-channel/cargo-events.tsv";
/// Where a run over a build cache sees its channel directory.
pub const CHANNEL_GUEST: &str = "/.ssr-channel";

/// Words in an oracle file after which a panic on a test's thread does not mean the
/// test failed: the panic rule is off for that binary.
const PANIC_EXEMPT: &[&str] = &[
    "should_panic",
    "catch_unwind",
    "set_hook",
    "take_hook",
    "proptest",
    "quickcheck",
];

/// One oracle binary that holds the run's canaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedTarget {
    /// The oracle file, relative to the workspace (`tests/ops.rs`).
    pub file: String,
    /// The test target's name (`ops`), as in cargo's `--test ops`.
    pub name: String,
    /// The oracle files use panics that do not fail a test: the panic rule is off.
    pub panic_exempt: bool,
}

/// The canaries placed for one run; restores every oracle file when dropped.
#[derive(Debug, Default)]
pub struct CargoPlacement {
    pub targets: Vec<PlacedTarget>,
    /// Oracle test binaries that could hold no canaries: (file, why). Their runs
    /// are unguarded by the reporter (`testrun` notes them and decides what their
    /// results count for).
    pub unguarded: Vec<(String, &'static str)>,
    restore: Vec<(PathBuf, Vec<u8>, Option<SystemTime>)>,
}

impl CargoPlacement {
    /// Whether any file holds the module (judged or not).
    pub fn placed_any(&self) -> bool {
        !self.restore.is_empty()
    }
}

impl Drop for CargoPlacement {
    fn drop(&mut self) {
        for (path, bytes, mtime) in &self.restore {
            // The workspace is the run's own snapshot; a failed restore leaves the
            // canaries in a copy that is thrown away, never in the original.
            let _ = write_keeping_time(path, bytes, *mtime);
        }
    }
}

/// Writes `bytes` to `path` and gives it back the modification time `mtime`: cargo
/// decides freshness by file times, and a file whose time moves is rebuilt.
fn write_keeping_time(path: &Path, bytes: &[u8], mtime: Option<SystemTime>) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    if let Some(t) = mtime {
        std::fs::File::options()
            .write(true)
            .open(path)?
            .set_modified(t)?;
    }
    Ok(())
}

/// Every file of `tree` that is the root of an auto-discovered integration test
/// binary (`tests/NAME.rs`, `tests/NAME/main.rs`, in any package), sorted; `.git`,
/// `target` and hidden directories are not entered. The full build cache holds the
/// canary module in each of them, and a run over it places the module in each.
/// Not `inject::scripts::repo_files`: it also skips `build`, `env`, `dist` and the
/// like at any depth, which can be cargo packages, and a root the cache missed but a
/// run placed (time kept) would run the cached binary without its canaries.
pub fn cargo_test_roots(tree: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if !(name.starts_with('.') || (rel.is_empty() && name == "target")) {
                    walk(root, &child, out);
                }
            } else if kind.is_file() && binary_root(&child).is_some() {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, "", &mut out);
    out.sort();
    out
}

impl Reporter {
    /// The module name of the run's cargo canaries.
    fn cargo_module(&self) -> String {
        let mut rng = self.cargo_rng();
        let a = super::WORDS[rng.gen_range(0..super::WORDS.len())];
        let b = super::WORDS[rng.gen_range(0..super::WORDS.len())];
        format!("{a}_{b}_tests")
    }

    /// Whether the test id `id` (a cargo log id, `tests/x.rs::module::name`) is one of
    /// this secret's cargo canaries.
    pub fn is_cargo_canary(&self, id: &str) -> bool {
        let module = self.cargo_module();
        self.cargo_canaries()
            .any(|c| crate::trusted::suffix_match(id, &format!("{module}::{}", c.name)))
    }

    /// The canaries of the cargo module: the secret's first must-pass and first
    /// must-fail canary. One of each per test binary, not the pytest plugin's two:
    /// the module is compiled again into every binary in every run that rebuilds
    /// it, so each test it holds costs every such run.
    fn cargo_canaries(&self) -> impl Iterator<Item = &Canary> {
        let pass = self.canaries().find(|c| c.must_pass);
        let fail = self.canaries().find(|c| !c.must_pass);
        pass.into_iter().chain(fail)
    }

    /// A stream of its own, so the pytest canaries stay what they were for a secret.
    fn cargo_rng(&self) -> rand_chacha::ChaCha20Rng {
        let seed: [u8; 32] = Sha256::digest(format!("cargo:{}", self.secret)).into();
        rand_chacha::ChaCha20Rng::from_seed(seed)
    }

    /// Appends the canary module to every eligible file of `roots` in `workspace`,
    /// writing events to `events` (a path as the sandbox sees it), and keeps each
    /// file's modification time. Only files in `oracle` are judged
    /// ([`CargoPlacement::targets`]) or listed unguarded; the others hold the module
    /// because a build cache compiled it there. Files that cannot hold it are left
    /// alone.
    pub fn place_cargo(
        &self,
        workspace: &Path,
        roots: &[String],
        oracle: &BTreeSet<String>,
        events: &Path,
    ) -> std::io::Result<CargoPlacement> {
        let mut placement = CargoPlacement::default();
        for file in roots {
            let judged = oracle.contains(file);
            let Some((package, name)) = binary_root(file) else {
                continue;
            };
            let path = workspace.join(file);
            let Ok(original) = std::fs::read(&path) else {
                continue;
            };
            let mtime = path.metadata().and_then(|m| m.modified()).ok();
            let text = String::from_utf8_lossy(&original).into_owned();
            let manifest = std::fs::read_to_string(workspace.join(package).join("Cargo.toml"))
                .unwrap_or_default();
            // Binaries with no libtest (`harness = false`) and crates that cannot hold
            // the module keep no canaries rather than break; the run says so.
            let name = match test_target(&manifest, package, file, name) {
                Target::None => continue,
                Target::Unguarded(why) => Err(why),
                Target::Libtest(name) => no_canary_reason(&text).map_or(Ok(name), Err),
            };
            let name = match name {
                Ok(name) => name,
                Err(why) => {
                    if judged {
                        placement.unguarded.push((file.clone(), why));
                    }
                    continue;
                }
            };
            let root = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap_or_default();
            let edition_2024 = manifest.contains("\"2024\"") || root.contains("\"2024\"");
            let module = self.cargo_source(file, events, edition_2024);
            let mut patched = original.clone();
            if !patched.ends_with(b"\n") {
                patched.push(b'\n');
            }
            patched.extend_from_slice(module.as_bytes());
            placement.restore.push((path.clone(), original, mtime));
            write_keeping_time(&path, &patched, mtime)?;
            if !judged {
                continue;
            }
            placement.targets.push(PlacedTarget {
                file: file.clone(),
                name,
                panic_exempt: PANIC_EXEMPT.iter().any(|w| text.contains(w)),
            });
        }
        Ok(placement)
    }

    /// The module appended to one oracle file.
    fn cargo_source(&self, target: &str, events: &Path, edition_2024: bool) -> String {
        let mut rng = self.cargo_rng();
        // The module name's draws first, so bodies do not repeat its numbers.
        let _ = (rng.r#gen::<u64>(), rng.r#gen::<u64>());
        let (section, extern_kw) = if edition_2024 {
            ("#[unsafe(link_section = \".init_array\")]", "unsafe extern")
        } else {
            ("#[link_section = \".init_array\"]", "extern")
        };
        let mut tests = String::new();
        for c in self.cargo_canaries() {
            tests.push_str(&rust_canary(c, target, &mut rng));
        }
        let mut events = events.as_os_str().as_encoded_bytes().to_vec();
        events.push(0);
        // The panic line's tail is the thread's name.
        let mut panic = event_line(&["panic", target]);
        panic.push(b'\t');
        fill_module(&ModuleParts {
            module: &self.cargo_module(),
            events: &byte_literal(&events),
            start: &event_literal(&["start", target]),
            panic: &byte_literal(&panic),
            section,
            extern_kw,
            tests: &tests,
        })
    }

    /// Judges a cargo run: `placed` from [`Reporter::place_cargo`], the events file's
    /// text, the log and its trusted results. `None` when nothing was placed.
    pub fn read_cargo(
        &self,
        placed: &[PlacedTarget],
        events: &str,
        log: &str,
        results: &TrustedResults,
    ) -> Option<ReporterReading> {
        if placed.is_empty() {
            return None;
        }
        let module = self.cargo_module();
        let facts = LogFacts::read(log);
        let events = Events::read(events);
        let mut out = ReporterReading {
            sessions: 1,
            format: LogFormat::CargoTest,
            secret: self.secret.clone(),
            ..ReporterReading::default()
        };
        for c in self.cargo_canaries() {
            out.canary_ids.push(format!("{module}::{}", c.name));
        }
        for t in placed {
            let judge = Judge {
                target: t,
                module: &module,
                canaries: self.cargo_canaries().collect(),
                facts: &facts,
                events: &events,
                results,
            };
            judge.run(&mut out);
        }
        for id in results.keys() {
            if out.is_canary(id) && !out.canary_ids.contains(id) {
                out.canary_ids.push(id.clone());
            }
        }
        Some(out)
    }
}

/// The module appended to an oracle file (`__MODULE__` etc. filled per run). It
/// compiles on every edition: `link_section` and `extern` blocks are unsafe from
/// edition 2024 on, so the caller picks their spelling (`__SECTION__`, `__EXTERN__`).
///
/// It is compiled again into every test binary each time the binary's crate changes
/// (each verification run that rebuilds), so it holds no generic `std` code: every
/// line it writes is a constant but a panicking thread's name, the writer is three
/// libc calls, the previous panic hook is kept as a leaked reference rather than in
/// a closure, the current thread's handle is never dropped, and a must-fail canary
/// fails by `resume_unwind`. Written with `String`, `File`, a capturing closure and
/// `Result` tests, it cost rust-ledger's four test binaries 65 ms of CPU per rebuild
/// (+11 %); this form costs 35 ms (`cargo test --no-run` after a one-line change
/// of the library, 12 pairs).
const MODULE_TEMPLATE: &str = r#"
#[allow(unknown_lints, unsafe_code, dead_code, unused, deprecated, non_snake_case, non_camel_case_types, non_upper_case_globals, missing_docs, clashing_extern_declarations, static_mut_refs, clippy::all)]
mod __MODULE__ {
    const EVENTS: &[u8] = __EVENTS__;

    #[repr(C)]
    struct Iov(*const u8, usize);

    __EXTERN__ "C" {
        fn open(path: *const u8, flags: i32, ...) -> i32;
        fn writev(fd: i32, iov: *const Iov, count: i32) -> isize;
        fn close(fd: i32) -> i32;
    }

    // `head`, `tail` and a newline in one `writev`: lines of concurrent tests
    // never interleave.
    fn put(head: &[u8], tail: &[u8]) {
        let iov = [
            Iov(head.as_ptr(), head.len()),
            Iov(tail.as_ptr(), tail.len()),
            Iov(b"\n".as_ptr(), 1),
        ];
        unsafe {
            // O_WRONLY | O_APPEND | O_CLOEXEC (Linux).
            let fd = open(EVENTS.as_ptr(), 0o1 | 0o2000 | 0o2000000);
            if fd >= 0 {
                writev(fd, iov.as_ptr(), 3);
                close(fd);
            }
        }
    }

    type Hook = dyn Fn(&std::panic::PanicInfo<'_>) + Sync + Send + 'static;
    static mut PREVIOUS: Option<&'static Hook> = None;

    #[used]
    __SECTION__
    static START: extern "C" fn() = start;

    extern "C" fn start() {
        put(__START__, b"");
        unsafe { PREVIOUS = Some(Box::leak(std::panic::take_hook())) };
        std::panic::set_hook(Box::new(hook));
    }

    fn hook(info: &std::panic::PanicInfo<'_>) {
        let thread = std::mem::ManuallyDrop::new(std::thread::current());
        if let Some(name) = thread.name() {
            let name = name.as_bytes();
            let mut i = 0;
            while i < name.len() && name[i] != b'\t' && name[i] != b'\n' {
                i += 1;
            }
            if i == name.len() {
                put(__PANIC__, name);
            }
        }
        if let Some(previous) = unsafe { PREVIOUS } {
            previous(info);
        }
    }

__TESTS__}
"#;

/// The module's source from its parts (each already a Rust token string).
struct ModuleParts<'a> {
    module: &'a str,
    events: &'a str,
    start: &'a str,
    panic: &'a str,
    section: &'a str,
    extern_kw: &'a str,
    tests: &'a str,
}

fn fill_module(p: &ModuleParts<'_>) -> String {
    MODULE_TEMPLATE
        .replace("__MODULE__", p.module)
        .replace("__EVENTS__", p.events)
        .replace("__START__", p.start)
        .replace("__PANIC__", p.panic)
        .replace("__SECTION__", p.section)
        .replace("__EXTERN__", p.extern_kw)
        .replace("__TESTS__", p.tests)
}

/// `bytes` as a Rust byte string literal (`b"..."`): printable ASCII as is, `"` and
/// `\` escaped, tab, newline and NUL as `\t`, `\n`, `\0`, everything else as `\xNN`.
fn byte_literal(bytes: &[u8]) -> String {
    let mut out = String::from("b\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0 => out.push_str("\\0"),
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// One event line without its newline: fields joined by tabs (tabs and newlines in a
/// field become spaces).
fn event_line(fields: &[&str]) -> Vec<u8> {
    let clean: Vec<String> = fields
        .iter()
        .map(|f| f.replace(['\t', '\n'], " "))
        .collect();
    clean.join("\t").into_bytes()
}

/// [`event_line`] as a byte string literal.
fn event_literal(fields: &[&str]) -> String {
    byte_literal(&event_line(fields))
}

/// What the package's manifest makes of a test binary root.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Not a test target (no package, or `autotests = false` and no `[[test]]`).
    None,
    /// A libtest binary, by its target name (`--test NAME`).
    Libtest(String),
    /// A target the canary module cannot watch, and why.
    Unguarded(&'static str),
}

/// The test target whose root is `file` (workspace-relative, in `package`; `auto`
/// is the name cargo's discovery gives it): a `[[test]]` entry whose path (or
/// default path) is the file names it and says whether libtest runs it; otherwise
/// cargo discovers it unless `autotests = false`.
fn test_target(manifest: &str, package: &str, file: &str, auto: &str) -> Target {
    if manifest.is_empty() {
        return Target::None;
    }
    let Ok(table) = manifest.parse::<toml::Table>() else {
        return Target::Unguarded("a manifest ssr cannot read");
    };
    let rel = match package {
        "" => file,
        p => file
            .strip_prefix(p)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(file),
    };
    let entries = table.get("test").and_then(|t| t.as_array());
    for entry in entries.into_iter().flatten() {
        let Some(name) = entry.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let path = entry.get("path").and_then(|p| p.as_str());
        let is_it = match path {
            Some(p) => p.trim_start_matches("./") == rel,
            None => rel == format!("tests/{name}.rs") || rel == format!("tests/{name}/main.rs"),
        };
        if !is_it {
            continue;
        }
        if entry.get("harness").and_then(|h| h.as_bool()) == Some(false) {
            return Target::Unguarded("`harness = false`: no libtest to hold the canaries");
        }
        return Target::Libtest(name.to_string());
    }
    let autotests = table
        .get("package")
        .and_then(|p| p.get("autotests"))
        .and_then(|a| a.as_bool());
    if autotests == Some(false) {
        return Target::None;
    }
    Target::Libtest(auto.to_string())
}

/// Why a libtest binary's root cannot hold the canary module, if it cannot: its
/// attributes refuse the module (`unsafe` for `.init_array`, `std`, libtest's
/// `main`).
fn no_canary_reason(text: &str) -> Option<&'static str> {
    [
        ("forbid(unsafe_code)", "`forbid(unsafe_code)`"),
        ("no_main", "`no_main`"),
        ("no_std", "`no_std`"),
    ]
    .into_iter()
    .find(|(w, _)| text.contains(w))
    .map(|(_, why)| why)
}

/// `(package directory, test target name)` when `file` is the root of an
/// auto-discovered integration test binary.
fn binary_root(file: &str) -> Option<(&str, &str)> {
    let (package, rest) = match file.rfind("tests/") {
        Some(0) => ("", &file["tests/".len()..]),
        Some(i) if file.as_bytes()[i - 1] == b'/' => (&file[..i - 1], &file[i + "tests/".len()..]),
        _ => return None,
    };
    // `rfind` took the last `tests/`: `tests/a/tests/x.rs` is a file of `tests/a`.
    if let Some(name) = rest.strip_suffix(".rs").filter(|n| !n.contains('/')) {
        return Some((package, name));
    }
    let name = rest.strip_suffix("/main.rs")?;
    (!name.contains('/')).then_some((package, name))
}

/// One canary as a Rust test function of the binary of `target`: one of a few
/// ordinary shapes with numbers from the secret, none of them generic (see
/// [`MODULE_TEMPLATE`]). A must-pass canary writes its event after its check holds;
/// a must-fail canary writes its event, then compares with a wrong value and fails
/// by `resume_unwind`, which runs no panic hook and captures no backtrace (a panic
/// in a libtest test captures one when `RUST_BACKTRACE` is unset: 0.1 s a binary).
fn rust_canary(c: &Canary, target: &str, rng: &mut impl Rng) -> String {
    let a: i64 = rng.gen_range(2..500);
    let b: i64 = rng.gen_range(2..500);
    let k: i64 = rng.gen_range(1..50);
    let off: i64 = if c.must_pass { 0 } else { rng.gen_range(1..9) };
    let (setup, got, want) = match rng.gen_range(0..3) {
        0 => (
            format!("let value: i64 = {a} * {b} + {k};"),
            "value",
            a * b + k,
        ),
        1 => (
            format!("let items: [i64; 3] = [{a}, {b}, {k}];"),
            "items[0] + items[1] + items[2]",
            a + b + k,
        ),
        _ => {
            let text = format!("{a}-{b}");
            let len = text.len() as i64;
            (format!("let text = \"{text}\";"), "text.len() as i64", len)
        }
    };
    let name = &c.name;
    let want = want + off;
    let event = event_literal(&["canary", target, name, c.must()]);
    if c.must_pass {
        format!(
            "    #[test]\n    fn {name}() {{\n        {setup}\n        if {got} != {want} {{\n            panic!(\"{got} != {want}\");\n        }}\n        put({event}, b\"\");\n    }}\n\n"
        )
    } else {
        format!(
            "    #[test]\n    fn {name}() {{\n        {setup}\n        put({event}, b\"\");\n        if {got} != {want} {{\n            std::panic::resume_unwind(Box::new(()));\n        }}\n    }}\n\n"
        )
    }
}

#[cfg(test)]
mod tests;
