//! An in-memory [`Arena`] for testing the orchestrator (rewards, higher-order
//! selection, resume, metrics) with no sandbox, no repository and no model: a test
//! double next to the real [`super::game_arena::GameArena`], which
//! `tests/it/selfplay_scripted.rs` runs end to end.
//!
//! Its game, in full: a workspace is one text, set by the `edit` tool (the whole text,
//! replaced) and handed in by `submit`. An injector's submission is a valid bug when
//! its text is not empty (the text is the bug's diff), `artifact_unreadable` when it
//! is, and not judged at all (`infra`: the sandbox failed) when it is [`INFRA`]. A procedural bug is valid when [`FakeArena::procedural_valid`]. A solver solves
//! when its text is exactly `fix`; its evaluation is an infrastructure failure (no
//! reward) when its text is exactly [`INFRA`]; any other text is its (failed) patch. A failed
//! non-empty patch on a first-order bug makes a valid higher-order bug when
//! [`FakeArena::higher_order_valid`], and a second-order bug makes none (the order
//! cap). Owns: nothing outside tests.

use super::arena::{
    Arena, ArenaError, AttemptScore, BugSource, Judged, SolveOutcome, Verdict, World,
};
use crate::toolcall::ToolCall;
use crate::tools::{SolverSubmission, Submission, ToolResult, ToolSpec, Tools};
use serde_json::json;
use ssr_game::bug_store::BugMeta;
use ssr_game::{Artifact, Bug, VerificationReport};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The text a solver writes to solve.
pub const FIX: &str = "fix";
/// The text a solver writes to make its evaluation fail as a broken sandbox would.
pub const INFRA: &str = "sandbox down";

/// The tools of a fake world: `edit` (replace the workspace's text) and `submit`.
#[derive(Default)]
pub struct FakeTools {
    text: Mutex<String>,
    submitted: Mutex<Option<Submission>>,
    submission: Option<Submission>,
}

impl FakeTools {
    fn new(submission: Submission) -> Self {
        FakeTools {
            submission: Some(submission),
            ..FakeTools::default()
        }
    }

    /// The workspace's text now.
    pub fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Tools for FakeTools {
    fn specs(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "edit".into(),
                description: "Replaces the workspace's text.".into(),
                parameters: json!({"type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string"}}}),
            },
            ToolSpec {
                name: "submit".into(),
                description: "Hands the workspace in.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        ]
    }

    async fn call(&self, call: &ToolCall, _timeout: Duration) -> ToolResult {
        match call.name.as_str() {
            "edit" => match call.arguments["text"].as_str() {
                Some(t) => {
                    if let Ok(mut text) = self.text.lock() {
                        *text = t.trim().to_string();
                    }
                    ToolResult::ok("edited")
                }
                None => ToolResult::error("error: `text` is required"),
            },
            "submit" => {
                if let Ok(mut s) = self.submitted.lock() {
                    s.clone_from(&self.submission);
                }
                ToolResult {
                    output: "submitted".into(),
                    is_error: false,
                    submitted: true,
                }
            }
            other => ToolResult::error(format!("error: no tool `{other}`")),
        }
    }

    fn submission(&self) -> Option<Submission> {
        self.submitted.lock().ok().and_then(|s| s.clone())
    }
}

/// The in-memory game (see the module doc for its rules).
#[derive(Default)]
pub struct FakeArena {
    pub procedural_valid: bool,
    pub higher_order_valid: bool,
    /// Every verb called, as `verb id` lines, in call order (to check what a resumed
    /// run redoes).
    pub calls: Mutex<Vec<String>>,
    worlds: Mutex<HashMap<PathBuf, Arc<FakeTools>>>,
    next_world: AtomicU64,
}

impl FakeArena {
    /// A fake game whose procedural and higher-order bugs are valid or not as told.
    pub fn new(procedural_valid: bool, higher_order_valid: bool) -> Self {
        FakeArena {
            procedural_valid,
            higher_order_valid,
            ..FakeArena::default()
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn log(&self, verb: &str, id: &str) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("{verb} {id}"));
        }
    }

    fn world(&self, submission: Submission) -> World {
        let n = self.next_world.fetch_add(1, Ordering::Relaxed);
        let workspace = PathBuf::from(format!("/fake/world-{n}"));
        let tools = Arc::new(FakeTools::new(submission));
        if let Ok(mut w) = self.worlds.lock() {
            w.insert(workspace.clone(), tools.clone());
        }
        World {
            workspace,
            tools,
            guard: Box::new(()),
            cancel: Default::default(),
        }
    }

    fn text_of(&self, world: &World) -> String {
        self.worlds
            .lock()
            .ok()
            .and_then(|w| w.get(&world.workspace).map(|t| t.text()))
            .unwrap_or_default()
    }
}

/// A bug whose diff is `diff`, breaking `test_bug` and keeping `test_other`.
/// The bug patch of the procedural bug made with `seed`: a real diff, so its true
/// fix ([`Bug::true_fix`], the reversed patch) is known, as a real procedural bug's is.
pub fn procedural_diff(seed: u64) -> String {
    format!("--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-fix\n+procedural {seed}\n")
}

pub fn fake_bug(id: &str, diff: &str, higher_order_patch: Option<String>) -> Bug {
    Bug {
        artifact: Artifact {
            test_script: "run tests".into(),
            test_files: vec!["tests/test_fake.py".into()],
            test_parser: "parse".into(),
            bug_inject: diff.into(),
            test_weaken: "weaken".into(),
        },
        report: VerificationReport {
            valid: true,
            rejected_by: None,
            code: None,
            reason: None,
            checks: Vec::new(),
            runs: Vec::new(),
            fail_to_pass: vec!["test_bug".into()],
            pass_to_pass: vec!["test_other".into()],
            log_format: None,
            parallel: false,
            wall_ms: 0,
            notes: Vec::new(),
        },
        meta: BugMeta {
            id: id.into(),
            strategy: None,
            seed: None,
            candidate: "fake".into(),
            repo: "fake".into(),
            repo_path: "/fake".into(),
            base_commit: None,
            framework: None,
            source: None,
        },
        higher_order_patch,
    }
}

/// A fake bug from `source`, judged (its verdict is its report's, as in the game).
fn judged(source: BugSource, mut bug: Bug) -> Judged {
    bug.meta.source = Some(source);
    Judged::made(bug)
}

#[async_trait::async_trait]
impl Arena for FakeArena {
    fn repo_name(&self) -> String {
        "fake".into()
    }

    async fn injector_world(&self, episode_id: &str) -> Result<World, ArenaError> {
        self.log("injector_world", episode_id);
        Ok(self.world(Submission::Artifact {
            directory: "ssr_artifact".into(),
        }))
    }

    async fn verify_submission(&self, world: &World, bug_id: &str) -> Result<Judged, ArenaError> {
        self.log("verify", bug_id);
        let text = self.text_of(world);
        if text.is_empty() {
            return Ok(Judged::rejected(Verdict::rejected(
                bug_id,
                BugSource::Model,
                "artifact_unreadable",
                "the workspace is empty",
            )));
        }
        if text == INFRA {
            return Ok(Judged::rejected(Verdict::rejected(
                bug_id,
                BugSource::Model,
                "infra",
                "the sandbox could not run the verification",
            )));
        }
        Ok(judged(BugSource::Model, fake_bug(bug_id, &text, None)))
    }

    async fn procedural_bug(&self, seed: u64, bug_id: &str) -> Result<Judged, ArenaError> {
        self.log("procedural", bug_id);
        if !self.procedural_valid {
            return Ok(Judged::rejected(Verdict::rejected(
                bug_id,
                BugSource::Procedural,
                "procedural_none",
                "no candidate",
            )));
        }
        let bug = fake_bug(bug_id, &procedural_diff(seed), None);
        Ok(judged(BugSource::Procedural, bug))
    }

    async fn solver_world(
        &self,
        bug: &Bug,
        episode_id: &str,
    ) -> Result<(World, String), ArenaError> {
        self.log("solver_world", episode_id);
        let world = self.world(Submission::Solver(SolverSubmission::WorkspaceDiff));
        Ok((world, format!("Fix the bug: {}", bug.artifact.bug_inject)))
    }

    async fn evaluate(&self, bug: &Bug, world: &World) -> Result<SolveOutcome, ArenaError> {
        self.log("evaluate", &bug.meta.id);
        let patch = self.text_of(world);
        let (score, summary) = match patch.as_str() {
            FIX => (AttemptScore::Scored { reward: 1.0 }, "solved"),
            INFRA => (
                AttemptScore::Infra {
                    reason: "the sandbox could not run the tests".into(),
                },
                "not scored: the sandbox could not run the tests",
            ),
            _ => (AttemptScore::Scored { reward: -1.0 }, "tests still fail"),
        };
        Ok(SolveOutcome {
            score,
            summary: summary.into(),
            patch,
            evaluate_ms: 0,
        })
    }

    async fn higher_order(
        &self,
        parent_id: &str,
        parent: &Bug,
        failed_patch: &str,
        bug_id: &str,
    ) -> Result<Judged, ArenaError> {
        self.log("higher_order", bug_id);
        let rejected = |code: &str, why: &str| {
            Judged::rejected(Verdict::rejected(bug_id, BugSource::HigherOrder, code, why))
        };
        if parent.order() >= 2 {
            return Ok(rejected(
                "higher_order_order_cap",
                "the parent is second-order",
            ));
        }
        if !self.higher_order_valid || failed_patch.trim().is_empty() {
            return Ok(rejected(
                "higher_order_no_failure",
                "the patch breaks nothing",
            ));
        }
        let mut bug = fake_bug(
            bug_id,
            &parent.artifact.bug_inject,
            Some(failed_patch.into()),
        );
        bug.meta.candidate = format!("higher-order of {parent_id}");
        Ok(judged(BugSource::HigherOrder, bug))
    }
}
