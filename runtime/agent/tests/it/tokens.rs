//! Exact token sequences with the real SmolLM2 tokenizer: the agent's ChatML matches
//! the trainer's template, and a scripted episode's ids decode to its transcript.

use crate::support::{EchoTools, model_path};
use ssr_agent::chat::{ChatMl, Message, Role, TextCodec, encode_pieces};
use ssr_agent::policy::embedded::TrainerCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::trajectory::{TrajectoryMeta, to_trajectory};
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

/// The agent renders with the model's own template, the trainer's: the same pieces,
/// so the same ids, and content that spells a control token stays text.
#[test]
fn the_agent_renders_with_the_models_template() {
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
        ..Default::default()
    };
    let template = codec.template();
    assert_eq!(
        template.chat_template().source(),
        tok.chat_template.as_deref().unwrap()
    );
    let (text, ids) = encode_pieces(Some(&codec), &template.pieces(&msgs, true).unwrap());
    assert_eq!(text, tok.template().render(&theirs, &opts).unwrap());
    assert_eq!(ids, tok.encode_chat(&theirs, &opts).unwrap());
    assert_eq!(codec.decode(&ids), text);
    // With a system message SmolLM2's template is ChatML.
    assert_eq!(text, ChatMl.render(&msgs, true));
    let im_end = tok.end_of_turn_id().unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 3);
}

/// Appending: for the model's template, the ids of n + 1 messages extend the ids of n
/// (what the agent relies on to append only new messages' ids), and the pieces an
/// episode appends give the whole conversation's ids.
#[test]
fn rendering_one_more_message_extends_the_ids_of_the_fewer() {
    let Some(tok) = tokenizer() else { return };
    let codec = TrainerCodec::new(tok);
    let template = codec.template();
    let msgs = [
        Message::new(Role::User, "Say hi."),
        Message::new(Role::Assistant, "hi <|im_end|> there"),
        Message::new(Role::User, "again\n"),
        Message::new(Role::Assistant, "ok"),
    ];
    let ids = |n: usize, prompt: bool| {
        encode_pieces(Some(&codec), &template.pieces(&msgs[..n], prompt).unwrap()).1
    };
    for n in 0..msgs.len() {
        let (short, long) = (ids(n, false), ids(n + 1, false));
        assert_eq!(long[..short.len()], short[..], "{n} messages");
        let grown = encode_pieces(
            Some(&codec),
            &template.extension(&msgs[..=n], n, true).unwrap(),
        )
        .1;
        assert_eq!([short, grown].concat(), ids(n + 1, true), "{n} messages");
    }
    // Opening a turn, its content and its close give the closed conversation's text.
    let opened = template.render(&msgs[..1], true).unwrap();
    let close = template.assistant_close(&msgs[..2], None).unwrap();
    assert_eq!(
        format!(
            "{opened}{}{}",
            msgs[1].content,
            encode_pieces(None, &close).0
        ),
        template.render(&msgs[..2], false).unwrap()
    );
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
    assert!(!traj.logprobs_known());
    assert_eq!(traj.metadata["round"], 0);
}
