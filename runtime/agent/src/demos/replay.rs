//! Playing a demonstration's turns: the scripted policy in the real agent loop, over the
//! episode's real tools in the game's real workspace, then the game's judgement (the
//! evaluator for a solver, the verifier for an injector).
//!
//! Owns: the budget checks (turns and new tokens per turn before playing, the context
//! after), the checks that the script played as written (submitted, no failed call),
//! and the [`Demo`] of a played episode: its exact token ids and loss mask as the loop
//! built them, with the turns and observations in its metadata. Does not own: the
//! turns ([`super::script`]), rendering or tokenizing (the loop's [`run_episode`]).

use super::script::{self, ScriptError};
use super::{Demo, DemoConfig, DemoError, DropReason};
use crate::budget::Budgets;
use crate::chat::TextCodec;
use crate::episode::{EpisodeSpec, run_episode};
use crate::policy::Sampling;
use crate::policy::scripted::{ScriptTurn, ScriptedPolicy, Scripts};
use crate::prompts::{self, Strategy};
use crate::selfplay::arena::{Arena, World};
use crate::shutdown::Shutdown;
use crate::toolcall::ToolShape;
use crate::transcript::{EpisodeEnd, Transcript};
use serde_json::json;
use ssr_game::{Bug, Role};
use std::sync::Arc;

/// A demonstration or why it was dropped; the outer error is bad input or the game.
type Made = Result<Result<Demo, DropReason>, DemoError>;

/// Plays demonstrations in one arena.
pub(super) struct Player<'a> {
    pub arena: &'a dyn Arena,
    pub codec: Arc<dyn TextCodec>,
    pub cfg: &'a DemoConfig,
}

impl Player<'_> {
    /// The solver demonstration of `bug`: it must solve it.
    pub async fn solver(&self, bug: &Bug) -> Made {
        let id = &bug.meta.id;
        let arena_err = |source| DemoError::Arena {
            bug: id.clone(),
            source,
        };
        let fix = script::fix_of(&bug.artifact).map_err(|source| bad_patch(id, source))?;
        let episode_id = format!("demo-{id}-sol");
        let (world, task) = self
            .arena
            .solver_world(bug, &episode_id)
            .await
            .map_err(arena_err)?;
        if let Err(reason) = check_fix_applies(id, &world, &fix)? {
            return Ok(Err(reason));
        }
        let specs = world.tools.specs();
        let shapes: Vec<ToolShape> = specs.iter().map(|s| s.shape()).collect();
        let turns =
            match script::solver_turns(&fix, &bug.artifact.test_script, self.cfg.syntax, &shapes) {
                Ok(t) => t,
                Err(e) => return script_drop(id, e),
            };
        let spec = self.spec(
            episode_id,
            Role::Solver,
            prompts::solver_system(&specs, self.cfg.syntax),
            task,
            &self.cfg.solver_budgets,
        );
        let transcript = match self.play(&world, &spec, turns).await {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        let outcome = self.arena.evaluate(bug, &world).await.map_err(arena_err)?;
        if !outcome.solved() {
            return Ok(Err(DropReason::NotSolved {
                summary: outcome.summary,
            }));
        }
        Ok(Ok(demo(bug, &transcript, &outcome.summary)))
    }

    /// The injector demonstration of procedural `bug`: its artifact must verify.
    pub async fn injector(&self, bug: &Bug) -> Made {
        let id = &bug.meta.id;
        let arena_err = |source| DemoError::Arena {
            bug: id.clone(),
            source,
        };
        let episode_id = format!("demo-{id}-inj");
        let world = self
            .arena
            .injector_world(&episode_id)
            .await
            .map_err(arena_err)?;
        let specs = world.tools.specs();
        let shapes: Vec<ToolShape> = specs.iter().map(|s| s.shape()).collect();
        let turns = match script::injector_turns(&bug.artifact, self.cfg.syntax, &shapes) {
            Ok(t) => t,
            Err(e) => return script_drop(id, e),
        };
        // The prompt of the strategy that made the bug (removal when unrecorded).
        let strategy = match bug.meta.strategy.as_deref() {
            Some("history") => Strategy::History,
            _ => Strategy::Removal,
        };
        let system = prompts::injector_system(
            strategy,
            &specs,
            self.cfg.syntax,
            self.cfg.min_passing_tests,
        );
        let task = prompts::injector_task(&self.arena.repo_name());
        let spec = self.spec(
            episode_id.clone(),
            Role::Injector,
            system,
            task,
            &self.cfg.injector_budgets,
        );
        let transcript = match self.play(&world, &spec, turns).await {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        let judged = self
            .arena
            .verify_submission(&world, &episode_id)
            .await
            .map_err(arena_err)?;
        if !judged.verdict.valid {
            let detail = [judged.verdict.reason_code, judged.verdict.reason]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return Ok(Err(DropReason::InvalidArtifact { detail }));
        }
        Ok(Ok(demo(bug, &transcript, "the artifact verified")))
    }

    fn spec(
        &self,
        episode_id: String,
        role: Role,
        system: String,
        task: String,
        budgets: &Budgets,
    ) -> EpisodeSpec {
        EpisodeSpec {
            episode_id,
            role,
            attempt: 0,
            system,
            task,
            budgets: budgets.clone(),
            syntax: self.cfg.syntax,
            sampling: Sampling {
                temperature: self.cfg.temperature,
                top_p: self.cfg.top_p,
                ..Sampling::default()
            },
        }
    }

    /// Plays `turns` in `world` within the budgets; the transcript, or why it does not
    /// fit or did not play as written.
    async fn play(
        &self,
        world: &World,
        spec: &EpisodeSpec,
        turns: Vec<String>,
    ) -> Result<Transcript, DropReason> {
        let budgets = &spec.budgets;
        if turns.len() > budgets.max_turns as usize {
            return Err(DropReason::TooManyTurns {
                needed: turns.len(),
                max: budgets.max_turns,
            });
        }
        for (turn, text) in turns.iter().enumerate() {
            let tokens = self.codec.encode_text(text).len();
            if tokens > budgets.max_new_tokens {
                return Err(DropReason::TurnTooLong {
                    turn,
                    tokens,
                    max: budgets.max_new_tokens,
                });
            }
        }
        let mut scripts = Scripts::new();
        scripts.insert(
            spec.role.as_str().to_string(),
            vec![turns.into_iter().map(ScriptTurn::Text).collect()],
        );
        let policy = ScriptedPolicy::new(scripts, Some(self.codec.clone()));
        let t = run_episode(&policy, world.tools.as_ref(), spec, &Shutdown::never()).await;
        if let Some(r) = t
            .turns
            .iter()
            .find(|r| r.call_error.is_some() || r.tool_error)
        {
            return Err(DropReason::ToolError {
                turn: r.turn,
                observation: r.observation.clone().unwrap_or_default(),
            });
        }
        let max = self
            .cfg
            .model_context
            .map_or(budgets.context_tokens, |m| m.min(budgets.context_tokens));
        if t.end == EpisodeEnd::ContextExhausted || t.stats.total_tokens > max {
            return Err(DropReason::ContextTooLong {
                tokens: t.stats.total_tokens,
                max,
            });
        }
        if t.end != EpisodeEnd::Submitted {
            return Err(DropReason::NotSubmitted {
                end: format!("{:?}", t.end.kind()),
            });
        }
        Ok(t)
    }
}

fn bad_patch(bug: &str, source: ScriptError) -> DemoError {
    DemoError::BadPatch {
        bug: bug.to_string(),
        source,
    }
}

/// A script error: a patch that is not one is bad input, anything else a drop.
fn script_drop(bug: &str, e: ScriptError) -> Made {
    match e {
        ScriptError::Parse { .. } | ScriptError::Empty { .. } => Err(bad_patch(bug, e)),
        other => Ok(Err(DropReason::Unsupported {
            detail: other.to_string(),
        })),
    }
}

/// Each region the fix replaces is in the buggy workspace exactly once: missing, the
/// patch does not reverse (an error); repeated, the editor could not pick it (a drop).
fn check_fix_applies(
    bug: &str,
    world: &World,
    fix: &ssr_repo::patch::Patch,
) -> Result<Result<(), DropReason>, DemoError> {
    let targets = match script::fix_targets(fix) {
        Ok(t) => t,
        Err(e) => {
            return script_drop(bug, e).map(|r| r.map(|_| ()));
        }
    };
    for (path, before) in targets {
        let text = std::fs::read_to_string(world.workspace.join(&path)).unwrap_or_default();
        match text.matches(before.as_str()).count() {
            0 => {
                return Err(DemoError::DoesNotReverse {
                    bug: bug.to_string(),
                    path,
                });
            }
            1 => {}
            _ => return Ok(Err(DropReason::AmbiguousEdit { path })),
        }
    }
    Ok(Ok(()))
}

/// The demonstration of a played episode: the loop's exact ids and mask, with what was
/// played in its metadata (enough to replay it without the game).
fn demo(bug: &Bug, t: &Transcript, outcome: &str) -> Demo {
    Demo {
        token_ids: t.token_ids(),
        loss_mask: t.loss_mask(),
        metadata: Some(json!({
            "bug_id": bug.meta.id,
            "role": t.role,
            "episode_id": t.episode_id,
            "strategy": bug.meta.strategy,
            "turns": t.turns.iter().map(|r| &r.text).collect::<Vec<_>>(),
            "observations": t.turns.iter().map(|r| &r.observation).collect::<Vec<_>>(),
            "total_tokens": t.stats.total_tokens,
            "sampled_tokens": t.stats.sampled_tokens,
            "outcome": outcome,
        })),
    }
}
