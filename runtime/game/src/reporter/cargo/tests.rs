//! Tests of the cargo reporter: placement (which files hold the canary module, and
//! restoring them) and judging (a run's events and log).

use super::*;
use crate::trusted::parse_log;
use std::collections::BTreeSet;
use std::time::SystemTime;

fn reporter() -> Reporter {
    Reporter::from_secret(&[9; 16])
}

fn target(exempt: bool) -> Vec<PlacedTarget> {
    vec![PlacedTarget {
        file: "tests/ops.rs".into(),
        name: "ops".into(),
        panic_exempt: exempt,
    }]
}

/// An honest run's log and events: `adds` passes (or fails), canaries as they must.
fn honest(r: &Reporter, adds_ok: bool) -> (String, String) {
    let m = r.cargo_module();
    let mut log =
        String::from("     Running tests/ops.rs (target/debug/deps/ops-0a1b)\n\nrunning 5 tests\n");
    let mut ev = String::from("start\ttests/ops.rs\n");
    log.push_str(&format!(
        "test adds ... {}\n",
        if adds_ok { "ok" } else { "FAILED" }
    ));
    if !adds_ok {
        ev.push_str("panic\ttests/ops.rs\tadds\n");
    }
    for c in r.cargo_canaries() {
        let st = if c.must_pass { "ok" } else { "FAILED" };
        log.push_str(&format!("test {m}::{} ... {st}\n", c.name));
        // Must-fail canaries unwind without the panic hook: no panic event.
        ev.push_str(&format!("canary\ttests/ops.rs\t{}\t{}\n", c.name, c.must()));
    }
    let failed = if adds_ok { 2 } else { 3 };
    log.push_str(&format!(
        "\ntest result: FAILED. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\nerror: test failed, to rerun pass `--test ops`\n",
        5 - failed
    ));
    (log, ev)
}

fn read(r: &Reporter, log: &str, ev: &str, exempt: bool) -> ReporterReading {
    let results = parse_log(log).map(|t| t.results).unwrap_or_default();
    r.read_cargo(&target(exempt), ev, log, &results).unwrap()
}

#[test]
fn an_honest_run_is_clean_and_its_canaries_are_known() {
    let r = reporter();
    for adds_ok in [true, false] {
        let (log, ev) = honest(&r, adds_ok);
        let reading = read(&r, &log, &ev, false);
        assert!(reading.tampered.is_empty(), "{:?}", reading.tampered);
        assert!(reading.incomplete.is_none());
        let results = parse_log(&log).unwrap().results;
        let canaries = results.keys().filter(|id| reading.is_canary(id)).count();
        assert_eq!(canaries, 2);
        assert!(!reading.is_canary("tests/ops.rs::adds"));
    }
}

#[test]
fn a_must_fail_canary_reported_ok_is_tampering() {
    let r = reporter();
    let (log, ev) = honest(&r, false);
    let log = log.replace(" ... FAILED", " ... ok");
    let reading = read(&r, &log, &ev, false);
    assert!(
        reading.tampered.iter().any(|t| t.contains("must fail")),
        "{:?}",
        reading.tampered
    );
    // `adds` panicked and is reported passed.
    assert!(
        reading
            .tampered
            .iter()
            .any(|t| t.contains("adds was reported passed"))
    );
}

#[test]
fn a_passed_test_that_panicked_is_tampering_unless_the_oracle_expects_panics() {
    let r = reporter();
    let (log, ev) = honest(&r, false);
    let log = log.replace("test adds ... FAILED", "test adds ... ok");
    assert!(!read(&r, &log, &ev, false).tampered.is_empty());
    assert!(read(&r, &log, &ev, true).tampered.is_empty());
}

#[test]
fn a_binary_that_exits_zero_after_its_must_fail_canary_is_tampering() {
    let r = reporter();
    let (log, ev) = honest(&r, true);
    let log = log.replace("error: test failed, to rerun pass `--test ops`\n", "");
    let reading = read(&r, &log, &ev, false);
    assert!(
        reading.tampered.iter().any(|t| t.contains("status 0")),
        "{:?}",
        reading.tampered
    );
}

#[test]
fn missing_canaries_are_tampering_filtered_ones_incomplete() {
    let r = reporter();
    let fake = "     Running tests/ops.rs (target/debug/deps/ops-0a1b)\n\nrunning 1 test\ntest adds ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
    let ev = "start\ttests/ops.rs\n";
    let reading = read(&r, fake, ev, false);
    assert!(
        reading.tampered.iter().any(|t| t.contains("no result")),
        "{:?}",
        reading.tampered
    );
    let filtered = fake.replace("0 filtered out", "4 filtered out");
    let reading = read(&r, &filtered, ev, false);
    assert!(reading.tampered.is_empty(), "{:?}", reading.tampered);
    assert!(reading.incomplete.is_some());
    // Results of the binary without the reporter's start: tampered.
    let reading = read(&r, fake, "", false);
    assert!(reading.tampered.iter().any(|t| t.contains("never started")));
    // A binary that never ran (a compile error): nothing to judge.
    let reading = read(&r, "error[E0425]: cannot find value\n", "", false);
    assert!(reading.tampered.is_empty() && reading.incomplete.is_none());
}

#[test]
fn a_must_pass_canary_reported_without_running_is_tampering() {
    let r = reporter();
    let (log, ev) = honest(&r, true);
    let ev: String = ev
        .lines()
        .filter(|l| !l.ends_with("\tpass"))
        .map(|l| format!("{l}\n"))
        .collect();
    let reading = read(&r, &log, &ev, false);
    assert!(
        reading.tampered.iter().any(|t| t.contains("never ran")),
        "{:?}",
        reading.tampered
    );
}

#[test]
fn placement_appends_to_binary_roots_only_and_restores_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    std::fs::create_dir_all(w.join("tests/common")).unwrap();
    std::fs::write(
        w.join("Cargo.toml"),
        "[package]\nname = \"x\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(w.join("tests/ops.rs"), "#[test]\nfn a() {}").unwrap();
    std::fs::write(w.join("tests/common/mod.rs"), "pub fn h() {}\n").unwrap();
    std::fs::write(w.join("tests/safe.rs"), "#![forbid(unsafe_code)]\n").unwrap();
    let oracle: Vec<String> = [
        "tests/ops.rs",
        "tests/common/mod.rs",
        "tests/safe.rs",
        "tests/gone.rs",
    ]
    .map(String::from)
    .to_vec();
    let judged: BTreeSet<String> = oracle.iter().cloned().collect();
    let r = reporter();
    let p = r
        .place_cargo(w, &oracle, &judged, Path::new("/tmp/ev.tsv"))
        .unwrap();
    assert_eq!(p.targets, target(false));
    let text = std::fs::read_to_string(w.join("tests/ops.rs")).unwrap();
    assert!(text.starts_with("#[test]\nfn a() {}\n"));
    assert!(text.contains(&format!("mod {}", r.cargo_module())));
    assert!(text.contains("#[link_section = \".init_array\"]"));
    for c in r.cargo_canaries() {
        assert!(text.contains(&format!("fn {}()", c.name)));
    }
    assert_eq!(
        std::fs::read_to_string(w.join("tests/safe.rs")).unwrap(),
        "#![forbid(unsafe_code)]\n"
    );
    drop(p);
    assert_eq!(
        std::fs::read_to_string(w.join("tests/ops.rs")).unwrap(),
        "#[test]\nfn a() {}"
    );
    // A `[[test]]` target run by libtest holds the canaries under its own name; one
    // with `harness = false` holds none and is reported unguarded.
    std::fs::write(
        w.join("Cargo.toml"),
        "[package]\nname = \"x\"\n[[test]]\nname = \"arith\"\npath = \"tests/ops.rs\"\n",
    )
    .unwrap();
    let p = r.place_cargo(w, &oracle, &judged, Path::new("/e")).unwrap();
    assert_eq!(p.targets.len(), 1);
    assert_eq!(p.targets[0].name, "arith");
    drop(p);
    std::fs::write(
        w.join("Cargo.toml"),
        "[package]\nname = \"x\"\n[[test]]\nname = \"ops\"\nharness = false\n",
    )
    .unwrap();
    let p = r.place_cargo(w, &oracle, &judged, Path::new("/e")).unwrap();
    assert!(p.targets.is_empty());
    let files: Vec<&str> = p.unguarded.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, ["tests/ops.rs", "tests/safe.rs"]);
    drop(p);
    // Edition 2024 spells the attribute unsafe.
    std::fs::write(
        w.join("Cargo.toml"),
        "[package]\nname = \"x\"\nedition = \"2024\"\n",
    )
    .unwrap();
    let p = r.place_cargo(w, &oracle, &judged, Path::new("/e")).unwrap();
    assert!(
        std::fs::read_to_string(w.join("tests/ops.rs"))
            .unwrap()
            .contains("#[unsafe(link_section")
    );
    drop(p);
}

#[test]
fn binary_roots_are_top_level_test_files() {
    assert_eq!(binary_root("tests/ops.rs"), Some(("", "ops")));
    assert_eq!(binary_root("tests/it/main.rs"), Some(("", "it")));
    assert_eq!(binary_root("crates/a/tests/x.rs"), Some(("crates/a", "x")));
    assert_eq!(binary_root("tests/common/mod.rs"), None);
    assert_eq!(binary_root("tests/it/fixture.rs"), None);
    assert_eq!(binary_root("src/lib.rs"), None);
    assert_eq!(binary_root("mytests/x.rs"), None);
}

/// Regression (issue 17: canaries cost +122 % of rust-ledger's verify time): a run
/// over a build cache places the module the cache compiled in every test binary root
/// and keeps each file's time, so cargo rebuilds nothing for it; only oracle files
/// are judged, and the restored files get their times back too.
#[test]
fn placement_keeps_file_times_and_judges_only_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    for d in [
        "tests/it",
        "tests/common",
        "crates/b/tests",
        "target/tests",
        ".hidden/tests",
    ] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::write(w.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    std::fs::write(w.join("crates/b/Cargo.toml"), "[package]\nname = \"b\"\n").unwrap();
    for f in [
        "tests/ops.rs",
        "tests/more.rs",
        "tests/it/main.rs",
        "tests/common/mod.rs",
        "crates/b/tests/x.rs",
        "target/tests/old.rs",
        ".hidden/tests/h.rs",
    ] {
        std::fs::write(w.join(f), "#[test]\nfn a() {}\n").unwrap();
    }
    let roots = cargo_test_roots(w);
    assert_eq!(
        roots,
        [
            "crates/b/tests/x.rs",
            "tests/it/main.rs",
            "tests/more.rs",
            "tests/ops.rs"
        ]
    );
    let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for f in &roots {
        let file = std::fs::File::options()
            .write(true)
            .open(w.join(f))
            .unwrap();
        file.set_modified(old).unwrap();
    }
    let oracle: BTreeSet<String> = ["tests/ops.rs".to_string()].into();
    let r = reporter();
    let p = r
        .place_cargo(w, &roots, &oracle, Path::new(CARGO_EVENTS_GUEST))
        .unwrap();
    assert_eq!(p.targets, target(false));
    let mtime = |f: &str| w.join(f).metadata().unwrap().modified().unwrap();
    for f in &roots {
        let text = std::fs::read_to_string(w.join(f)).unwrap();
        assert!(text.contains(&format!("mod {}", r.cargo_module())), "{f}");
        assert!(text.contains(CARGO_EVENTS_GUEST), "{f}");
        assert_eq!(mtime(f), old, "{f}");
    }
    drop(p);
    for f in &roots {
        assert_eq!(
            std::fs::read_to_string(w.join(f)).unwrap(),
            "#[test]\nfn a() {}\n"
        );
        assert_eq!(mtime(f), old, "{f}");
    }
}

/// A must-fail canary fails by `resume_unwind`, not by a panic: libtest captures a
/// backtrace for a panicking test when `RUST_BACKTRACE` is unset (0.1 s a binary,
/// measured), and every run has a must-fail canary in each oracle binary.
#[test]
fn must_fail_canaries_unwind_without_a_panic() {
    let r = reporter();
    let source = r.cargo_source("tests/ops.rs", Path::new("/e"), false);
    for c in r.cargo_canaries() {
        let sig = format!("fn {}()", c.name);
        let at = source.find(&sig).unwrap();
        let rest = &source[at..];
        let body = &rest[..rest.find("\n    }\n").unwrap()];
        assert!(body.starts_with(&format!("{sig} {{")), "{body}");
        if c.must_pass {
            assert!(body.contains("panic!("), "{body}");
        } else {
            assert!(!body.contains("panic!"), "{body}");
            assert!(body.contains("std::panic::resume_unwind("), "{body}");
        }
    }
}

/// The module is compiled again into every oracle binary whenever its crate changes,
/// so it holds none of the generic std code that made it cost 11 % of rust-ledger's
/// rebuilds (strings, files, formatting, a capturing closure, `Result` tests), and its
/// lines are constants: `put(b"...", ...)`.
#[test]
fn the_cargo_module_holds_no_generic_std_code() {
    let r = reporter();
    let source = r.cargo_source("tests/ops.rs", Path::new("/e\"x"), true);
    for word in [
        "String",
        "format!",
        "OpenOptions",
        "File",
        "move |",
        "Result<",
        "assert",
        "vec!",
        "to_string",
    ] {
        assert!(!source.contains(word), "{word} in\n{source}");
    }
    assert!(
        source.contains(r#"const EVENTS: &[u8] = b"/e\"x\0";"#),
        "{source}"
    );
    assert!(
        source.contains(r#"put(b"start\ttests/ops.rs", b"");"#),
        "{source}"
    );
    assert!(
        source.contains(r#"put(b"panic\ttests/ops.rs\t", name);"#),
        "{source}"
    );
    assert!(source.contains("unsafe extern \"C\""), "{source}");
}

/// The module compiles and reports in a real `cargo test` on every edition (2015 and
/// 2021 spell `extern` and `link_section` plainly, 2024 as unsafe), in a file that
/// denies warnings: the start, canary and panic events are written, the panic hook
/// still chains to libtest's (the failing test's message is in the log), and the run
/// is judged clean.
#[test]
fn the_cargo_module_compiles_and_reports_on_every_edition() {
    let r = reporter();
    for edition in ["2015", "2021", "2024"] {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        std::fs::create_dir_all(w.join("src")).unwrap();
        std::fs::create_dir_all(w.join("tests")).unwrap();
        std::fs::write(
            w.join("Cargo.toml"),
            format!("[package]\nname = \"x\"\nversion = \"0.1.0\"\nedition = \"{edition}\"\n"),
        )
        .unwrap();
        std::fs::write(w.join("src/lib.rs"), "pub fn one() -> i32 {\n    1\n}\n").unwrap();
        std::fs::write(
            w.join("tests/ops.rs"),
            "#![deny(warnings)]\nextern crate x;\n\n#[test]\nfn holds() {\n    assert_eq!(x::one(), 1);\n}\n\n\
             #[test]\nfn breaks() {\n    assert_eq!(x::one(), 2);\n}\n",
        )
        .unwrap();
        let events = w.join("events.tsv");
        std::fs::write(&events, "").unwrap();
        let roots = vec!["tests/ops.rs".to_string()];
        let judged: BTreeSet<String> = roots.iter().cloned().collect();
        let p = r.place_cargo(w, &roots, &judged, &events).unwrap();
        let out = std::process::Command::new("cargo")
            .args(["test", "--offline", "--no-fail-fast"])
            .current_dir(w)
            .env("CARGO_TARGET_DIR", w.join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            log.contains("test result: FAILED"),
            "edition {edition}:\n{log}"
        );
        let text = std::fs::read_to_string(&events).unwrap();
        assert!(text.contains("start\ttests/ops.rs\n"), "{edition}: {text}");
        assert!(
            text.contains("panic\ttests/ops.rs\tbreaks\n"),
            "{edition}: {text}"
        );
        for c in r.cargo_canaries() {
            let line = format!("canary\ttests/ops.rs\t{}\t{}\n", c.name, c.must());
            assert!(text.contains(&line), "{edition}: {line} not in {text}");
        }
        assert!(
            log.contains("assertion `left == right` failed"),
            "{edition}:\n{log}"
        );
        let parsed = parse_log(&log).map(|t| t.results).unwrap_or_default();
        let reading = r.read_cargo(&p.targets, &text, &log, &parsed).unwrap();
        assert!(
            reading.tampered.is_empty(),
            "{edition}: {:?}",
            reading.tampered
        );
        assert!(
            reading.incomplete.is_none(),
            "{edition}: {:?}",
            reading.incomplete
        );
    }
}
