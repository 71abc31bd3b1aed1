//! The game's commands end to end through the `ssr` binary: build the example
//! repositories, inject one bug, verify it, evaluate the true fix and an empty patch,
//! export it as SWE-bench JSON, and reject a broken artifact with exit status 1.

use crate::{run, s};

#[test]
fn inject_verify_evaluate_export_on_the_python_example() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    let (code, out, err) = run(&["examples", "create", "--out", s(&repos), "--json"]);
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created.as_array().unwrap().len(), 2);
    let repo = repos.join("python-textkit");

    let bugs = tmp.path().join("bugs");
    let (code, out, err) = run(&[
        "inject",
        "--repo",
        s(&repo),
        "--strategy",
        "history",
        "--count",
        "1",
        "--seed",
        "3",
        "--out",
        s(&bugs),
        "--json",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let inj: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inj["valid"], 1);
    assert_eq!(inj["seed"], 3);
    let id = inj["bugs"][0]["id"].as_str().unwrap().to_string();
    let bug = bugs.join(&id);

    let (code, out, err) = run(&["verify", s(&bug), "--repo", s(&repo), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 7);

    // The true fix: the reversed bug diff, written with git apply -R semantics.
    let bug_diff = std::fs::read_to_string(bug.join("bug_inject.diff")).unwrap();
    let fix = ssr_game::patch_ops::reverse(&bug_diff).unwrap();
    let fix_path = tmp.path().join("fix.diff");
    std::fs::write(&fix_path, fix).unwrap();
    let (code, out, err) = run(&[
        "evaluate",
        s(&bug),
        "--repo",
        s(&repo),
        "--patch",
        s(&fix_path),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["reward"], 1.0);

    let empty = tmp.path().join("empty.diff");
    std::fs::write(&empty, "").unwrap();
    let (code, out, _) = run(&[
        "evaluate",
        s(&bug),
        "--repo",
        s(&repo),
        "--patch",
        s(&empty),
        "--json",
    ]);
    assert_eq!(code, 1);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["reward"], -1.0);
    assert_eq!(e["outcome"]["kind"], "empty_patch");

    let (code, out, err) = run(&["export", "swebench", s(&bugs)]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    for k in [
        "instance_id",
        "repo",
        "base_commit",
        "patch",
        "test_patch",
        "FAIL_TO_PASS",
        "PASS_TO_PASS",
    ] {
        assert!(line.get(k).is_some(), "missing {k}");
    }
    let f2p: Vec<String> = serde_json::from_str(line["FAIL_TO_PASS"].as_str().unwrap()).unwrap();
    assert!(!f2p.is_empty());

    // A broken artifact: the weakening touches an unlisted file.
    std::fs::write(bug.join("test_files.txt"), "tests/test_nope.py\n").unwrap();
    let (code, out, _) = run(&["verify", s(&bug), "--repo", s(&repo)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected by check 1"), "{out}");
}

#[test]
fn game_commands_have_help() {
    for cmd in [
        &["inject"][..],
        &["verify"],
        &["evaluate"],
        &["export", "swebench"],
        &["examples", "create"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, _) = run(&args);
        assert_eq!(code, 0);
        assert!(out.contains("Usage"), "{out}");
    }
}
