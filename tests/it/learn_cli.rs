//! `scripts/learn.sh --quick` (what `just learn --quick` runs) end to end on the tiny
//! model: every step of the experiment runs (examples, both injectors, the split,
//! demonstrations, the warm start, the three held-out evaluations, a self-play round
//! with training and its held-out evaluation, the report), and the summary has
//! every column of the before/after table. Proves the pipeline, not learning.

use crate::embedded_model_or_skip;
use ssr_trainer::testing::tiny_model;
use std::path::Path;
use std::process::Command;

/// The steps of a `--quick` run (it leaves out the training-bug evaluations,
/// `train-base`, `train-warm`, `train-rl`: the same `ssr heldout` on other bugs).
const STEPS: [&str; 11] = [
    "examples",
    "inject-removal",
    "inject-history",
    "split",
    "demos",
    "sft",
    "eval-base",
    "eval-warm",
    "selfplay",
    "eval-rl",
    "report",
];

fn learn(args: &[&str]) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("scripts/learn.sh"))
        .args(args)
        .env("SSR_BIN", env!("CARGO_BIN_EXE_ssr"))
        .output()
        .expect("bash runs")
}

#[test]
fn learn_quick_runs_every_step_and_prints_the_before_after_table() {
    let Some(source) = embedded_model_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let model = tmp.path().join("tiny.gguf");
    tiny_model::write(&source, &model, tiny_model::SEED).unwrap();
    let run = tmp.path().join("run");
    let o = learn(&[
        "--quick",
        "--model",
        model.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "learn failed:\n{stderr}");
    // The progress lines carry each step's start time: the test's timing breakdown.
    eprintln!("{stderr}\n{}", String::from_utf8_lossy(&o.stdout));
    for (i, name) in STEPS.iter().enumerate() {
        let line = format!("step {}/{}: {name}", i + 1, STEPS.len());
        assert!(stderr.contains(&line), "no '{line}' in:\n{stderr}");
        assert!(run.join("logs").join(format!("{name}.json")).is_file());
    }
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json summary");
    let columns = s["columns"].as_array().unwrap();
    for table in ["held_out"] {
        let rows = s["tables"][table].as_array().unwrap();
        let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
        assert_eq!(
            policies,
            ["base model", "warm start", "after RL"],
            "{table}"
        );
        for r in rows {
            for c in columns {
                assert!(r.get(c.as_str().unwrap()).is_some(), "{table}: no {c}");
            }
        }
    }
    assert!(s["held_out_bugs"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["training_bugs"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["excluded_by_split"].is_u64(), "{s}");
    let rounds = s["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 1, "{s}");
    assert!(rounds[0]["fingerprint_changed"].is_boolean(), "{s}");
    assert!(rounds[0].get("nonzero_fraction").is_some(), "{s}");
    assert!(run.join("selfplay/report.html").is_file());
    // The warm start is a checkpoint, and the retention kept one round checkpoint.
    assert!(run.join("warm/model.safetensors").is_file());
    let kept = std::fs::read_dir(run.join("selfplay/checkpoints"))
        .unwrap()
        .count();
    assert_eq!(kept, 1);
}

#[test]
fn learn_names_the_failed_step_and_stops() {
    if embedded_model_or_skip().is_none() {
        return;
    }
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // A repository the examples do not have: the examples step succeeds, then the
    // pipeline stops before injecting, naming the step.
    let config = tmp.path().join("bad.toml");
    let quick = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/learn-quick.toml"),
    )
    .unwrap();
    std::fs::write(&config, quick.replace("python-textkit", "no-such-repo")).unwrap();
    let run = tmp.path().join("run");
    let o = learn(&[
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("step 'examples' made no repository 'no-such-repo'"),
        "{stderr}"
    );
    assert!(!run.join("logs/inject-removal.json").exists());
    let o = learn(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--quick"));
}
