//! A short self-play run with the embedded model (tiny budgets), as CI runs it: the
//! model's injection is most likely invalid, the procedural bug gives the solver an
//! episode, and the run finishes with metrics, trajectories and a report.

use serde_json::Value;
use std::process::Command;

#[test]
fn selfplay_embedded_tiny_run_finishes() {
    if crate::embedded_model_or_skip().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(
        &config,
        "seed = 1\nrounds = 1\ninjector_rollouts = 1\nprocedural_per_round = 1\nattempts_per_bug = 1\nmax_higher_order_per_round = 0\nmax_concurrent_episodes = 2\ntemperature = 0.7\n\
         [injector_budgets]\nmax_turns = 2\nmax_new_tokens = 24\ncontext_tokens = 8192\noutput_bytes = 1024\ncall_timeout_ms = 20000\n\
         [solver_budgets]\nmax_turns = 2\nmax_new_tokens = 24\ncontext_tokens = 8192\noutput_bytes = 1024\ncall_timeout_ms = 20000\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_ssr"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["selfplay", "--policy", "embedded", "--json", "--config"])
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
    let v: Value = serde_json::from_slice(o.stdout.trim_ascii()).unwrap();
    assert_eq!(v["outcome"], "finished");
    assert_eq!(v["summary"]["rounds"], 1);
    assert_eq!(v["summary"]["injector_episodes"], 1);
    assert!(out.join("report.html").is_file());
    let trajs = std::fs::read_to_string(out.join("trajectories.jsonl")).unwrap();
    // The injector episode always yields a trajectory with exact ids and real logprobs.
    let inj: Value = trajs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|t| t["role"] == "injector")
        .unwrap();
    assert_eq!(inj["metadata"]["exact_tokens"], true);
    assert_eq!(inj["metadata"]["logprobs_known"], true);
}
