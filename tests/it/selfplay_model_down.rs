//! `ssr selfplay --policy openai` against a server that answers every request with
//! HTTP 500 (as llama-cpp-python's does to prompts it cannot take): the run exits
//! non-zero with the server's error, and no episode is scored −1 or trained on
//! (issue 13: a model failure is never a reward).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A server on a free loopback port that answers every request `500` with a
/// llama-cpp-python-like body, until the process ends. Returns its `/v1` base URL.
fn always_500() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let answer =
                    r#"{"error":{"message":"the model crashed","type":"internal_server_error"}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    format!("http://{addr}/v1")
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn selfplay_against_a_failing_server_exits_non_zero_and_scores_nothing() {
    if !Path::new("/usr/bin/bwrap").exists() {
        eprintln!("skipped: bubblewrap is not installed (apt-get install bubblewrap)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "seed = 5\nrounds = 2\ninjector_rollouts = 1\nprocedural_per_round = 1\nattempts_per_bug = 2\nmax_higher_order_per_round = 0\nmax_concurrent_episodes = 4\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_ssr"))
        .current_dir(&root)
        .args(["selfplay", "--policy", "openai", "--json", "--base-url"])
        .arg(always_500())
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "stderr:\n{stderr}");
    assert!(
        stderr.contains("every episode failed to reach the model") && stderr.contains("HTTP 500"),
        "{stderr}"
    );
    assert!(stderr.contains("the model crashed"), "{stderr}");
    let episodes = read_jsonl(&out.join("episodes.jsonl"));
    assert!(!episodes.is_empty());
    for e in &episodes {
        assert_eq!(e["end"], "policy_error", "{e}");
        assert!(e["reward"].is_null(), "a model failure was scored: {e}");
        assert!(e["infra"].as_str().unwrap().contains("HTTP 500"), "{e}");
    }
    assert!(
        read_jsonl(&out.join("trajectories.jsonl")).is_empty(),
        "nothing to train on"
    );
    // The run stopped after its first round, counted apart in the metrics.
    let metrics = read_jsonl(&out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 1);
    let m = &metrics[0];
    assert_eq!(m["model_failures"], m["model_episodes"], "{m}");
    assert_eq!(m["model_failures"].as_u64(), Some(episodes.len() as u64));
    assert_eq!(m["mean_solver_reward"], Value::Null, "{m}");
    assert_eq!(m["mean_injector_reward"], Value::Null, "{m}");
}
