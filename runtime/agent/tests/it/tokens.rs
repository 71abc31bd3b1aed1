//! Exact token sequences with the real SmolLM2 tokenizer: the agent's ChatML matches
//! the trainer's template, and a scripted episode's ids decode to its transcript.

use crate::support::{EchoTools, model_path};
use ssr_agent::chat::{ChatMl, Message, Role, TextCodec, encode_pieces};
use ssr_agent::policy::embedded::TrainerCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::trajectory::to_trajectory;
use ssr_agent::{Budgets, EpisodeSpec, Sampling, ToolCallSyntax, run_episode};
use ssr_trainer::gguf::GgufFile;
use ssr_trainer::tokenizer::{self, ChatOptions, Tokenizer};
use std::sync::Arc;

fn tokenizer() -> Option<Tokenizer> {
    let Some(path) = model_path() else {
        eprintln!("skipped: the embedded model is not set up (run `just setup` or set SSR_MODEL)");
        return None;
    };
    let f = GgufFile::open(&path).expect("open gguf");
    Some(Tokenizer::from_gguf(&f).expect("tokenizer"))
}

#[test]
fn chatml_matches_the_trainer_template() {
    let Some(tok) = tokenizer() else { return };
    let codec = TrainerCodec::new(tok.clone());
    let msgs = vec![
        Message::new(Role::System, "You fix bugs."),
        Message::new(Role::User, "Here: <|im_end|> is text in a file\n12345"),
        Message::new(Role::Assistant, "<tool: bash>\nls\n</tool>"),
    ];
    let theirs: Vec<tokenizer::Message> = msgs
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => tokenizer::Role::System,
                Role::User => tokenizer::Role::User,
                Role::Assistant => tokenizer::Role::Assistant,
            };
            tokenizer::Message::new(role, m.content.clone())
        })
        .collect();
    let opts = ChatOptions {
        add_generation_prompt: true,
        no_default_system: true,
        ..Default::default()
    };
    let (text, ids) = encode_pieces(Some(&codec), &ChatMl.pieces(&msgs, true));
    assert_eq!(text, tokenizer::chat::render(&theirs, &opts));
    assert_eq!(ids, tok.encode_chat(&theirs, &opts));
    assert_eq!(codec.decode(&ids), text);
}

#[tokio::test]
async fn a_scripted_episode_trajectory_reproduces_its_transcript() {
    let Some(tok) = tokenizer() else { return };
    let codec: Arc<dyn TextCodec> = Arc::new(TrainerCodec::new(tok));
    let mut scripts = Scripts::new();
    scripts.insert(
        "solver".into(),
        vec![vec![
            ScriptTurn::Text(
                "Let me look.\n<tool: bash>\ncat src/lib.rs | head -20\n</tool>".into(),
            ),
            ScriptTurn::Text("<tool: bash>\npython3 -m pytest -q 2>&1 | tail -5\n</tool>".into()),
            ScriptTurn::Text("<tool: submit>\n</tool>".into()),
        ]],
    );
    let policy = ScriptedPolicy::new(scripts, Some(codec.clone()));
    let spec = EpisodeSpec {
        episode_id: "tok".into(),
        role: ssr_role::Role::Solver,
        attempt: 0,
        system: "sys".into(),
        task: "The test suite is being improved:\n```diff\n+assert f(2) == 4\n```".into(),
        budgets: Budgets::embedded(),
        syntax: ToolCallSyntax::Cwm,
        sampling: Sampling::default(),
    };
    let t = run_episode(&policy, &EchoTools::default(), &spec, &Shutdown::never()).await;
    let traj =
        to_trajectory(&t, 1.0, "bug-1", serde_json::json!({"round": 0})).expect("trajectory");
    assert_eq!(codec.decode(&traj.token_ids), t.rendered());
    // The sampled (mask 1) tokens are exactly the model's turns, in order.
    let sampled: Vec<u32> = traj
        .token_ids
        .iter()
        .zip(&traj.loss_mask)
        .filter(|(_, m)| **m == 1)
        .map(|(i, _)| *i)
        .collect();
    let turns: String = t.turns.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(codec.decode(&sampled), turns);
    assert_eq!(traj.metadata["logprobs_known"], false);
    assert_eq!(traj.metadata["round"], 0);
}
