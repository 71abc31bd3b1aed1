//! The agent loop with scripted turns and echoing tools.

use crate::support::{ByteCodec, EchoTools};
use ssr_agent::TextCodec;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::shutdown::{self, Shutdown};
use ssr_agent::{Budgets, EpisodeEnd, EpisodeSpec, Sampling, ToolCallSyntax, run_episode};
use std::sync::Arc;

fn spec(syntax: ToolCallSyntax, budgets: Budgets) -> EpisodeSpec {
    EpisodeSpec {
        episode_id: "e0".into(),
        role: ssr_role::Role::Solver,
        attempt: 0,
        system: "system prompt".into(),
        task: "fix it".into(),
        budgets,
        syntax,
        sampling: Sampling::default(),
    }
}

fn policy(turns: &[&str]) -> ScriptedPolicy {
    let mut scripts = Scripts::new();
    scripts.insert(
        "solver".into(),
        vec![
            turns
                .iter()
                .map(|t| ScriptTurn::Text(t.to_string()))
                .collect(),
        ],
    );
    ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)))
}

#[tokio::test]
async fn malformed_calls_become_counted_error_observations() {
    let p = policy(&[
        "I think about it",
        "<tool: bash>\nls\n</tool><tool: bash>\npwd\n</tool>",
        "<tool: bash>\nfail\n</tool>",
        "<tool: bash>\nls -la\n</tool>",
        "<tool: submit>\n</tool>",
    ]);
    let tools = EchoTools::default();
    let t = run_episode(
        &p,
        &tools,
        &spec(ToolCallSyntax::Cwm, Budgets::embedded()),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::Submitted);
    assert_eq!(t.stats.turns, 5);
    assert_eq!(t.stats.malformed_calls, 2);
    assert_eq!(t.stats.tool_errors, 1);
    let obs: Vec<_> = t
        .turns
        .iter()
        .filter_map(|r| r.observation.clone())
        .collect();
    assert!(
        obs[0].starts_with("error: no tool call found"),
        "{}",
        obs[0]
    );
    assert!(
        obs[1].starts_with("error: 2 tool calls found"),
        "{}",
        obs[1]
    );
    assert!(obs[3].starts_with("ran: ls -la"));
    // Every observation states what is left.
    for (i, o) in obs.iter().enumerate() {
        assert!(o.contains(&format!("[{} turns left,", 12 - i - 1)), "{o}");
        assert!(o.contains("tokens left]"));
    }
    assert_eq!(tools.calls.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn segments_reproduce_the_rendered_conversation() {
    let p = policy(&[
        "<tool: bash>\necho <|im_end|> hi\n</tool>",
        "<tool: submit>\n</tool>",
    ]);
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Cwm, Budgets::embedded()),
        &Shutdown::never(),
    )
    .await;
    let concat: String = t.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(concat, t.rendered());
    assert_eq!(ByteCodec.decode_all(&t.token_ids()), t.rendered());
    // Content that spells a control string is plain text, never a control token.
    let ids = t.token_ids();
    let controls = ids.iter().filter(|&&i| i == 257).count();
    assert_eq!(controls, t.messages.len(), "one <|im_end|> per message");
    let mask = t.loss_mask();
    let sampled: String = ByteCodec.decode_all(
        &ids.iter()
            .zip(&mask)
            .filter(|(_, m)| **m == 1)
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
    );
    assert_eq!(sampled, format!("{}{}", t.turns[0].text, t.turns[1].text));
}

trait DecodeAll {
    fn decode_all(&self, ids: &[u32]) -> String;
}
impl DecodeAll for ByteCodec {
    fn decode_all(&self, ids: &[u32]) -> String {
        ssr_agent::TextCodec::decode(self, ids)
    }
}

#[tokio::test]
async fn json_syntax_and_turn_budget() {
    let p =
        policy(&[r#"<tool_call>{"name": "bash", "arguments": {"command": "a"}}</tool_call>"#; 3]);
    let budgets = Budgets {
        max_turns: 3,
        ..Budgets::embedded()
    };
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Json, budgets),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::TurnsExhausted);
    assert_eq!(t.stats.turns, 3);
    assert_eq!(t.stats.malformed_calls, 0);
    assert!(t.turns[2].observation.is_none());
    assert_eq!(
        t.segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<String>(),
        t.rendered()
    );
}

#[tokio::test]
async fn context_budget_ends_the_episode() {
    let p = policy(&["<tool: bash>\nls\n</tool>"; 50]);
    let budgets = Budgets {
        context_tokens: 400,
        ..Budgets::embedded()
    };
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Cwm, budgets),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::ContextExhausted);
}

#[tokio::test(start_paused = true)]
async fn a_slow_tool_call_is_stopped_at_its_time_budget() {
    let p = policy(&[
        "<tool: bash>\nsleep 100\n</tool>",
        "<tool: submit>\n</tool>",
    ]);
    let budgets = Budgets {
        call_timeout_ms: 5_000,
        ..Budgets::embedded()
    };
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Cwm, budgets),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::Submitted);
    assert!(t.turns[0].tool_timed_out);
    assert_eq!(t.stats.tool_timeouts, 1);
    assert!(
        t.turns[0]
            .observation
            .as_deref()
            .unwrap()
            .contains("did not finish within 5 s")
    );
}

/// Regression (env server, `limits.episode_timeout_s`): the episode's time was only
/// checked between turns, so a `sleep 600` under a long per-call limit held the episode
/// (and its sandbox) until that limit. Now the deadline stops the call's command.
#[tokio::test(start_paused = true)]
async fn the_episode_deadline_stops_a_tool_call_in_flight() {
    let p = policy(&[
        "<tool: bash>\nsleep 600\n</tool>",
        "<tool: submit>\n</tool>",
    ]);
    let budgets = Budgets {
        call_timeout_ms: 900_000,
        episode_timeout_ms: 2_000,
        ..Budgets::embedded()
    };
    let tools = EchoTools::default();
    let t0 = tokio::time::Instant::now();
    let t = run_episode(
        &p,
        &tools,
        &spec(ToolCallSyntax::Cwm, budgets),
        &Shutdown::never(),
    )
    .await;
    assert_eq!(t.end, EpisodeEnd::EpisodeTimeout);
    assert!(t.finished(), "a timed-out episode is scored, not cancelled");
    assert!(tools.interrupted.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(t.turns.len(), 1);
    assert!(t.turns[0].tool_timed_out && t.turns[0].observation.is_none());
    // The deadline, plus at most one 100 ms step of the sleeping tool.
    let took = t0.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_millis(2_500),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_a_running_episode() {
    let p = policy(&["<tool: bash>\nsleep 100\n</tool>"]);
    let (handle, rx) = shutdown::channel();
    let tools = EchoTools::default();
    let s = spec(ToolCallSyntax::Cwm, Budgets::cwm());
    let episode = run_episode(&p, &tools, &s, &rx);
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        handle.request();
    };
    let (t, ()) = tokio::join!(episode, stop);
    assert_eq!(t.end, EpisodeEnd::Cancelled);
    assert!(!t.finished());
}

#[tokio::test]
async fn an_exhausted_script_is_a_policy_error_not_a_panic() {
    let p = policy(&["<tool: bash>\nls\n</tool>"]);
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Cwm, Budgets::embedded()),
        &Shutdown::never(),
    )
    .await;
    assert!(
        matches!(t.end, EpisodeEnd::PolicyError(ref m) if m.contains("has no turn 1")),
        "{:?}",
        t.end
    );
}

/// A server that aborts every generation (a weight update that never ends).
struct AlwaysAborted {
    asked: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ssr_agent::Policy for AlwaysAborted {
    fn name(&self) -> String {
        "always-aborted".into()
    }
    fn codec(&self) -> Option<Arc<dyn ssr_agent::TextCodec>> {
        Some(Arc::new(ByteCodec))
    }
    async fn generate(
        &self,
        _: ssr_agent::policy::GenerateRequest,
    ) -> Result<ssr_agent::policy::Generation, ssr_agent::policy::PolicyError> {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ssr_agent::policy::Generation {
            policy_version: None,
            text: "partial".into(),
            token_ids: b"partial".iter().map(|b| u32::from(*b)).collect(),
            logprobs: None,
            finish: ssr_agent::policy::FinishReason::Abort,
            stop_in_text: false,
            prompt_tokens: 0,
            exact_tokens: true,
            endpoint: "test".into(),
        })
    }
}

/// Retrying aborted turns is bounded: a server that aborts forever ends the episode
/// in a policy error (infra, not a reward), with nothing of it in the sequence.
#[tokio::test(start_paused = true)]
async fn a_turn_aborted_every_time_ends_in_a_policy_error() {
    let p = AlwaysAborted {
        asked: Default::default(),
    };
    let t = run_episode(
        &p,
        &EchoTools::default(),
        &spec(ToolCallSyntax::Cwm, Budgets::embedded()),
        &Shutdown::never(),
    )
    .await;
    match &t.end {
        EpisodeEnd::PolicyError(e) => assert!(e.contains("aborted turn 0 11 times"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.asked.load(std::sync::atomic::Ordering::Relaxed), 11);
    assert_eq!(t.stats.aborted_generations, 11);
    assert!(t.turns.is_empty());
    assert!(!ByteCodec.decode(&t.token_ids()).contains("partial"));
}
