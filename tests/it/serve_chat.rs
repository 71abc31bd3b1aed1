//! `ssr serve`'s chat endpoint against `ssr model generate --chat`: the same user
//! message gives the same answer and the same log-probabilities, because both render
//! it with the model's own template (SmolLM2's adds its default system turn).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

/// A POST of `body` to `http://addr/path`; the response's JSON body.
fn post(addr: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).expect("connect to ssr serve");
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Regression: the server rendered chat as plain ChatML, without the default system
/// turn SmolLM2's own template adds, so its answer and logprobs differed from the
/// CLI's `--chat` for the same message.
#[test]
fn the_served_chat_answers_as_the_cli_chat_does() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("skipped: the embedded model is not set up (run `just setup`)");
        return;
    }
    let model = model.to_str().unwrap();
    let (message, seed, max_tokens) = ("Name one colour.", 5, 8);
    let cli = crate::ssr_output(&[
        "model",
        "generate",
        "--model",
        model,
        "--prompt",
        message,
        "--chat",
        "--json",
        "--temperature",
        "0.7",
        "--seed",
        "5",
        "--max-tokens",
        "8",
        "--device",
        "cpu",
    ]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli = crate::json(&cli);
    let mut server = crate::ssr()
        .args(["serve", "--model", model, "--port", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let base = started["base_url"].as_str().unwrap();
    let addr = base.trim_start_matches("http://").trim_end_matches("/v1");
    let served = post(
        addr,
        "/v1/chat/completions",
        &serde_json::json!({"messages": [{"role": "user", "content": message}],
            "temperature": 0.7, "seed": seed, "max_tokens": max_tokens, "logprobs": true}),
    );
    // Our own child, by its handle.
    let _ = server.kill();
    let _ = server.wait();
    let choice = &served["choices"][0];
    assert_eq!(choice["message"]["content"], cli["text"], "{served}\n{cli}");
    let lps: Vec<f64> = choice["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["logprob"].as_f64().unwrap())
        .collect();
    let want: Vec<f64> = cli["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    assert_eq!(lps.len(), want.len());
    for (a, b) in lps.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{lps:?} vs {want:?}");
    }
    // The prompt the server read is the CLI's: its default system turn included.
    assert_eq!(
        served["usage"]["prompt_tokens"], cli["prompt_tokens"],
        "{served}\n{cli}"
    );
}
