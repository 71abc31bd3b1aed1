//! Demonstrations from a real verified procedural bug of the bundled example: the
//! solver's, replayed by the scripted policy in the real agent loop and game, solves
//! the bug (+1), its ids are what the loop renders for its turns and observations, and
//! its mask covers exactly the assistant's tokens; the injector's yields a valid
//! artifact; a demonstration over budget is dropped and counted; bad input is a typed
//! error.

use crate::support::{ByteCodec, bwrap, model_path, tool_host};
use ssr_agent::budget::Budgets;
use ssr_agent::chat::TextCodec;
use ssr_agent::demos::{self, Demo, DemoConfig, DemoError, DemoRoles};
use ssr_agent::episode::{EpisodeSpec, run_episode};
use ssr_agent::policy::Sampling;
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::prompts;
use ssr_agent::selfplay::Arena;
use ssr_agent::selfplay::game_arena::{GameArena, use_artifact_dir};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::toolcall::{ToolCall, ToolCallSyntax};
use ssr_agent::tools::{ToolResult, ToolSpec, Tools};
use ssr_agent::wasm_tools::SharedHost;
use ssr_game::inject::Strategy;
use ssr_game::{Bug, Role};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real tokenizer when the model is set up, else bytes (with a context to match).
fn codec() -> (Arc<dyn TextCodec>, usize) {
    match model_path() {
        Some(p) => (ssr_agent::selfplay::open::load_codec(&p).unwrap(), 8192),
        None => (Arc::new(ByteCodec), 65_536),
    }
}

fn config(roles: DemoRoles, budgets: Budgets) -> DemoConfig {
    DemoConfig {
        roles,
        syntax: ToolCallSyntax::Cwm,
        solver_budgets: budgets.clone(),
        injector_budgets: budgets,
        model_context: None,
        min_passing_tests: 5,
        temperature: 0.7,
        top_p: 1.0,
    }
}

/// The real game over a fresh copy of the bundled example, and one verified
/// procedural bug of it.
async fn game(dir: &Path) -> Option<(GameArena, Bug)> {
    let sandbox = bwrap()?;
    let repo = dir.join("python-textkit");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-textkit");
    ssr_game::examples::create_one(&source, &repo).unwrap();
    let mut policy = ssr_toolhost::Policy::default();
    use_artifact_dir(&mut policy);
    let cfg = ssr_agent::selfplay::SelfPlayConfig::default();
    let mut arena = GameArena::open(
        &cfg,
        &repo,
        dir.join("scratch"),
        SharedHost::new(tool_host(policy, &[])),
    )
    .unwrap();
    arena.sandbox = sandbox;
    let judged = arena
        .procedural_in_order(&[Strategy::Removal, Strategy::History], 0, "b0")
        .await
        .unwrap();
    let bug = judged.bug.filter(|b| b.report.valid).unwrap_or_else(|| {
        panic!(
            "the example gives a valid procedural bug: {:?}",
            judged.verdict
        )
    });
    Some((arena, bug))
}

fn meta_texts(demo: &Demo, key: &str) -> Vec<Option<String>> {
    demo.metadata.as_ref().unwrap()[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn script(role: Role, turns: &[Option<String>], codec: Arc<dyn TextCodec>) -> ScriptedPolicy {
    let mut s = Scripts::new();
    let turns = turns
        .iter()
        .map(|t| ScriptTurn::Text(t.clone().unwrap()))
        .collect();
    s.insert(role.as_str().into(), vec![turns]);
    ScriptedPolicy::new(s, Some(codec))
}

/// Answers each call with the next recorded observation (its budget line taken off:
/// the loop writes it again), `submit` with a submission.
struct Recorded {
    specs: Vec<ToolSpec>,
    outputs: Mutex<std::collections::VecDeque<String>>,
}

#[async_trait::async_trait]
impl Tools for Recorded {
    fn specs(&self) -> Vec<ToolSpec> {
        self.specs.clone()
    }
    async fn call(&self, call: &ToolCall, _timeout: Duration) -> ToolResult {
        if call.name == "submit" {
            return ToolResult {
                output: "submitted".into(),
                is_error: false,
                submitted: true,
            };
        }
        let next = self.outputs.lock().unwrap().pop_front().unwrap_or_default();
        ToolResult::ok(next)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solver_demo_of_a_real_bug_solves_it_and_is_the_loops_exact_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((arena, bug)) = game(tmp.path()).await else {
        return;
    };
    let (codec, context) = codec();
    let budgets = Budgets {
        max_turns: 16,
        max_new_tokens: 4096,
        context_tokens: context,
        ..Budgets::embedded()
    };
    let cfg = config(DemoRoles::Both, budgets.clone());
    let set = demos::build_demos(
        &arena,
        codec.clone(),
        vec![bug.clone()],
        &BTreeSet::new(),
        &cfg,
        &|_| {},
    )
    .await
    .unwrap();
    let s = &set.summary;
    assert_eq!(
        (s.solver_demos, s.injector_demos),
        (1, 1),
        "{:?}",
        s.dropped
    );
    let solver = &set.demos[0];
    let turns = meta_texts(solver, "turns");
    assert!(turns.len() >= 4, "view, edit, test, submit: {turns:?}");
    assert!(turns[0].as_deref().unwrap().contains("\"view\""));
    assert!(
        turns
            .last()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("<tool: submit>")
    );

    // Replayed by the scripted policy in the real loop and game, it solves the bug.
    let (world, task) = arena.solver_world(&bug, "replay").await.unwrap();
    let specs = world.tools.specs();
    let spec = EpisodeSpec {
        episode_id: "replay".into(),
        role: Role::Solver,
        attempt: 0,
        system: prompts::solver_system(&specs, ToolCallSyntax::Cwm),
        task: task.clone(),
        budgets: budgets.clone(),
        syntax: ToolCallSyntax::Cwm,
        sampling: Sampling {
            temperature: 0.7,
            ..Sampling::default()
        },
    };
    let policy = script(Role::Solver, &turns, codec.clone());
    let t = run_episode(&policy, world.tools.as_ref(), &spec, &Shutdown::never()).await;
    let outcome = arena.evaluate(&bug, &world).await.unwrap();
    assert_eq!(outcome.score.reward(), Some(1.0), "{}", outcome.summary);
    assert_eq!(t.stats.malformed_calls + t.stats.tool_errors, 0);

    // Its ids are what the loop renders for its turns and observations.
    let observations: Vec<String> = meta_texts(solver, "observations")
        .into_iter()
        .flatten()
        .map(|o| o.rsplit_once('\n').unwrap().0.to_string())
        .collect();
    let recorded = Recorded {
        specs,
        outputs: Mutex::new(observations.into()),
    };
    let again = run_episode(&policy, &recorded, &spec, &Shutdown::never()).await;
    assert_eq!(again.token_ids(), solver.token_ids);
    assert_eq!(again.loss_mask(), solver.loss_mask);

    // The mask covers exactly the assistant's tokens: the turns' own encodings.
    let masked: Vec<u32> = solver
        .token_ids
        .iter()
        .zip(&solver.loss_mask)
        .filter(|(_, m)| **m == 1)
        .map(|(t, _)| *t)
        .collect();
    let assistant: Vec<u32> = turns
        .iter()
        .flat_map(|t| codec.encode_text(t.as_deref().unwrap()))
        .collect();
    assert_eq!(masked, assistant);
    assert_eq!(solver.loss_mask[0], 0);

    // The injector's demonstration, replayed, yields a valid artifact.
    let injector = &set.demos[1];
    let turns = meta_texts(injector, "turns");
    let world = arena.injector_world("replay-inj").await.unwrap();
    let specs = world.tools.specs();
    let spec = EpisodeSpec {
        episode_id: "replay-inj".into(),
        role: Role::Injector,
        system: prompts::injector_system(
            prompts::Strategy::Removal,
            &specs,
            ToolCallSyntax::Cwm,
            5,
        ),
        task: prompts::injector_task(&arena.repo_name()),
        ..spec
    };
    let policy = script(Role::Injector, &turns, codec.clone());
    let t = run_episode(&policy, world.tools.as_ref(), &spec, &Shutdown::never()).await;
    assert_eq!(t.end, ssr_agent::transcript::EpisodeEnd::Submitted);
    let judged = arena.verify_submission(&world, "replay-inj").await.unwrap();
    assert!(judged.verdict.valid, "{:?}", judged.verdict);

    // Over budget: dropped and counted, nothing written for it.
    let tight = config(
        DemoRoles::Solver,
        Budgets {
            max_new_tokens: 8,
            ..budgets.clone()
        },
    );
    let set = demos::build_demos(
        &arena,
        codec.clone(),
        vec![bug.clone()],
        &BTreeSet::new(),
        &tight,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(set.demos.is_empty());
    assert_eq!(set.summary.dropped_by_reason.get("turn_too_long"), Some(&1));

    // Held out: never used.
    let held_out = BTreeSet::from([bug.meta.id.clone()]);
    let e = demos::build_demos(
        &arena,
        codec.clone(),
        vec![bug.clone()],
        &held_out,
        &cfg,
        &|_| {},
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, DemoError::AllExcluded(1)), "{e}");

    // A bug patch that is not a patch is a typed error naming the bug.
    let mut broken = bug.clone();
    broken.artifact.bug_inject = "this is not a diff\n".into();
    let e = demos::build_demos(&arena, codec, vec![broken], &BTreeSet::new(), &cfg, &|_| {})
        .await
        .err()
        .unwrap();
    assert!(matches!(e, DemoError::BadPatch { .. }), "{e}");
    assert!(e.to_string().contains("bug_inject.diff"), "{e}");
}

#[test]
fn bad_bug_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = demos::load_bugs(tmp.path()).err().unwrap();
    assert!(matches!(e, DemoError::NoBugs(_)), "{e}");
    // A bug directory without its patch.
    let dir = tmp.path().join("b1");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("bug.json", "{}"),
        ("test_script.sh", "pytest\n"),
        ("test_files.txt", "t.py\n"),
        ("test_parser.py", "print('{}')\n"),
        ("test_weaken.diff", "x\n"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let e = demos::load_bugs(tmp.path()).err().unwrap();
    assert!(matches!(e, DemoError::Bug { .. }), "{e}");
    assert!(e.to_string().contains("bug_inject.diff"), "{e}");
    let e = demos::read_exclusions(&tmp.path().join("none.txt"))
        .err()
        .unwrap();
    assert!(matches!(e, DemoError::Io { .. }), "{e}");
}
