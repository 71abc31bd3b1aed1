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
