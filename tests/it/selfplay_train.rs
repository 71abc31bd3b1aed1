//! `ssr selfplay --train` end to end with the embedded model and tiny budgets: round 0's
//! trajectories go through a training step, the new weights are written as a
//! checkpoint in the run directory, and round 1 samples from exactly those weights
//! (the weights' fingerprint recorded per round).

use serde_json::Value;
use std::process::Command;

#[test]
fn selfplay_train_step_changes_the_weights_the_next_round_uses() {
    if crate::embedded_model_or_skip().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(
        &config,
        "seed = 3\nrounds = 2\ninjector_rollouts = 1\nprocedural_per_round = 0\nmax_higher_order_per_round = 0\nmax_concurrent_episodes = 1\ntemperature = 0.7\nlearning_rate = 0.0001\n\
         [injector_budgets]\nmax_turns = 1\nmax_new_tokens = 16\ncontext_tokens = 8192\noutput_bytes = 1024\ncall_timeout_ms = 20000\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_ssr"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "selfplay", "--policy", "embedded", "--train", "--json", "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 2);
    let (r0, r1) = (&metrics[0], &metrics[1]);
    let before = r0["weights_used"].as_str().expect("round 0 fingerprint");
    let after = r0["train"]["weights_after"]
        .as_str()
        .expect("round 0 trained");
    assert_ne!(before, after, "the step changed the weights");
    assert_eq!(
        r1["weights_used"].as_str(),
        Some(after),
        "round 1 sampled from the trained weights"
    );
    assert!(r0["train"]["trained_tokens"].as_u64().unwrap() > 0, "{r0}");
    assert!(r0["train_loss"].as_f64().unwrap().is_finite());
    assert!(out.join("checkpoints/round-0000").is_dir());
    assert!(out.join("checkpoints/round-0001").is_dir());
}
