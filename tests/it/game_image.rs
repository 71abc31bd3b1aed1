//! The game on a SWE-bench-layout image through the real engine: `inject --image`
//! takes the repository out of `/testbed`, applies the gold patch as the clean original
//! (`--base-patch`), and `verify`, `evaluate` and `export swebench` follow, once with
//! bubblewrap over the unpacked image (`--image-exec rootfs`) and once with `docker run`
//! per command (`--image-exec docker`). The image is built by `scripts/test_images.sh`;
//! without an engine the test prints why it skips, with one a missing image fails.

use crate::ssr;
use std::path::Path;

const IMAGE: &str = "ssr-test-swebench:latest";

fn engine_or_skip() -> bool {
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn gold_patch() -> String {
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
