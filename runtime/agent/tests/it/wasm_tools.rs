//! The real episode tools: WebAssembly components in `ssr-toolhost` (bash shim into a
//! bubblewrap sandbox, editor, search, submit), offered to the model from their own
//! `describe`, with the solver's oracle files read-only; and a custom tool from
//! `tools-wasm/testing` added by a tools folder and a policy file, offered and called
//! in an episode.

use crate::support::{ByteCodec, bwrap, tool_host};
use ssr_agent::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::tools::{SolverSubmission, Submission};
use ssr_agent::wasm_tools::{SharedHost, WasmTools};
use ssr_agent::{Budgets, EpisodeEnd, EpisodeSpec, Sampling, ToolCallSyntax, Tools, run_episode};
use ssr_toolhost::{Episode, Policy, Role};
use std::path::Path;
use std::sync::Arc;

fn spec(role: &str) -> EpisodeSpec {
    EpisodeSpec {
        episode_id: format!("{role}-wasm"),
        role: role.parse().unwrap(),
        attempt: 0,
        system: "system".into(),
        task: "task".into(),
        budgets: Budgets::embedded(),
        syntax: ToolCallSyntax::Cwm,
        sampling: Sampling::default(),
    }
}

fn scripted(role: &str, turns: &[&str]) -> ScriptedPolicy {
    let mut scripts = Scripts::new();
    scripts.insert(
        role.into(),
        vec![
            turns
                .iter()
                .map(|t| ScriptTurn::Text(t.to_string()))
                .collect(),
        ],
    );
    ScriptedPolicy::new(scripts, Some(Arc::new(ByteCodec)))
}

fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
    std::fs::write(
        dir.join("tests/test_calc.py"),
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solver_episode_uses_the_wasm_tools_with_oracle_files_read_only() {
    let Some(sandbox) = bwrap() else { return };
    let host = SharedHost::new(tool_host(Policy::default(), &[]));
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repo");
    repo(&ws);
    let episode = Episode {
        state_dir: Some(tmp.path().join("state")),
        oracle_files: vec!["tests/test_calc.py".into()],
        sandbox: Some(sandbox),
        ..Episode::new(Role::Solver, &ws)
    };
    let tools = WasmTools::new(host.clone(), episode).unwrap();

    // The prompt's tools are the host's, described by the components themselves.
    let specs = tools.specs();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bash", "editor", "search", "submit"]);
    for s in &specs {
        let d = &host.host.tool(&s.name).unwrap().description;
        assert_eq!(s.description, d.description);
        assert_eq!(s.parameters["type"], "object");
    }

    let p = scripted(
        "solver",
        &[
            r#"<tool: editor>
{"command": "str_replace", "path": "tests/test_calc.py", "old_str": "== 5", "new_str": "== -1"}
</tool>"#,
            "<tool: bash>\necho hacked >> tests/test_calc.py\n</tool>",
            r#"<tool: editor>
{"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a + b"}
</tool>"#,
            "<tool: search>\n{\"pattern\": \"def add\"}\n</tool>",
            "<tool: bash>\ncat calc.py\n</tool>",
            "<tool: submit>\n</tool>",
        ],
    );
    let t = run_episode(&p, &tools, &spec("solver"), &Shutdown::never()).await;
    assert_eq!(t.end, EpisodeEnd::Submitted, "{:#?}", t.turns);
    let obs: Vec<String> = t
        .turns
        .iter()
        .map(|r| r.observation.clone().unwrap_or_default())
        .collect();
    // The oracle test file is read-only for the editor and in the bash sandbox.
    assert!(t.turns[0].tool_error, "{}", obs[0]);
    assert!(obs[1].contains("Read-only file system"), "{}", obs[1]);
    assert_eq!(
        std::fs::read_to_string(ws.join("tests/test_calc.py")).unwrap(),
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    );
    // The code is writable; search and bash see the edit.
    assert!(!t.turns[2].tool_error, "{}", obs[2]);
    assert!(obs[3].contains("calc.py"), "{}", obs[3]);
    assert!(obs[4].contains("return a + b"), "{}", obs[4]);
    assert_eq!(
        tools.submission(),
        Some(Submission::Solver(SolverSubmission::WorkspaceDiff)),
        "the solver's submit asks for the workspace's diff"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injector_submit_is_refused_until_the_artifact_is_complete() {
    let Some(sandbox) = bwrap() else { return };
    let mut policy = Policy::default();
    ssr_agent::selfplay::game_arena::use_artifact_dir(&mut policy);
    let host = SharedHost::new(tool_host(policy, &[]));
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repo");
    repo(&ws);
    let episode = Episode {
        sandbox: Some(sandbox),
        ..Episode::new(Role::Injector, &ws)
    };
    let tools = WasmTools::new(host, episode).unwrap();
    let write_all = "mkdir -p ssr_artifact && for f in test_script.sh test_files.txt test_parser.py bug_inject.diff test_weaken.diff; do echo x > ssr_artifact/$f; done";
    let p = scripted(
        "injector",
        &[
            "<tool: submit>\n</tool>",
            &format!("<tool: bash>\n{write_all}\n</tool>"),
            "<tool: submit>\n</tool>",
        ],
    );
    let t = run_episode(&p, &tools, &spec("injector"), &Shutdown::never()).await;
    assert_eq!(t.end, EpisodeEnd::Submitted, "{:#?}", t.turns);
    assert_eq!(t.stats.turns, 3);
    let first = t.turns[0].observation.clone().unwrap();
    assert!(
        t.turns[0].tool_error && first.contains("test_script.sh"),
        "{first}"
    );
    assert_eq!(
        tools.submission(),
        Some(Submission::Artifact {
            directory: "ssr_artifact".into()
        })
    );
}

/// A custom tool from `tools-wasm/testing` (`wants-exec`: runs its `command` through
/// the host's exec import) dropped in a tools folder with a manifest and granted by a
/// policy file: the model is offered it, calls it, and its command runs in the
/// episode's sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_tool_from_a_policy_file_is_offered_and_called() {
    let Some(sandbox) = bwrap() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let tools_dir = tmp.path().join("tools/wants-exec");
    std::fs::create_dir_all(&tools_dir).unwrap();
    std::fs::copy(
        ssr_toolhost::tools_wasm_dir().join("ssr_testing_wants_exec.wasm"),
        tools_dir.join("wants-exec.wasm"),
    )
    .expect("tools-wasm/testing built by ssr-toolhost's build script");
    std::fs::write(
        tools_dir.join("tool.toml"),
        "name = \"wants-exec\"\ncomponent = \"wants-exec.wasm\"\ndescription = \"runs a command\"\n[grants]\nexec = true\n",
    )
    .unwrap();
    let policy_file = tmp.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        format!(
            "{}\n[roles.solver.tools.wants-exec]\nexec = true\n",
            ssr_toolhost::policy::DEFAULT_POLICY
        ),
    )
    .unwrap();
    let policy = Policy::from_file(&policy_file).unwrap();
    let host = SharedHost::new(tool_host(policy, &[tmp.path().join("tools")]));
    let ws = tmp.path().join("repo");
    repo(&ws);
    let episode = Episode {
        sandbox: Some(sandbox),
        ..Episode::new(Role::Solver, &ws)
    };
    let tools = WasmTools::new(host, episode).unwrap();
    let specs = tools.specs();
    let custom = specs.iter().find(|s| s.name == "wants-exec");
    assert!(
        custom.is_some_and(|s| s.description.contains("runs its `command`")),
        "offered: {:?}",
        specs.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let p = scripted(
        "solver",
        &[
            "<tool: wants-exec>\n{\"command\": \"echo from-custom > custom.txt && cat custom.txt\"}\n</tool>",
            "<tool: submit>\n</tool>",
        ],
    );
    let t = run_episode(&p, &tools, &spec("solver"), &Shutdown::never()).await;
    assert_eq!(t.end, EpisodeEnd::Submitted, "{:#?}", t.turns);
    let call = t.turns[0].call.as_ref().unwrap();
    assert_eq!(call.name, "wants-exec");
    let obs = t.turns[0].observation.clone().unwrap();
    assert!(
        !t.turns[0].tool_error && obs.contains("from-custom"),
        "{obs}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("custom.txt")).unwrap(),
        "from-custom\n"
    );
}
