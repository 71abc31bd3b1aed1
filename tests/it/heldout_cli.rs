//! `ssr split` and `ssr heldout` end to end on real bugs of the Python example: the
//! split's id file names bugs of the directory, a scripted solver that applies the
//! true fix solves every bug (pass@K 1.0), one that submits nothing solves none (0.0),
//! each with the Wilson interval over the bugs; bad input is a clear error.

use crate::{run, s};
use serde_json::{Value, json};
use std::path::Path;

fn bash(cmd: &str) -> Value {
    json!(format!("<tool: bash>\n{cmd}\n</tool>"))
}

/// A solver script that tries every bug's true fix (the reversed bug diff) and keeps
/// the one that applies: in a bug's workspace only its own fix does.
fn true_fix_script(bugs: &Path, ids: &[String]) -> Value {
    let mut cmd = String::new();
    for id in ids {
        let diff = std::fs::read_to_string(bugs.join(id).join("bug_inject.diff")).unwrap();
        let fix = ssr_game::patch_ops::reverse(&diff).unwrap();
        cmd.push_str(&format!("git apply <<'SSR_FIX' || true\n{fix}SSR_FIX\n"));
    }
    json!({
        "solver": [[bash(&cmd), "<tool: submit>\n</tool>"]],
        // An artifact the submit tool takes and the verifier rejects (no bug).
        "injector": [[
            bash("mkdir -p ssr_artifact && cd ssr_artifact && echo 'exit 1' > test_script.sh && echo tests/test_slug.py > test_files.txt && echo 'print(1)' > test_parser.py && echo junk > bug_inject.diff && echo junk > test_weaken.diff"),
            "<tool: submit>\n</tool>",
        ]],
    })
}

fn close(v: &Value, x: f64) -> bool {
    v.as_f64().is_some_and(|y| (x - y).abs() < 1e-3)
}

#[test]
fn heldout_rates_with_a_scripted_policy_on_real_bugs() {
    if !Path::new("/usr/bin/bwrap").exists() {
        eprintln!("skipped: bubblewrap is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    let (code, _, err) = run(&["examples", "create", "--out", s(&repos)]);
    assert_eq!(code, 0, "{err}");
    let repo = repos.join("python-textkit");
    let bugs = tmp.path().join("bugs");
    let (code, out, err) = run(&[
        "inject",
        "--repo",
        s(&repo),
        "--strategy",
        "removal",
        "--count",
        "3",
        "--seed",
        "5",
        "--out",
        s(&bugs),
        "--json",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let inj: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<String> = inj["bugs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{inj}");

    // The split and its id file: the held-out ids are bugs of the directory.
    let split = tmp.path().join("split.json");
    let id_file = tmp.path().join("heldout.txt");
    let (code, out, err) = run(&[
        "split",
        "--repo",
        s(&repo),
        "--out",
        s(&split),
        "--fraction",
        "0.3",
        "--bugs",
        s(&bugs),
        "--ids",
        s(&id_file),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let sj: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sj["bugs"]["total"], 3, "{sj}");
    let listed: Vec<String> = std::fs::read_to_string(&id_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed.len(),
        sj["bugs"]["held_out"].as_array().unwrap().len()
    );
    assert!(listed.iter().all(|id| ids.contains(id)), "{listed:?}");

    let heldout = |script: &Value, extra: &[&str]| -> Value {
        let path = tmp.path().join("script.json");
        std::fs::write(&path, script.to_string()).unwrap();
        let mut args = vec![
            "heldout",
            "--policy",
            "scripted",
            "--script",
            s(&path),
            "--bugs",
            s(&bugs),
            "--attempts",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{out}\n{err}");
        serde_json::from_str(&out).unwrap()
    };
    // The true fix solves all three: pass@2 = 1.0, Wilson [0.4385, 1] over 3 bugs.
    let r = heldout(&true_fix_script(&bugs, &ids), &["--injector-episodes", "1"]);
    let rep = &r["report"];
    assert_eq!(rep["bugs"], 3, "{r}");
    assert_eq!(rep["bugs_scored"], 3, "{r}");
    assert!(close(&rep["solve_rate"], 1.0), "{r}");
    assert!(close(&rep["solve_rate_ci95"][0], 0.4385), "{r}");
    assert!(close(&rep["solve_rate_ci95"][1], 1.0), "{r}");
    assert!(close(&rep["malformed_rate"], 0.0), "{r}");
    assert!(close(&rep["mean_turns"], 2.0), "{r}");
    // The injector's artifact breaks nothing: judged, not valid.
    assert_eq!(rep["injector_judged"], 1, "{r}");
    assert!(close(&rep["valid_artifact_rate"], 0.0), "{r}");

    // Submitting nothing solves nothing: 0.0, Wilson [0, 0.5615].
    let nothing = json!({"solver": [["<tool: submit>\n</tool>"]]});
    let r = heldout(&nothing, &[]);
    let rep = &r["report"];
    assert!(close(&rep["solve_rate"], 0.0), "{r}");
    assert!(close(&rep["solve_rate_ci95"][0], 0.0), "{r}");
    assert!(close(&rep["solve_rate_ci95"][1], 0.5615), "{r}");
    assert_eq!(rep["valid_artifact_rate"], Value::Null, "{r}");

    // With the split: only its held-out bugs are played, or a clear error when none.
    let path = tmp.path().join("script.json");
    std::fs::write(&path, nothing.to_string()).unwrap();
    let (code, out, err) = run(&[
        "heldout",
        "--policy",
        "scripted",
        "--script",
        s(&path),
        "--bugs",
        s(&bugs),
        "--split",
        s(&split),
        "--json",
    ]);
    if listed.is_empty() {
        assert_eq!(code, 2, "{out}");
        assert!(err.contains("held out by the split"), "{err}");
    } else {
        assert_eq!(code, 0, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["report"]["bugs"], listed.len(), "{r}");
        assert_eq!(r["not_held_out"], 3 - listed.len(), "{r}");
    }
}

#[test]
fn heldout_refuses_bad_input_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("s.json");
    std::fs::write(&script, "{}").unwrap();
    let (code, _, err) = run(&[
        "heldout",
        "--policy",
        "scripted",
        "--script",
        s(&script),
        "--bugs",
        s(tmp.path()),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no bug directory"), "{err}");
    let missing = tmp.path().join("nope");
    let (code, _, err) = run(&[
        "heldout",
        "--policy",
        "scripted",
        "--script",
        s(&script),
        "--bugs",
        s(&missing),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no bug directory"), "{err}");
    let (code, _, err) = run(&["heldout", "--policy", "gpt", "--bugs", s(tmp.path())]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'gpt'"), "{err}");
    let (code, _, err) = run(&["split", "--repo", s(tmp.path()), "--out", s(&script)]);
    assert_eq!(code, 2);
    assert!(err.contains("no supported test framework"), "{err}");
    for cmd in ["heldout", "split"] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("--json"), "{out}");
    }
}
