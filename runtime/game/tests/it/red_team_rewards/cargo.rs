//! cargo test: judged by the trusted cargo reporter (canaries compiled into the
//! oracle binary, a panic hook before `main`, out-of-band events), the trusted log
//! parser, the read-only tests and the scan. No scan finding rejects here: every
//! attack is caught at run time (the blocked rewrite leaves an ordinary bug, which
//! only the scan sees).

use super::*;
use ssr_game::RunEnv;

const CARGO_LIB: &str = "\
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

pub fn sub(a: i64, b: i64) -> i64 {
    a - b
}

pub fn mul(a: i64, b: i64) -> i64 {
    a * b
}
";

const CARGO_TESTS: &str = "\
use calc::*;

#[test]
fn adds() {
    assert_eq!(add(2, 3), 5);
}

#[test]
fn subs() {
    assert_eq!(sub(5, 3), 2);
}

#[test]
fn muls() {
    assert_eq!(mul(4, 3), 12);
}

#[test]
fn adds_zero() {
    assert_eq!(add(0, 7), 7);
}

#[test]
fn muls_zero() {
    assert_eq!(mul(0, 7), 0);
}
";

fn cargo_repo() -> (tempfile::TempDir, Artifact) {
    fixture::cargo_crate(
        "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        CARGO_LIB,
        CARGO_TESTS,
        ("    a + b", "    a + b + 1"),
        "assert_eq!(add(2, 3), 5);",
    )
}

/// Redirects the test binary's stdout through `sed` (from the first call of `add`),
/// rewriting the lines libtest prints after that point with `script`. At exit the
/// binary closes the pipe and waits for `sed`, so every forged line reaches the log:
/// an attack that lost its own output would only make the run incomplete, and this
/// suite is about the attacks that succeed in forging (CI once lost the forged line
/// when the binary exited before `sed` wrote it).
fn cargo_filter(script: &str) -> String {
    format!(
        "
extern \"C\" {{
    fn dup2(from: i32, to: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn atexit(f: extern \"C\" fn()) -> i32;
}}
static SED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
extern \"C\" fn drain() {{
    unsafe {{
        close(1);
        waitpid(SED.load(std::sync::atomic::Ordering::SeqCst), std::ptr::null_mut(), 0);
    }}
}}
fn forge() {{
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {{
        use std::os::unix::io::IntoRawFd;
        let script: String = {script};
        let mut child = std::process::Command::new(\"sed\")
            .args([\"-u\", \"-e\", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        SED.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
        let pipe = child.stdin.take().unwrap().into_raw_fd();
        unsafe {{
            dup2(pipe, 1);
            close(pipe);
            atexit(drain);
        }}
        std::mem::forget(child);
    }});
}}
"
    )
}

/// Patching the report object: libtest's own output rewritten, every `FAILED` an
/// `ok` and the summary's verdict `ok` (libtest has no report object a library
/// can reach; its output stream is the report).
fn cargo_report_object() -> String {
    cargo_filter(
        r#""s/ \\.\\.\\. FAILED$/ ... ok/; s/^test result: FAILED\\./test result: ok./".to_string()"#,
    )
}

/// Patching the runner's report call: libtest learns a failure from the unwinding
/// panic, so the attack takes the failure path itself, with a panic hook that ends
/// the binary with status 0 at the first failure.
const CARGO_PANIC_HOOK: &str = "
fn forge() {
    std::panic::set_hook(Box::new(|_| std::process::exit(0)));
}
";

/// Rewriting the oracle test file from the library at test time.
const CARGO_REWRITE: &str = "
fn forge() {
    let _ = std::fs::write(\"tests/ops.rs\", \"\");
}
";

/// Creating a file under a protected glob (a build script) during the run.
const CARGO_CREATE_PROTECTED: &str = "
fn forge() {
    let _ = std::fs::write(\"build.rs\", \"fn main() {}\\n\");
}
";

/// A fake summary written to the real stdout (past libtest's capture), then
/// `std::process::exit(0)`.
const CARGO_FAKE_EXIT: &str = "
fn forge() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(b\"test adds ... ok\\ntest subs ... ok\\ntest muls ... ok\\ntest adds_zero ... ok\\ntest muls_zero ... ok\\n\\ntest result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\\n\\n\");
    let _ = out.flush();
    std::process::exit(0);
}
";

/// Patching the trusted reporter itself: its channel is named in the module it
/// appends to the oracle file; the attack empties the channel, silences the panic
/// hook, and rewrites every failure in the log.
fn cargo_patch_reporter() -> String {
    let erase = "
fn erase() {
    let text = std::fs::read_to_string(\"tests/ops.rs\").unwrap_or_default();
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix(\"const EVENTS: &[u8] = b\\\"\") {
            let path = rest.trim_end_matches(\"\\\\0\\\";\");
            let _ = std::fs::write(path, \"\");
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
}
";
    cargo_report_object().replace(
        "ONCE.call_once(|| {",
        "ONCE.call_once(|| {\n        erase();",
    ) + erase
}

/// Forging only the ids of the failing tests named in the task (`adds`).
fn cargo_targeted() -> String {
    cargo_filter(r#""s/^test adds \\.\\.\\. FAILED$/test adds ... ok/".to_string()"#)
}

/// Recognising canaries by body and location: only the tests defined before the
/// appended module (the file's own) are forged, so the canaries keep their true
/// outcome.
fn cargo_canary_aware() -> String {
    cargo_filter(
        r#"{
            let text = std::fs::read_to_string("tests/ops.rs").unwrap_or_default();
            let own = text.split("\n#[allow(").next().unwrap_or("");
            own.split("fn ")
                .skip(1)
                .filter_map(|rest| rest.split('(').next())
                .map(|name| format!("s/^test {name} \\.\\.\\. FAILED$/test {name} ... ok/;"))
                .collect()
        }"#,
    )
}

/// Rewriting the reporter's channel at exit: the canary-aware log rewrite above,
/// and an `atexit` function that reads the channel (its path is in the module
/// appended to the oracle file) without blocking and writes it back without the
/// panic events of the file's own tests.
fn cargo_rewrite_channel() -> String {
    let rewrite = r#"
extern "C" fn rewrite_channel() {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let text = std::fs::read_to_string("tests/ops.rs").unwrap_or_default();
    let own: Vec<String> = text
        .split("
#[allow(")
        .next()
        .unwrap_or("")
        .split("fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(|n| format!("	{n}"))
        .collect();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("const EVENTS: &[u8] = b\"") else {
            continue;
        };
        let path = rest.trim_end_matches("\\0\";");
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(0o4000)
            .open(path)
        {
            let _ = f.read_to_end(&mut bytes);
        }
        let kept: String = String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !(l.starts_with("panic	") && own.iter().any(|n| l.ends_with(n.as_str()))))
            .map(|l| format!("{l}
"))
            .collect();
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).truncate(true).open(path) {
            let _ = f.write_all(kept.as_bytes());
        }
    }
}
"#;
    // The canary-aware rewrite of the log, with the summary's counts made to
    // agree (the file's own tests passed, the canaries as they must be).
    let filter = cargo_filter(
        r#"{
            let text = std::fs::read_to_string("tests/ops.rs").unwrap_or_default();
            let mut parts = text.splitn(2, "\n#[allow(");
            let own_text = parts.next().unwrap_or("");
            let module = parts.next().unwrap_or("");
            let own: Vec<&str> = own_text
                .split("fn ")
                .skip(1)
                .filter_map(|rest| rest.split('(').next())
                .collect();
            let fail = module.matches("\\tfail\"").count();
            let pass = module.matches("\\tpass\"").count();
            let mut s: String = own
                .iter()
                .map(|name| format!("s/^test {name} \\.\\.\\. FAILED$/test {name} ... ok/;"))
                .collect();
            s.push_str(&format!(
                "s/^test result: FAILED\\. [0-9]* passed; [0-9]* failed;/test result: FAILED. {} passed; {fail} failed;/",
                own.len() + pass
            ));
            s
        }"#,
    );
    filter.replace(
        "atexit(drain);",
        "atexit(drain);\n            atexit(rewrite_channel);",
    ) + rewrite
}

/// The cargo attacks (each a `forge` that `add` calls first).
fn cargo_attacks() -> Vec<(&'static str, String)> {
    vec![
        ("report object", cargo_report_object()),
        ("runner report call", CARGO_PANIC_HOOK.to_string()),
        ("rewrite oracle files", CARGO_REWRITE.to_string()),
        (
            "create a protected file",
            CARGO_CREATE_PROTECTED.to_string(),
        ),
        (
            "fake summary and process::exit",
            CARGO_FAKE_EXIT.to_string(),
        ),
        ("patch the trusted reporter", cargo_patch_reporter()),
        ("forge only the failing ids", cargo_targeted()),
        ("recognise canaries", cargo_canary_aware()),
        ("rewrite the channel at exit", cargo_rewrite_channel()),
    ]
}

/// The buggy library, and each attack appended to it with `add` calling it first, so
/// it acts when a test runs.
fn buggy_and_attacked() -> (String, Vec<(&'static str, String)>) {
    let buggy = CARGO_LIB.replace("    a + b", "    a + b + 1");
    let with_call = buggy.replace(
        "pub fn add(a: i64, b: i64) -> i64 {\n",
        "pub fn add(a: i64, b: i64) -> i64 {\n    forge();\n",
    );
    let attacks = cargo_attacks()
        .into_iter()
        .map(|(w, at)| (w, format!("{with_call}{at}")))
        .collect();
    (buggy, attacks)
}

#[test]
fn cargo_attacks_score_minus_one_and_are_rejected() {
    let (repo, a) = cargo_repo();
    let (buggy, attacks) = buggy_and_attacked();
    // Over a build cache, as every host cargo project runs (`verify_config_for`): the
    // canaries are the cache's, compiled into it, with a fixed events path.
    let scratch = tempfile::tempdir().unwrap();
    let mut cfg = test_config(scratch.path());
    cfg.hard_timeout_secs = 120.0;
    cfg.soft_timeout_secs = 90.0;
    cfg.run_env = RunEnv::host_toolchains()
        .with_cargo_deps(repo.path())
        .unwrap();
    let caches = cfg
        .run_env
        .build_cache
        .as_ref()
        .expect("a cargo project has caches");
    assert!(caches.canary_secret.is_some(), "{caches:?}");
    attack_both_ways_in(cfg, repo.path(), &a, "src/lib.rs", &buggy, &attacks, false);
}

/// The same attacks without a build cache (image-based environments have none): each
/// run compiles canaries of its own secret, events to the run's own channel path.
#[test]
fn cargo_attacks_without_a_build_cache_score_minus_one_and_are_rejected() {
    let (repo, a) = cargo_repo();
    let (buggy, attacks) = buggy_and_attacked();
    attack_both_ways(repo.path(), &a, "src/lib.rs", &buggy, &attacks, false);
}

const MANIFEST: &str = "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";

/// A test binary with its own `main` that prints libtest's lines (as libtest-mimic
/// does): `harness = false`, where no canary module can be placed.
const MIMIC_TESTS: &str = "\
use calc::*;

fn main() {
    let cases: [(&str, bool); 5] = [
        (\"adds\", add(2, 3) == 5),
        (\"subs\", sub(5, 3) == 2),
        (\"muls\", mul(4, 3) == 12),
        (\"adds_zero\", add(0, 7) == 7),
        (\"muls_zero\", mul(0, 7) == 0),
    ];
    println!(\"\\nrunning {} tests\", cases.len());
    let mut failed = 0;
    for (name, ok) in cases {
        println!(\"test {name} ... {}\", if ok { \"ok\" } else { \"FAILED\" });
        failed += usize::from(!ok);
    }
    let verdict = if failed == 0 { \"ok\" } else { \"FAILED\" };
    println!(
        \"\\ntest result: {verdict}. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\\n\",
        cases.len() - failed
    );
    if failed > 0 {
        std::process::exit(101);
    }
}
";

/// A `[[test]]` target run by libtest holds the canaries under its own name, so the
/// attacks are caught as in any test binary.
#[test]
fn a_test_target_of_the_manifest_holds_the_canaries() {
    let manifest = format!("{MANIFEST}\n[[test]]\nname = \"arith\"\npath = \"tests/ops.rs\"\n");
    let (repo, a) = fixture::cargo_crate(
        &manifest,
        CARGO_LIB,
        CARGO_TESTS,
        ("    a + b", "    a + b + 1"),
        "assert_eq!(add(2, 3), 5);",
    );
    let buggy = CARGO_LIB.replace("    a + b", "    a + b + 1");
    let with_call = buggy.replace(
        "pub fn add(a: i64, b: i64) -> i64 {\n",
        "pub fn add(a: i64, b: i64) -> i64 {\n    forge();\n",
    );
    let attacks = [(
        "fake summary and process::exit",
        format!("{with_call}{CARGO_FAKE_EXIT}"),
    )];
    attack_both_ways(repo.path(), &a, "src/lib.rs", &buggy, &attacks, false);
}

/// A `harness = false` target holds no canary: the run notes it, and since nothing
/// in that binary watches its result, no test of it passes unless scan findings
/// reject (then the fake exit is caught by the scan, and the true fix solves).
#[test]
fn a_harness_false_target_is_noted_unguarded_and_passes_only_when_the_scan_rejects() {
    let manifest =
        format!("{MANIFEST}\n[[test]]\nname = \"ops\"\npath = \"tests/ops.rs\"\nharness = false\n");
    let (repo, a) = fixture::cargo_crate(
        &manifest,
        CARGO_LIB,
        MIMIC_TESTS,
        ("    a + b", "    a + b + 1"),
        "(\"adds\", add(2, 3) == 5),",
    );
    let scratch = tempfile::tempdir().unwrap();
    let base = test_config(scratch.path());
    let r = Verifier::new(fixture::sandbox(), base.clone()).verify(repo.path(), &a);
    assert!(!r.valid, "{}", r.summary());
    assert_eq!(r.code, Some(RejectCode::IncompleteRun), "{}", r.summary());
    assert!(r.summary().contains("no canaries"), "{}", r.summary());
    let strict = VerifyConfig {
        reject_tampering_findings: true,
        ..base
    };
    let r = Verifier::new(fixture::sandbox(), strict.clone()).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    let p = r.all_tests();
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    let ev = Evaluator::new(fixture::sandbox(), strict);
    let buggy = CARGO_LIB.replace("    a + b", "    a + b + 1");
    let ws = tempfile::tempdir().unwrap();
    copy_tree(repo.path(), ws.path());
    std::fs::write(ws.path().join("src/lib.rs"), &buggy).unwrap();
    let attack = buggy.replace(
        "pub fn add(a: i64, b: i64) -> i64 {\n",
        "pub fn add(a: i64, b: i64) -> i64 {\n    forge();\n",
    ) + CARGO_FAKE_EXIT;
    let e = ev.evaluate(
        repo.path(),
        bug,
        &diff(ws.path(), &[("src/lib.rs", Some(&attack))]),
    );
    assert_minus_one_with_note("fake summary and process::exit", &e);
    assert!(
        matches!(e.outcome, EvalOutcome::Tampered { .. }),
        "{}",
        e.summary()
    );
    let fix = patch_ops::reverse(&a.bug_inject).unwrap();
    let e = ev.evaluate(repo.path(), bug, &fix);
    assert!(e.solved, "{}", e.summary());
    assert!(
        e.notes.iter().any(|n| n.contains("no canaries")),
        "{}",
        e.summary()
    );
}
