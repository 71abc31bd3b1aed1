//! `ssr demos` then `ssr sft` as a user runs them: a verified procedural bug of the
//! bundled example becomes a solver demonstration played through the real game, a
//! held-out id is refused, and two supervised steps on the built file lower the loss
//! (of the tiny model, which shares the embedded model's tokenizer).

use crate::{embedded_model_or_skip, json, s, ssr};
use ssr_trainer::testing::tiny_model;
use std::path::Path;

/// Runs `ssr` with `HOME` (the tool host's component cache lives under it).
fn ssr_output(args: &[&str]) -> std::process::Output {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    ssr()
        .env("HOME", home)
        .args(args)
        .output()
        .expect("ssr runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ssr_demos_builds_a_solver_demo_that_ssr_sft_learns_from() {
    let Some(model) = embedded_model_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repos = tmp.path().join("repos");
    let o = ssr_output(&["examples", "create", "--out", s(&repos), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let repo = repos.join("python-textkit");
    let bugs = tmp.path().join("bugs");
    let o = ssr_output(&[
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
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = json(&o)["bugs"][0]["id"].as_str().unwrap().to_string();

    let demos = tmp.path().join("demos.jsonl");
    let demos_args = |exclude: &Path| {
        vec![
            "demos".to_string(),
            "--bugs".into(),
            s(&bugs).into(),
            "--repo".into(),
            s(&repo).into(),
            "--role".into(),
            "solver".into(),
            "--model".into(),
            s(&model).into(),
            "--max-new-tokens".into(),
            "2048".into(),
            "--exclude".into(),
            s(exclude).into(),
            "--out".into(),
            s(&demos).into(),
            "--json".into(),
        ]
    };
    // Held out: refused with the reason.
    let held_out = tmp.path().join("held_out.txt");
    std::fs::write(&held_out, format!("# held out\n{id}\n")).unwrap();
    let args = demos_args(&held_out);
    let o = ssr_output(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("excluded"), "{}", text(&o.stderr));

    std::fs::write(&held_out, "some-other-bug\n").unwrap();
    let args = demos_args(&held_out);
    let o = ssr_output(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let summary = json(&o);
    assert_eq!(summary["solver_demos"], 1, "{summary}");
    assert_eq!(summary["excluded"], 0);
    let line = std::fs::read_to_string(&demos).unwrap();
    let demo: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(demo["metadata"]["bug_id"], id.as_str());

    // The supervised steps run on the tiny model (SmolLM2's vocabulary and tokenizer,
    // 2 layers: the demo's ids are its ids too), so CI pays seconds, not the ten
    // minutes two steps of the 135M model take on two cores; the step is the same code.
    let tiny = tmp.path().join("tiny.gguf");
    tiny_model::write(&model, &tiny, tiny_model::SEED).unwrap();
    let out = tmp.path().join("sft");
    let o = ssr_output(&[
        "sft",
        "--demos",
        s(&demos),
        "--model",
        s(&tiny),
        "--out",
        s(&out),
        "--steps",
        "2",
        "--lr",
        "1e-3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let losses = crate::step_losses(&o);
    assert_eq!(losses.len(), 2);
    assert!(losses[1] < losses[0], "{losses:?}");
}
