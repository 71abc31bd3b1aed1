//! `ssr selfplay --train --device cuda` with the tiny model as the embedded policy: one
//! round on the bundled example with tiny budgets, whose training step runs on the CUDA
//! device (the round's metrics name it) and changes the weights.
//!
//! What the step learns: nothing, as a rule. A random model's injector writes no valid
//! bug, so its one trajectory is a group of one whose advantage is 0, and the trainer
//! says "no learning signal"; the step still moves every weight by AdamW's decoupled
//! weight decay, so the fingerprint changes either way. The test prints which of the two
//! it saw, and accepts only those two.

use super::{on_device_or_skip, ssr, succeeded};
use serde_json::Value;

#[test]
fn selfplay_round_trains_on_the_cuda_device() {
    let test = "selfplay_round_trains_on_the_cuda_device";
    if crate::embedded_model_or_skip().is_none() {
        // Bubblewrap missing: the round's sandboxes cannot run (a GPU cannot help).
        assert!(
            !std::env::var("SSR_REQUIRE_GPU").is_ok_and(|v| v == "1"),
            "{test}: SSR_REQUIRE_GPU=1 but bubblewrap or the embedded model is missing"
        );
        return;
    }
    let Some(d) = on_device_or_skip(test) else {
        return;
    };
    let config = d.dir().join("tiny.toml");
    std::fs::write(
        &config,
        "seed = 5\nrounds = 1\ninjector_rollouts = 1\nprocedural_per_round = 0\nmax_higher_order_per_round = 0\nmax_concurrent_episodes = 1\ntemperature = 0.7\nlearning_rate = 0.0001\n\
         [injector_budgets]\nmax_turns = 1\nmax_new_tokens = 16\ncontext_tokens = 8192\noutput_bytes = 1024\ncall_timeout_ms = 20000\n",
    )
    .unwrap();
    let out = d.dir().join("run");
    let o = ssr(&[
        "selfplay",
        "--policy",
        "embedded",
        "--model",
        d.model.to_str().unwrap(),
        "--train",
        "--device",
        "cuda",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = succeeded("ssr selfplay --train --device cuda", &o);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 1);
    let (round, train) = (&metrics[0], &metrics[0]["train"]);
    assert_eq!(
        &summary["last_train"], train,
        "the summary shows the round's step"
    );
    assert_eq!(train["device"]["kind"], "cuda", "{train}");
    assert_eq!(train["device"]["name"], d.device_name.as_str(), "{train}");
    let before = round["weights_used"].as_str().expect("fingerprint before");
    let after = train["weights_after"].as_str().expect("fingerprint after");
    assert_ne!(before, after, "the step on the device changed the weights");
    assert!(train["loss"].as_f64().unwrap().is_finite(), "{train}");
    assert!(train["grad_norm"].as_f64().unwrap().is_finite(), "{train}");
    match train["no_signal"].as_str() {
        Some(msg) => {
            assert!(msg.starts_with("no learning signal"), "{msg}");
            eprintln!(
                "{test}: trained on {} with no learning signal ({msg}); weights {before} -> {after} by weight decay",
                d.device_name
            );
        }
        None => eprintln!(
            "{test}: trained on {} with a learning signal, loss {}; weights {before} -> {after}",
            d.device_name, train["loss"]
        ),
    }
    assert!(out.join("checkpoints/round-0000").is_dir());
}
