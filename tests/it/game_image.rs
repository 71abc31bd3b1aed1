//! The game on a SWE-bench-layout image through the real engine: `inject --image`
//! takes the repository out of `/testbed`, applies the gold patch as the clean original
//! (`--base-patch`), and `verify`, `evaluate` and `export swebench` follow, once with
//! bubblewrap over the unpacked image (`--image-exec rootfs`) and once with `docker run`
//! per command (`--image-exec docker`); `ssr doctor --image` refuses the image as
//! shipped (its own bug), naming the failing test and `--base-patch`, and calls it
//! playable with the gold patch. The image is built by `scripts/test_images.sh`;
//! without an engine the test prints why it skips, with one a missing image fails.

use crate::{s, ssr};
use std::path::Path;

pub(crate) const IMAGE: &str = "ssr-test-swebench:latest";

pub(crate) fn engine_or_skip() -> bool {
    match ssr_sandbox::first_engine() {
        Ok((_, program)) => {
            let ok = std::process::Command::new(program)
                .args(["image", "inspect", IMAGE])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                ok,
                "an engine answers but {IMAGE} is missing: run scripts/test_images.sh"
            );
            true
        }
        Err(e) => {
            eprintln!("skipped: no container engine answers here: {e}");
            false
        }
    }
}

fn run(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let out = ssr()
        .env("HOME", home)
        .env("SSR_IMAGE_CACHE", cache)
        .args(args)
        .output()
        .expect("ssr runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn gold_patch() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/images/swebench-demo/gold.patch"
    )
    .to_string()
}

fn play_on_the_image(exec: &str) {
    if !engine_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bugs = tmp.path().join("bugs");
    let gold = gold_patch();
    let image_args = [
        "--image",
        IMAGE,
        "--image-exec",
        exec,
        "--base-patch",
        gold.as_str(),
    ];
    let mut args = vec![
        "inject",
        "--strategy",
        "removal",
        "--count",
        "1",
        "--out",
        s(&bugs),
        "--json",
        "--hard-timeout",
        "60",
    ];
    args.extend(image_args);
    let (code, out, err) = run(&cache, &args);
    assert_eq!(code, 0, "{exec}: {out}\n{err}");
    let inj: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inj["valid"], 1, "{exec}: {out}");
    // With the gold patch applied every test passes on the original, the one that
    // needs it included (and the one that imports the image's own package).
    assert_eq!(inj["original_tests"], 10, "{exec}: {out}");
    let id = inj["bugs"][0]["id"].as_str().unwrap().to_string();
    let bug = bugs.join(&id);
    let image: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bug.join("image.json")).unwrap()).unwrap();
    assert_eq!(image["image"], IMAGE);
    assert_eq!(image["workdir"], "/testbed");

    let mut args = vec!["verify", s(&bug), "--json"];
    args.extend(image_args);
    let (code, out, err) = run(&cache, &args);
    assert_eq!(code, 0, "{exec}: {out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true);

    let bug_diff = std::fs::read_to_string(bug.join("bug_inject.diff")).unwrap();
    let fix = tmp.path().join("fix.diff");
    std::fs::write(&fix, ssr_game::patch_ops::reverse(&bug_diff).unwrap()).unwrap();
    let mut args = vec!["evaluate", s(&bug), "--patch", s(&fix), "--json"];
    args.extend(image_args);
    let (code, out, err) = run(&cache, &args);
    assert_eq!(code, 0, "{exec}: {out}\n{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["reward"], 1.0, "{exec}: {out}");
    red_team_on_the_image(exec, &cache, &bug, &bug_diff, &image_args);

    let (code, out, err) = run(&cache, &["export", "swebench", s(&bugs)]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["image_name"], IMAGE);
    assert_eq!(line["workdir"], "/testbed");
    assert!(line["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        line["base_patch"].as_str().unwrap(),
        std::fs::read_to_string(&gold).unwrap()
    );
    assert_ne!(line["image_commit"], line["base_commit"]);
}

/// The red-team suite's pytest attacks (`ssr-game`'s `red_team_rewards/`), by path:
/// one definition for both suites.
#[path = "../../runtime/game/tests/it/red_team_rewards/pytest_attacks.rs"]
mod pytest_attacks;

/// A diff appending `attack` to the package's `__init__.py` (imported by every test).
fn init_attack(attack: &str) -> String {
    let added: String = attack.lines().map(|l| format!("+{l}\n")).collect();
    format!(
        "diff --git a/src/tally/__init__.py b/src/tally/__init__.py\n--- a/src/tally/__init__.py\n+++ b/src/tally/__init__.py\n@@ -1 +1,{} @@\n \"\"\"Counting and summarising words and numbers.\"\"\"\n{added}",
        attack.lines().count() + 1
    )
}

/// The defences of the red-team suite, unchanged on the image: each pytest attack of
/// the suite, as a solver patch that keeps the bug, scores −1 as tampered in a run
/// that recorded a reporter secret (the blocked rewrite of the oracle files leaves
/// the bug failing); the same code in a bug is rejected as tampered (the blocked
/// rewrite with scan findings rejecting).
fn red_team_on_the_image(exec: &str, cache: &Path, bug: &Path, bug_diff: &str, image: &[&str]) {
    assert!(!bug_diff.contains("__init__.py"), "{bug_diff}");
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["verify", s(bug), "--json"];
    args.extend(image);
    let (_, out, err) = run(cache, &args);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{exec}: {e}: {out}\n{err}"));
    let ids = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let failing = ids("fail_to_pass");
    let p: Vec<String> = failing.iter().cloned().chain(ids("pass_to_pass")).collect();
    for (what, attack) in pytest_attacks::pytest_attacks(&p, &failing) {
        let blocked = what == pytest_attacks::BLOCKED_REWRITE;
        let patch = tmp.path().join("attack.diff");
        std::fs::write(&patch, init_attack(&attack)).unwrap();
        let mut args = vec!["evaluate", s(bug), "--patch", s(&patch), "--json"];
        args.extend(image);
        // `ssr evaluate` exits 1 for an unsolved attempt; the JSON says why.
        let (_, out, err) = run(cache, &args);
        let e: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{exec} {what}: {e}: {out}\n{err}"));
        assert_eq!(e["reward"], -1.0, "{exec} {what}: {out}");
        let kind = if blocked { "tests_failing" } else { "tampered" };
        assert_eq!(e["outcome"]["kind"], kind, "{exec} {what}: {out}");
        assert!(
            !e["notes"].as_array().unwrap().is_empty(),
            "{exec} {what}: {out}"
        );
        assert!(
            e["reporter_secret"].as_str().is_some_and(|x| x.len() == 32),
            "{exec} {what}: the run recorded no reporter secret: {out}"
        );

        let bad = tmp.path().join(format!("bad-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&bad).unwrap();
        for f in std::fs::read_dir(bug).unwrap().flatten() {
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), bad.join(f.file_name())).unwrap();
            }
        }
        std::fs::write(
            bad.join("bug_inject.diff"),
            format!("{bug_diff}{}", init_attack(&attack)),
        )
        .unwrap();
        let mut args = vec!["verify", s(&bad), "--json"];
        args.extend(image);
        if blocked {
            args.push("--reject-tampering");
        }
        let (_, out, err) = run(cache, &args);
        let r: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{exec} {what}: {e}: {out}\n{err}"));
        assert_eq!(r["valid"], false, "{exec} {what}: {out}");
        assert_eq!(r["code"], "tampered", "{exec} {what}: {out}");
    }
}

#[test]
fn inject_verify_evaluate_export_on_a_swebench_image_through_the_unpacked_root() {
    play_on_the_image("rootfs");
}

#[test]
fn inject_verify_evaluate_export_on_a_swebench_image_through_docker_run() {
    play_on_the_image("docker");
}

#[test]
fn a_base_patch_that_does_not_apply_is_a_clear_error() {
    if !engine_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.patch");
    std::fs::write(
        &bad,
        "diff --git a/src/tally/stats.py b/src/tally/stats.py\n--- a/src/tally/stats.py\n+++ b/src/tally/stats.py\n@@ -1,1 +1,1 @@\n-no such line\n+other\n",
    )
    .unwrap();
    let (code, out, err) = run(
        &tmp.path().join("cache"),
        &[
            "inject",
            "--strategy",
            "removal",
            "--out",
            s(&tmp.path().join("bugs")),
            "--image",
            IMAGE,
            "--base-patch",
            s(&bad),
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("base patch does not apply"), "{err}");
}

#[test]
fn doctor_on_a_swebench_image_refuses_it_without_the_gold_patch_and_plays_with_it() {
    if !engine_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let doctor = |extra: &[&str]| {
        let mut args = vec!["doctor", "--image", IMAGE, "--json"];
        args.extend(extra);
        let (code, out, err) = run(&cache, &args);
        let r: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (code, r)
    };
    let (code, r) = doctor(&[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["playable"], false);
    assert_eq!(r["origin"]["kind"], "image");
    assert!(r["runs_in"].as_str().unwrap().contains("/testbed"), "{r}");
    // The image's own bug, named with its fix (the history strategy also has no
    // candidates: the image's tree is one commit until a base patch adds another).
    let failing = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cause"].as_str().unwrap().contains("test_median_even"))
        .unwrap_or_else(|| panic!("no problem names the failing test: {r}"));
    assert!(
        failing["fix"].as_str().unwrap().contains("--base-patch"),
        "{r}"
    );
    assert_eq!(r["failing_on_original"].as_array().unwrap().len(), 1, "{r}");

    let gold = gold_patch();
    let (code, r) = doctor(&["--base-patch", &gold]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["playable"], true, "{r}");
    assert_eq!(r["tests_passing"], 10, "{r}");
    // Both strategies made their sample bug in the image (history: the base patch's
    // commit reverted is the benchmark's own bug).
    for s in r["strategies"].as_array().unwrap() {
        assert_eq!(s["sample"]["valid"], true, "{r}");
    }
}
