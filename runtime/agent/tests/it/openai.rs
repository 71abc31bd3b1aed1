//! The `openai` client against the real `ssr serve` router: exact ids over the
//! completions endpoint, the chat fallback, retries, and the embedded engine served.

use crate::support::{ByteCodec, EchoTools, model_path};
use ssr_agent::policy::embedded::EmbeddedPolicy;
use ssr_agent::policy::openai::{OpenAiConfig, OpenAiPolicy};
use ssr_agent::policy::{GenerateRequest, Policy, PolicyError, Prompt, RequestTag, Sampling};
use ssr_agent::serve::{Completer, EngineCompleter, ReplayCompleter, Server};
use ssr_agent::shutdown::{self, ShutdownHandle};
use ssr_agent::{Budgets, EpisodeEnd, EpisodeSpec, TextCodec, ToolCallSyntax, run_episode};
use std::sync::Arc;
use std::time::Duration;

async fn start(completer: Arc<dyn Completer>, completions: bool) -> (String, ShutdownHandle) {
    let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), completer, completions)
        .await
        .unwrap();
    let url = format!("http://{}/v1", server.local_addr().unwrap());
    let (handle, rx) = shutdown::channel();
    tokio::spawn(server.run(rx));
    (url, handle)
}

fn replay(latency_ms: u64) -> Arc<dyn Completer> {
    Arc::new(ReplayCompleter {
        turns: vec![
            "<tool: bash>\nls\n</tool>".into(),
            "<tool: submit>\n</tool>".into(),
        ],
        latency: Duration::from_millis(latency_ms),
        codec: Arc::new(ByteCodec),
    })
}

fn spec(id: &str) -> EpisodeSpec {
    EpisodeSpec {
        episode_id: id.into(),
        role: ssr_role::Role::Solver,
        attempt: 0,
        system: "sys".into(),
        task: "task".into(),
        budgets: Budgets::embedded(),
        syntax: ToolCallSyntax::Cwm,
        sampling: Sampling::default(),
    }
}

#[tokio::test]
async fn completions_endpoint_gives_exact_ids_and_logprobs() {
    let (url, _h) = start(replay(0), true).await;
    let client = OpenAiPolicy::new(
        OpenAiConfig {
            base_url: url,
            model: "replay".into(),
            ..Default::default()
        },
        Some(Arc::new(ByteCodec)),
    )
    .unwrap();
    let t = run_episode(
        &client,
        &EchoTools::default(),
        &spec("c"),
        &shutdown::Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::Submitted, "{:?}", t.end);
    assert!(t.exact_tokens);
    assert_eq!(t.endpoint, "completions");
    // `ssr serve` takes token-id prompts (vLLM's API): detected, and kept.
    assert_eq!(
        client.prompt_form(),
        Some(ssr_agent::policy::openai::PromptForm::TokenIds)
    );
    assert_eq!(ByteCodec.decode(&t.token_ids()), t.rendered());
    assert!(t.logprobs().unwrap().iter().any(|l| *l == -0.5));
}

#[tokio::test]
async fn a_server_without_completions_falls_back_to_chat_and_says_so() {
    let (url, _h) = start(replay(0), false).await;
    // No local tokenizer: prompts are chat messages from the start.
    let client = OpenAiPolicy::new(
        OpenAiConfig {
            base_url: url,
            model: "replay".into(),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let t = run_episode(
        &client,
        &EchoTools::default(),
        &spec("f"),
        &shutdown::Shutdown::never(),
    )
    .await;
    assert_eq!(t.endpoint, "chat");
    assert!(!t.exact_tokens);
    assert!(t.turns[0].call.is_some(), "{:?}", t.turns[0]);
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error_after_retries() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let cfg = OpenAiConfig {
        base_url: format!("http://{addr}/v1"),
        max_attempts: 3,
        backoff_ms: 10,
        ..Default::default()
    };
    let client = OpenAiPolicy::new(cfg, None).unwrap();
    let req = GenerateRequest {
        prompt: Prompt::Chat(vec![ssr_agent::Message::new(ssr_agent::Role::User, "hi")]),
        sampling: Sampling::default(),
        tag: RequestTag {
            role: ssr_role::Role::Solver,
            attempt: 0,
            turn: 0,
            episode_id: "x".into(),
        },
    };
    match client.generate(req).await {
        Err(PolicyError::Unreachable { attempts: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_served_engine_matches_the_engine_in_process() {
    let Some(path) = model_path() else {
        eprintln!("skipped: the embedded model is not set up (run `just setup` or set SSR_MODEL)");
        return;
    };
    let policy = Arc::new(EmbeddedPolicy::load(&path, 1).unwrap());
    let codec = policy.codec().unwrap();
    let completer = Arc::new(EngineCompleter::new(policy.clone(), "smollm2".into(), 8).unwrap());
    let (url, _h) = start(completer, true).await;
    let client = OpenAiPolicy::new(
        OpenAiConfig {
            base_url: url,
            model: "smollm2".into(),
            ..Default::default()
        },
        Some(codec.clone()),
    )
    .unwrap();
    let msgs = vec![ssr_agent::Message::new(
        ssr_agent::Role::User,
        "List the files.",
    )];
    let ids = ssr_agent::chat::encode_pieces(
        Some(codec.as_ref()),
        &ssr_agent::ChatMl.pieces(&msgs, true),
    )
    .1;
    let req = GenerateRequest {
        prompt: Prompt::Tokens(ids),
        sampling: Sampling {
            temperature: 0.7,
            max_tokens: 8,
            seed: 11,
            ..Sampling::default()
        },
        tag: RequestTag {
            role: ssr_role::Role::Solver,
            attempt: 0,
            turn: 0,
            episode_id: "x".into(),
        },
    };
    let direct = policy.generate(req.clone()).await.unwrap();
    let served = client.generate(req).await.unwrap();
    assert_eq!(served.token_ids, direct.token_ids);
    assert_eq!(served.text, direct.text);
    let (a, b) = (served.logprobs.unwrap(), direct.logprobs.unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    assert!(served.exact_tokens);
}

/// `ssr serve` decodes concurrent requests together (continuous batching), and each
/// still gets what it gets alone: the same tokens and the same log-probabilities, at
/// temperature 0 and when sampling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_the_served_engine_each_match_generation_alone() {
    let Some(path) = model_path() else {
        eprintln!("skipped: the embedded model is not set up (run `just setup` or set SSR_MODEL)");
        return;
    };
    let policy = Arc::new(EmbeddedPolicy::load(&path, 1).unwrap());
    let codec = policy.codec().unwrap();
    let completer = Arc::new(EngineCompleter::new(policy.clone(), "smollm2".into(), 8).unwrap());
    let (url, _h) = start(completer, true).await;
    let client = Arc::new(
        OpenAiPolicy::new(
            OpenAiConfig {
                base_url: url,
                model: "smollm2".into(),
                ..Default::default()
            },
            Some(codec.clone()),
        )
        .unwrap(),
    );
    let questions = [
        "List the files.",
        "What is 2 + 2?",
        "Name a colour.",
        "Write a haiku about Rust.",
        "Say hello.",
        "What is a bug?",
        "Count to five.",
        "Describe a cat.",
    ];
    let requests: Vec<GenerateRequest> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let msgs = vec![ssr_agent::Message::new(ssr_agent::Role::User, *q)];
            let ids = ssr_agent::chat::encode_pieces(
                Some(codec.as_ref()),
                &ssr_agent::ChatMl.pieces(&msgs, true),
            )
            .1;
            GenerateRequest {
                prompt: Prompt::Tokens(ids),
                sampling: Sampling {
                    // Half greedy, half sampled with their own seeds.
                    temperature: if i % 2 == 0 { 0.0 } else { 0.7 },
                    max_tokens: 6 + 3 * i,
                    seed: 100 + i as u64,
                    ..Sampling::default()
                },
                tag: RequestTag {
                    role: ssr_role::Role::Solver,
                    attempt: i as u32,
                    turn: 0,
                    episode_id: format!("c{i}"),
                },
            }
        })
        .collect();
    let served = futures_join_all(client.clone(), requests.clone()).await;
    for (req, served) in requests.into_iter().zip(served) {
        let alone = policy.generate(req).await.unwrap();
        assert_eq!(served.token_ids, alone.token_ids);
        assert_eq!(served.text, alone.text);
        let (a, b) = (served.logprobs.unwrap(), alone.logprobs.unwrap());
        assert_eq!(a.len(), b.len());
        // The engine's batched values are bit-identical (trainer test
        // `batched_generation_matches_generation_alone`); the wire is decimal JSON.
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
        }
    }
}

/// Sends every request at once (one task each) and returns the answers in order.
async fn futures_join_all(
    client: Arc<OpenAiPolicy>,
    requests: Vec<GenerateRequest>,
) -> Vec<ssr_agent::policy::Generation> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let c = client.clone();
            tokio::spawn(async move { c.generate(r).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn post(url: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `top_logprobs` in both shapes: a map per position (completions, with the sampled
/// token in it) and a list per token (chat); out-of-range and chat without
/// `logprobs` are refused with 400.
#[tokio::test]
async fn top_logprobs_come_in_both_shapes_and_bad_requests_are_refused() {
    let (url, _h) = start(replay(0), true).await;
    let (status, body) = post(
        &url,
        "completions",
        serde_json::json!({"prompt": "hi", "max_tokens": 4, "logprobs": 2, "return_tokens_as_token_ids": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let lp = &body["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let top = lp["top_logprobs"].as_array().unwrap();
    assert!(!tokens.is_empty());
    assert_eq!(top.len(), tokens.len());
    for (t, m) in tokens.iter().zip(top) {
        assert_eq!(m[t.as_str().unwrap()], serde_json::json!(-0.5), "{m}");
    }
    let (status, body) = post(
        &url,
        "chat/completions",
        serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert!(!content.is_empty());
    for c in content {
        let alts = c["top_logprobs"].as_array().unwrap();
        assert_eq!(
            alts.len(),
            1,
            "the replay knows one token per position: {c}"
        );
        assert_eq!(alts[0]["token"], c["token"]);
        assert_eq!(alts[0]["bytes"], c["bytes"]);
    }
    for (path, body) in [
        (
            "completions",
            serde_json::json!({"prompt": "hi", "logprobs": 21}),
        ),
        (
            "chat/completions",
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}),
        ),
        (
            "chat/completions",
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}),
        ),
    ] {
        let (status, answer) = post(&url, path, body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("top_logprobs")
                || answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("logprobs must be at most"),
            "{answer}"
        );
    }
}

/// The served engine's alternatives are real: sorted, at most N, and the sampled
/// token's log-probability is its entry's when it is among them (the greedy one
/// always is: it is the first).
#[tokio::test]
async fn the_served_engine_gives_top_logprobs_around_the_sampled_token() {
    let Some(path) = model_path() else {
        eprintln!("skipped: the embedded model is not set up (run `just setup` or set SSR_MODEL)");
        return;
    };
    let policy = Arc::new(EmbeddedPolicy::load(&path, 1).unwrap());
    let completer = Arc::new(EngineCompleter::new(policy, "smollm2".into(), 8).unwrap());
    let (url, _h) = start(completer, true).await;
    let (status, body) = post(
        &url,
        "chat/completions",
        serde_json::json!({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5,
                           "temperature": 0.0, "logprobs": true, "top_logprobs": 4}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 5);
    for c in content {
        let alts = c["top_logprobs"].as_array().unwrap();
        assert_eq!(alts.len(), 4, "{c}");
        let lps: Vec<f64> = alts
            .iter()
            .map(|a| a["logprob"].as_f64().unwrap())
            .collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "{lps:?}");
        assert!(lps.iter().all(|l| *l <= 0.0));
        // Greedy: the sampled token is the most likely one.
        assert_eq!(alts[0]["bytes"], c["bytes"], "{c}");
        assert!(
            (alts[0]["logprob"].as_f64().unwrap() - c["logprob"].as_f64().unwrap()).abs() < 1e-6
        );
    }
}
