//! The real arena's workspaces: an injector's is an `ssr-repo` snapshot that keeps the
//! repository's history (history-aware injection reads it); a solver's is the game's
//! history-free copy, where the original's history cannot be read.

use crate::support::{bwrap, tool_host};
use ssr_agent::selfplay::Arena;
use ssr_agent::selfplay::game_arena::GameArena;
use ssr_agent::wasm_tools::SharedHost;
use ssr_game::bug_store::BugMeta;
use ssr_game::score::AttemptScore;
use ssr_game::{Artifact, Bug, VerificationReport};
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// A repository with two commits.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("a.py"), "x = 1\n").unwrap();
    assert!(git(dir, &["init", "-q"]).status.success());
    assert!(git(dir, &["add", "-A"]).status.success());
    assert!(
        git(dir, &["commit", "-qm", "first: add a.py"])
            .status
            .success()
    );
    std::fs::write(dir.join("tests/test_a.py"), "assert True\n").unwrap();
    assert!(git(dir, &["add", "-A"]).status.success());
    assert!(
        git(dir, &["commit", "-qm", "second: add a test"])
            .status
            .success()
    );
}

fn bug() -> Bug {
    Bug {
        artifact: Artifact {
            test_script: "python3 tests/test_a.py\n".into(),
            test_files: vec!["tests/test_a.py".into()],
            test_parser: "print('{}')\n".into(),
            bug_inject: "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n".into(),
            test_weaken: "diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/tests/test_a.py\n+++ b/tests/test_a.py\n@@ -1 +1 @@\n-assert True\n+pass\n".into(),
        },
        report: VerificationReport {
            valid: true,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: vec!["t".into()],
            pass_to_pass: Vec::new(),
            log_format: None,
            parallel: false,
            wall_ms: 0,
            notes: Vec::new(),
        },
        meta: BugMeta {
            id: "b".into(),
            strategy: None,
            seed: None,
            candidate: "test".into(),
            repo: "r".into(),
            repo_path: String::new(),
            base_commit: None,
            framework: None,
            source: None,
        },
        higher_order_patch: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_log_works_for_the_injector_and_not_for_the_solver() {
    let Some(sandbox) = bwrap() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("orig");
    repo(&original);
    let arena = GameArena {
        repo: original.clone(),
        repo_name: "orig".into(),
        sandbox,
        verify: ssr_game::VerifyConfig::default(),
        episode: ssr_game::EpisodeConfig::default(),
        scratch: tmp.path().join("scratch"),
        tools: SharedHost::new(tool_host(ssr_toolhost::Policy::default(), &[])),
        procedural_candidates: 1,
        pool: Default::default(),
        injector_base: Default::default(),
    };

    let injector = arena.injector_world("inj").await.unwrap();
    let log = git(&injector.workspace, &["log", "--format=%s"]);
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "second: add a test\nfirst: add a.py\n"
    );
    // Its writes stay in its snapshot.
    std::fs::write(injector.workspace.join("a.py"), "x = 3\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(original.join("a.py")).unwrap(),
        "x = 1\n"
    );
    let ws = injector.workspace.clone();
    drop(injector);
    assert!(
        !ws.join("a.py").exists(),
        "dropping the world removes the snapshot"
    );

    let (solver, _task) = arena.solver_world(&bug(), "sol").await.unwrap();
    let log = git(&solver.workspace, &["log", "--format=%s"]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        !text.contains("first: add a.py") && !text.contains("second: add a test"),
        "the solver must not read the original's history: {text}"
    );
    assert_eq!(
        std::fs::read_to_string(solver.workspace.join("a.py")).unwrap(),
        "x = 2\n"
    );
}

/// `reject_tampering` (TOML, `--reject-tampering`) reaches the arena's verification
/// settings and, through them, the scoring of solver attempts: a patch that fixes the
/// bug but adds a line the tampering scan flags solves with a note by default, and is
/// tampered (−1) with the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_tampering_makes_a_scan_finding_in_a_solver_patch_minus_one() {
    let Some(sandbox) = bwrap() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("orig");
    repo(&original);
    let mut b = bug();
    b.artifact.test_script =
        "python3 -c 'import a; print(\"PASS\" if a.x == 1 else \"FAIL\")'\n".into();
    b.artifact.test_parser = "import json, sys\nprint(json.dumps({'t': 'passed' if 'PASS' in sys.stdin.read() else 'failed'}))\n".into();
    for reject in [false, true] {
        let cfg = ssr_agent::selfplay::SelfPlayConfig {
            reject_tampering: reject,
            ..Default::default()
        };
        let mut arena = GameArena::open(
            &cfg,
            &original,
            tmp.path().join(format!("scratch-{reject}")),
            SharedHost::new(tool_host(ssr_toolhost::Policy::default(), &[])),
        )
        .unwrap();
        assert_eq!(arena.verify.reject_tampering_findings, reject);
        arena.sandbox = sandbox.clone();
        let (world, _task) = arena.solver_world(&b, "sol").await.unwrap();
        // The true fix, and a line the scan flags (`sys.modules`).
        std::fs::write(
            world.workspace.join("a.py"),
            "x = 1\nimport sys\nLOADED = len(sys.modules)\n",
        )
        .unwrap();
        let out = arena.evaluate(&b, &world).await.unwrap();
        if reject {
            assert!(
                matches!(&out.score, AttemptScore::Tampered { notes } if notes.iter().any(|n| n.contains("sys.modules"))),
                "{}",
                out.summary
            );
            assert_eq!(out.score.reward(), Some(-1.0), "{}", out.summary);
        } else {
            assert!(out.solved(), "{}", out.summary);
            assert!(out.summary.contains("sys.modules"), "{}", out.summary);
        }
    }
}
