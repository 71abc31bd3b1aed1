//! The `openai` policy against the kinds of server users run, each a small local
//! server in the test: one that refuses a `prompt` of token ids as
//! llama-cpp-python's does (HTTP 500; detected once, text prompts from then on,
//! `exact_tokens: false`), and one that aborts a generation (`finish_reason:
//! "abort"`, a weight update in flight: the turn is asked again and the aborted tokens
//! never enter the sequence). Token-id servers are tested against `ssr serve` in
//! `openai.rs`.

use crate::support::{ByteCodec, EchoTools};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use ssr_agent::policy::openai::{OpenAiConfig, OpenAiPolicy, PromptForm};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::{
    Budgets, EpisodeEnd, EpisodeSpec, Sampling, TextCodec, ToolCallSyntax, run_episode,
};
use std::sync::{Arc, Mutex};

/// How the test server behaves, and what it saw.
#[derive(Default)]
struct Behaviour {
    /// Answer a `prompt` of token ids with HTTP 500, as llama-cpp-python does.
    refuse_ids: bool,
    /// Abort this many generations first (`finish_reason: "abort"`).
    abort_first: usize,
    seen: Mutex<Seen>,
}

#[derive(Default, Debug)]
struct Seen {
    id_prompts: usize,
    text_prompts: usize,
    aborted: usize,
    answered: usize,
}

const TURNS: [&str; 2] = ["<tool: bash>\nls\n</tool>", "<tool: submit>\n</tool>"];
/// What an aborted generation holds: it must never reach the transcript.
const ABORTED: &str = "<tool: bash>\nrm -rf ABORTED\n</tool>";

async fn completions(
    State(b): State<Arc<Behaviour>>,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let ids_prompt = req["prompt"].is_array();
    let mut seen = b.seen.lock().unwrap();
    if ids_prompt {
        seen.id_prompts += 1;
        if b.refuse_ids {
            // llama-cpp-python's answer to a prompt of token ids.
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(
                    json!({"error": {"message": "'list' object has no attribute 'encode'", "type": "internal_server_error"}}),
                ),
            );
        }
    } else {
        seen.text_prompts += 1;
    }
    let (text, finish) = if seen.aborted < b.abort_first {
        seen.aborted += 1;
        (ABORTED, "abort")
    } else {
        // The conversation's turn: how many assistant turns the prompt already has.
        let prompt = match &req["prompt"] {
            Value::String(s) => s.clone(),
            ids => ByteCodec.decode(&serde_json::from_value::<Vec<u32>>(ids.clone()).unwrap()),
        };
        seen.answered += 1;
        let turn = prompt.matches("<|im_start|>assistant").count() - 1;
        (TURNS[turn.min(TURNS.len() - 1)], "stop")
    };
    let choice = if ids_prompt {
        // vLLM with `return_tokens_as_token_ids`: the sampled ids, stop string in.
        let tokens: Vec<String> = ByteCodec
            .encode_text(text)
            .iter()
            .map(|i| format!("token_id:{i}"))
            .collect();
        let lp = vec![-0.25; tokens.len()];
        json!({"text": text, "finish_reason": finish, "logprobs": {"tokens": tokens, "token_logprobs": lp}})
    } else {
        // llama-cpp-python: the text without its stop string, tokens as text pieces.
        let text = text.strip_suffix("</tool>").unwrap_or(text);
        let tokens: Vec<String> = text.chars().map(String::from).collect();
        let lp = vec![-0.25; tokens.len()];
        json!({"text": text, "finish_reason": finish, "logprobs": {"tokens": tokens, "token_logprobs": lp}})
    };
    (
        StatusCode::OK,
        Json(json!({"choices": [choice], "usage": {"prompt_tokens": 10}})),
    )
}

/// Starts the server; its `/v1` URL.
async fn serve(b: Arc<Behaviour>) -> String {
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .with_state(b);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn client(url: String) -> OpenAiPolicy {
    OpenAiPolicy::new(
        OpenAiConfig {
            base_url: url,
            model: "test".into(),
            max_attempts: 2,
            backoff_ms: 1,
            ..Default::default()
        },
        Some(Arc::new(ByteCodec)),
    )
    .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_token_id_prompts_gets_text_prompts_detected_once() {
    let b = Arc::new(Behaviour {
        refuse_ids: true,
        ..Default::default()
    });
    let policy = Arc::new(client(serve(b.clone()).await));
    assert_eq!(policy.prompt_form(), None);
    // Four episodes at once: one request detects, the others wait for its answer.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..4 {
        let p = policy.clone();
        set.spawn(async move {
            run_episode(
                p.as_ref(),
                &EchoTools::default(),
                &spec(&format!("e{i}")),
                &Shutdown::never(),
            )
            .await
        });
    }
    let transcripts: Vec<_> = set.join_all().await;
    for t in &transcripts {
        assert_eq!(t.end, EpisodeEnd::Submitted, "{:?}", t.end);
        assert!(!t.exact_tokens);
        assert_eq!(t.endpoint, "completions-text");
        assert_eq!(t.turns.len(), 2);
        assert!(t.turns[0].call.is_some(), "{:?}", t.turns[0]);
    }
    assert_eq!(policy.prompt_form(), Some(PromptForm::Text));
    let seen = b.seen.lock().unwrap();
    // The one detecting request, tried `max_attempts` = 2 times; never again after.
    assert_eq!(seen.id_prompts, 2, "{seen:?}");
    assert_eq!(seen.text_prompts, 8, "{seen:?}");
}

#[tokio::test]
async fn an_aborted_turn_is_asked_again_and_left_out_of_the_sequence() {
    let b = Arc::new(Behaviour {
        abort_first: 1,
        ..Default::default()
    });
    let policy = client(serve(b.clone()).await);
    let t = run_episode(
        &policy,
        &EchoTools::default(),
        &spec("a"),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::Submitted, "{:?}", t.end);
    assert_eq!(policy.prompt_form(), Some(PromptForm::TokenIds));
    assert!(t.exact_tokens);
    assert_eq!(t.stats.aborted_generations, 1);
    assert_eq!(t.turns.len(), 2);
    let ids = ByteCodec.decode(&t.token_ids());
    assert_eq!(ids, t.rendered());
    assert!(!ids.contains("ABORTED"), "{ids}");
    assert!(t.turns.iter().all(|r| !r.text.contains("ABORTED")));
    let seen = b.seen.lock().unwrap();
    assert_eq!((seen.aborted, seen.answered), (1, 2), "{seen:?}");
}
