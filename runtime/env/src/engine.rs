//! Plays what a request asks for, on the self-play orchestrator's own phase functions:
//! one solver or injector episode, one round, procedural tasks. Nothing of the game,
//! the agent loop or the tools is copied here; each request gets a [`Table`] with its
//! own policy (the request's model URL), a memory journal and its own stop signal.
//!
//! Owns: the operator's repositories by name ([`Repos`]), per-request tables and
//! budgets, the request → policy mapping, and what a trainer gets back
//! ([`EpisodeResult`]: status, reward, messages, exact turns, timing). Does not own:
//! HTTP or WebSocket framing (`http`, `ws`), capacity (`slots`).

use crate::api::{
    EpisodeRequest, EpisodeResult, Limits, LlmSpec, MakeTasks, RoundRequest, RoundResult,
    RoundTrajectory, Status, Task, Timing, Turn,
};
use crate::error::ApiError;
use serde_json::json;
use ssr_agent::TextCodec;
use ssr_agent::policy::Policy;
use ssr_agent::policy::openai::{OpenAiConfig, OpenAiPolicy};
use ssr_agent::policy::scripted::{ScriptedPolicy, Scripts};
use ssr_agent::rundir::Outcome;
use ssr_agent::selfplay::game_arena::GameArena;
use ssr_agent::selfplay::inject::{inject_phase, injector_episode};
use ssr_agent::selfplay::solve::{Attempt, attempts_on, solve_phase, solver_attempt};
use ssr_agent::selfplay::{
    Done, MemoryJournal, NoProgress, Played, Round, SelfPlayConfig, SelfPlayError, Table,
};
use ssr_agent::shutdown::Shutdown;
use ssr_agent::transcript::{EpisodeEnd, Transcript};
use ssr_game::BugStore;
use ssr_game::inject::Strategy;
use ssr_role::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One repository the operator named at start-up.
pub struct RepoEnv {
    pub name: String,
    pub arena: Arc<GameArena>,
    /// The valid bugs solver episodes attempt (`<store>/<name>/bugs`).
    pub bugs: BugStore,
    /// Each round's own bug store (`<store>/<name>/rounds/<round>`): a round's ids
    /// (`r0-inj0`, …) are its own.
    pub rounds: PathBuf,
}

/// Who plays one episode: the policy, and the arena (the repository's, or a wrapper
/// that watches the episode's tools).
pub struct Players {
    pub policy: Arc<dyn Policy>,
    pub arena: Arc<dyn ssr_agent::selfplay::Arena>,
}

/// The repositories by name.
pub type Repos = BTreeMap<String, Arc<RepoEnv>>;

/// What every request shares: repositories, defaults, the tokenizer.
pub struct Engine {
    pub repos: Repos,
    /// Defaults of every request (budgets, sampling, syntax, reward kind).
    pub defaults: SelfPlayConfig,
    /// The model's tokenizer, when the operator gave one: prompts then go to the model
    /// server as token ids and turns are exact.
    pub codec: Option<Arc<dyn TextCodec>>,
}

/// Checks a name a request gives (repository, task, episode id): a name, never a path.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::PathNotAllowed(format!(
            "{what} `{name}` is not a name (letters, digits, `-`, `_`, `.`; no paths)"
        )))
    }
}

impl Engine {
    /// The repository a request names.
    pub fn repo(&self, name: &str) -> Result<Arc<RepoEnv>, ApiError> {
        check_name("repository", name)?;
        self.repos.get(name).cloned().ok_or_else(|| {
            ApiError::UnknownRepo(format!(
                "no repository `{name}`; this server has: {}",
                self.repos.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The request's policy: its model server, or its recorded turns.
    pub fn policy(
        &self,
        llm: Option<&LlmSpec>,
        script: Option<&Scripts>,
    ) -> Result<Arc<dyn Policy>, ApiError> {
        match (llm, script) {
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "give either `llm` or `script`, not both".into(),
            )),
            (None, None) => Err(ApiError::BadRequest(
                "the request names no model: give `llm` (an OpenAI-compatible base_url) or `script`"
                    .into(),
            )),
            (None, Some(s)) => Ok(Arc::new(ScriptedPolicy::new(s.clone(), self.codec.clone()))),
            (Some(llm), None) => {
                let api_key = match &llm.api_key_env {
                    None => None,
                    Some(name) if name.ends_with("API_KEY") || name.ends_with("TOKEN") => {
                        std::env::var(name).ok()
                    }
                    Some(name) => {
                        return Err(ApiError::BadRequest(format!(
                            "api_key_env `{name}`: only variables named *API_KEY or *TOKEN are read"
                        )));
                    }
                };
                if !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://"))
                {
                    return Err(ApiError::BadRequest(format!(
                        "llm.base_url `{}` is not an http(s) URL",
                        llm.base_url
                    )));
                }
                let config = OpenAiConfig {
                    base_url: llm.base_url.trim_end_matches('/').to_string(),
                    model: llm.model.clone().unwrap_or_else(|| "default".into()),
                    api_key,
                    context_tokens: llm.context_tokens,
                    policy_version_header: llm.policy_version_header.clone(),
                    // One episode's requests: a refused connection is an infra error
                    // after a few quick tries, not after minutes.
                    max_attempts: 3,
                    ..OpenAiConfig::default()
                };
                let p = OpenAiPolicy::new(config, self.codec.clone())
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Ok(Arc::new(p))
            }
        }
    }

    /// The settings of one request: the defaults with its sampling and limits.
    fn config(&self, llm: Option<&LlmSpec>, limits: &Limits, seed: u64) -> SelfPlayConfig {
        let mut cfg = self.defaults.clone();
        cfg.seed = seed;
        if let Some(s) = llm.map(|l| &l.sampling) {
            if let Some(t) = s.temperature {
                cfg.temperature = t;
            }
            if let Some(p) = s.top_p {
                cfg.top_p = p;
            }
            if let Some(m) = s.max_tokens {
                cfg.injector_budgets.max_new_tokens = m;
                cfg.solver_budgets.max_new_tokens = m;
            }
        }
        for b in [&mut cfg.injector_budgets, &mut cfg.solver_budgets] {
            if let Some(t) = limits.max_turns {
                b.max_turns = t.max(1);
            }
            if let Some(c) = limits.max_context_tokens {
                b.context_tokens = c;
            }
            if let Some(s) = limits.tool_timeout_s {
                b.call_timeout_ms = (s.max(0.001) * 1000.0) as u64;
            }
            if let Some(s) = limits.episode_timeout_s {
                b.episode_timeout_ms = (s.max(0.001) * 1000.0) as u64;
            }
        }
        cfg
    }

    fn table(
        &self,
        cfg: SelfPlayConfig,
        policy: Arc<dyn Policy>,
        repo: &RepoEnv,
        bugs: BugStore,
        shutdown: Shutdown,
    ) -> Table {
        Table {
            config: Arc::new(cfg),
            policy,
            arena: repo.arena.clone(),
            bugs,
            journal: Arc::new(MemoryJournal::default()),
            shutdown,
            progress: Arc::new(NoProgress),
            finished: Arc::new(BTreeMap::new()),
            split: None,
        }
    }

    /// Checks a request before a slot is taken: repository, role, task, and the model
    /// unless the caller brings its own (`/ws`).
    pub fn check_episode(&self, req: &EpisodeRequest, needs_model: bool) -> Result<(), ApiError> {
        let repo = self.repo(&req.repo)?;
        match req.role {
            None => Err(ApiError::BadRequest(
                "`role` is required: `solver` or `injector`".into(),
            )),
            Some(Role::Solver) => {
                let id = req.task_id.as_deref().ok_or_else(|| {
                    ApiError::BadRequest("a solver episode needs `task_id`".into())
                })?;
                valid_bug(&repo.bugs, id).map(|_| ())
            }
            Some(Role::Injector) => match &req.task_id {
                Some(_) => Err(ApiError::BadRequest(
                    "an injector episode takes no `task_id`".into(),
                )),
                None => Ok(()),
            },
        }?;
        if let Some(id) = &req.episode_id {
            check_name("episode id", id)?;
            // An injector's bug is stored under its episode id. Checked here, before a
            // slot is taken and the answer's status goes out: found later, in the
            // episode, it reached the client as a 200 with `infra_error`, not a 409.
            if req.role == Some(Role::Injector) && stored(&repo.bugs, id) {
                return Err(stored_already(id));
            }
        }
        if needs_model {
            self.policy(req.llm.as_ref(), req.script.as_ref())?;
        }
        Ok(())
    }

    /// The solver's tools as the model sees them (`tools/list` without an episode).
    pub fn tool_specs(&self) -> Vec<ssr_agent::ToolSpec> {
        self.repos
            .values()
            .next()
            .and_then(|r| ssr_agent::wasm_tools::specs_for(&r.arena.tools, Role::Solver).ok())
            .unwrap_or_default()
    }

    /// The budgets an episode of `req` gets (what `/ws` reports as remaining).
    pub fn budgets(&self, req: &EpisodeRequest) -> ssr_agent::Budgets {
        let cfg = self.config(req.llm.as_ref(), &req.limits, req.seed);
        match req.role {
            Some(Role::Injector) => cfg.injector_budgets,
            _ => cfg.solver_budgets,
        }
    }

    /// The tool-call syntax the episodes' prompts teach (what `/ws` converts a direct
    /// tool call into).
    pub fn syntax(&self) -> ssr_agent::ToolCallSyntax {
        self.defaults.syntax
    }

    /// Plays one episode to its end (or until `shutdown`) with `players`: the
    /// request's policy (or a client that samples itself, over `/ws`) and the
    /// repository's arena as the caller watches it.
    pub async fn episode(
        &self,
        req: &EpisodeRequest,
        episode_id: &str,
        players: Players,
        shutdown: Shutdown,
    ) -> Result<EpisodeResult, ApiError> {
        let started = Instant::now();
        let repo = self.repo(&req.repo)?;
        let cfg = self.config(req.llm.as_ref(), &req.limits, req.seed);
        let permits = Arc::new(Semaphore::new(1));
        let mut table = self.table(cfg, players.policy, &repo, repo.bugs.clone(), shutdown);
        table.arena = players.arena;
        let played = match req.role {
            Some(Role::Solver) => {
                let task = req.task_id.clone().unwrap_or_default();
                let bug = Arc::new(valid_bug(&repo.bugs, &task)?);
                let attempt = Attempt {
                    bug_id: task,
                    bug,
                    attempt: 0,
                };
                solver_attempt(&table, 0, attempt, episode_id.into(), permits)
                    .await
                    .map(|d| d.map(solver_result))
            }
            _ => {
                // Also checked by `check_episode`; here for a server-made id.
                if stored(&repo.bugs, episode_id) {
                    return Err(stored_already(episode_id));
                }
                injector_episode(&table, episode_id.into(), permits)
                    .await
                    .map(|d| {
                        d.map(|(done, verdict, bug)| {
                            injector_result(done, &verdict, bug.as_deref())
                        })
                    })
            }
        };
        let mut result = match played {
            Ok(Some(r)) => r,
            Ok(None) => cancelled(episode_id),
            Err(e) => infra(episode_id, &e),
        };
        result.episode_id = episode_id.to_string();
        result.timing.env_s = (started.elapsed().as_secs_f64() - result.timing.llm_s).max(0.0);
        Ok(result)
    }

    /// Plays one self-play round: one injector episode, its verification, G solver
    /// attempts on its bug if valid, their evaluation, and the injector's reward from
    /// the solve rate it observed (SSR_SPEC.md section 7).
    pub async fn round(
        &self,
        req: &RoundRequest,
        round_id: &str,
        shutdown: Shutdown,
    ) -> Result<RoundResult, ApiError> {
        let repo = self.repo(&req.repo)?;
        check_name("round id", round_id)?;
        let policy = self.check_round(req)?;
        let mut cfg = self.config(req.llm.as_ref(), &req.limits, req.seed);
        cfg.injector_rollouts = 1;
        cfg.procedural_per_round = 0;
        cfg.attempts_per_bug = req.g;
        let kind = cfg.injector_reward;
        let width = cfg.max_concurrent_episodes.max(1);
        let bugs = BugStore::new(repo.rounds.join(round_id));
        if bugs.root().exists() {
            return Err(ApiError::Duplicate(format!(
                "round `{round_id}` was played already"
            )));
        }
        let table = self.table(cfg, policy, &repo, bugs, shutdown);
        let permits = Arc::new(Semaphore::new(width));
        let infra_err = |e: SelfPlayError| ApiError::Infra(e.to_string());
        let made = match inject_phase(&table, 0, &permits).await.map_err(infra_err)? {
            Played::Finished(m) => m,
            Played::Interrupted => return Err(ApiError::Cancelled),
        };
        let attempts = attempts_on(&made.bugs, req.g);
        let solvers = match solve_phase(&table, 0, "solve", attempts, &permits)
            .await
            .map_err(infra_err)?
        {
            Played::Finished(s) => s,
            Played::Interrupted => return Err(ApiError::Cancelled),
        };
        let mut round = Round {
            injector_rollouts: 1,
            injectors: made.injectors,
            verdicts: made.verdicts,
            solvers,
            ..Round::default()
        };
        // Infra attempts (the model or the sandbox failed) are left out of the solve
        // rate by the game's one rule (`ssr_game::score`).
        round.reward_injectors(kind, req.g);
        let bug = round.verdicts.first().map(|v| json!(v));
        let mut trajectories = Vec::new();
        let (mut solved, mut attempts) = (0, 0);
        for d in round.solvers {
            let r = solver_result(d.clone());
            if r.status.scored() {
                attempts += 1;
                // Solved is the evaluator's word, never a reward value.
                solved += usize::from(matches!(&d.record.outcome, Outcome::Solver(o) if o.solved));
            }
            trajectories.push(RoundTrajectory {
                group_id: format!("{round_id}/{}", d.record.group_id),
                role: Role::Solver,
                episode: r,
            });
        }
        for d in round.injectors {
            let verdict = round
                .verdicts
                .iter()
                .find(|v| v.bug_id == d.record.episode_id);
            let mut r = match verdict {
                Some(v) => injector_result(d.clone(), v, None),
                None => infra(&d.record.episode_id, &"no verdict was made"),
            };
            if r.status.scored() {
                r.reward = d.record.reward.map(f64::from);
            }
            trajectories.insert(
                0,
                RoundTrajectory {
                    group_id: format!("{round_id}/{}", d.record.group_id),
                    role: Role::Injector,
                    episode: r,
                },
            );
        }
        Ok(RoundResult {
            round_id: round_id.into(),
            bug,
            solved,
            attempts,
            trajectories,
        })
    }

    /// Checks a round request before a slot is taken; its policy.
    pub fn check_round(&self, req: &RoundRequest) -> Result<Arc<dyn Policy>, ApiError> {
        self.repo(&req.repo)?;
        if req.g == 0 || req.g > 64 {
            return Err(ApiError::BadRequest(format!(
                "G = {} is out of range (1 to 64)",
                req.g
            )));
        }
        self.policy(req.llm.as_ref(), req.script.as_ref())
    }

    /// The valid bugs of a repository's store.
    pub fn tasks(&self, repo: &str) -> Result<Vec<Task>, ApiError> {
        let repo = self.repo(repo)?;
        let root = repo.bugs.root();
        if !root.exists() {
            return Ok(Vec::new());
        }
        let dirs = ssr_game::bug_store::list(root).map_err(|e| ApiError::Infra(e.to_string()))?;
        let mut out = Vec::new();
        for dir in dirs {
            let Some(id) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let Ok(Some(v)) = repo.bugs.verdict(&id) else {
                continue;
            };
            if v.valid {
                out.push(Task {
                    task_id: id,
                    repo: repo.name.clone(),
                    role: Role::Solver,
                    source: serde_json::to_value(v.source)
                        .ok()
                        .and_then(|s| s.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    order: v.order,
                    fail_to_pass: v.fail_to_pass,
                    pass_to_pass: v.pass_to_pass.len(),
                });
            }
        }
        Ok(out)
    }

    /// Makes `count` procedural bugs into the store; returns every verdict.
    pub async fn make_tasks(&self, req: &MakeTasks) -> Result<Vec<ssr_game::Verdict>, ApiError> {
        let repo = self.repo(&req.repo)?;
        let order: Vec<Strategy> = match req.strategy.as_deref() {
            None => vec![Strategy::Removal, Strategy::History],
            Some("history") => vec![Strategy::History],
            Some("removal") => vec![Strategy::Removal],
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "strategy `{other}`: use `history` or `removal`"
                )));
            }
        };
        if req.count == 0 || req.count > 64 {
            return Err(ApiError::BadRequest(format!(
                "count = {} is out of range (1 to 64)",
                req.count
            )));
        }
        let mut verdicts = Vec::new();
        for k in 0..req.count {
            let seed = ssr_agent::selfplay::derive_seed(req.seed, &format!("task{k}"));
            let id = format!("proc-{seed:016x}");
            if let Ok(Some(v)) = repo.bugs.verdict(&id) {
                verdicts.push(v);
                continue;
            }
            let judged = repo
                .arena
                .procedural_in_order(&order, seed, &id)
                .await
                .map_err(|e| ApiError::Infra(e.to_string()))?;
            let store = |e: ssr_game::bug_store::StoreError| ApiError::Infra(e.to_string());
            // A verified bug's verdict is its report; only a rejection without one is
            // stored as a verdict (each verdict stored once).
            match &judged.bug {
                Some(bug) => {
                    repo.bugs.write(bug).map_err(store)?;
                }
                None => repo.bugs.write_rejection(&judged.verdict).map_err(store)?,
            }
            verdicts.push(judged.verdict);
        }
        Ok(verdicts)
    }
}

/// Whether the store holds a bug or a verdict under `id`.
fn stored(bugs: &BugStore, id: &str) -> bool {
    bugs.verdict(id).ok().flatten().is_some()
}

fn stored_already(id: &str) -> ApiError {
    ApiError::Duplicate(format!(
        "a bug `{id}` is already stored; choose another episode_id"
    ))
}

/// A valid stored bug, or why a solver cannot attempt it.
fn valid_bug(bugs: &BugStore, id: &str) -> Result<ssr_game::Bug, ApiError> {
    check_name("task", id)?;
    match bugs.verdict(id) {
        Ok(Some(v)) if v.valid => bugs.read(id).map_err(|e| ApiError::Infra(e.to_string())),
        Ok(Some(_)) => Err(ApiError::UnknownTask(format!(
            "task `{id}` is not a valid bug (see GET /v1/tasks)"
        ))),
        Ok(None) | Err(_) => Err(ApiError::UnknownTask(format!(
            "no task `{id}` (see GET /v1/tasks)"
        ))),
    }
}

/// The status an episode's end gives, with the error when it has no reward.
///
/// A model server that could not be reached or answered with an HTTP error is an
/// infrastructure failure; one that answered with something unusable is the agent's
/// (`agent_error`). Neither is a reward.
fn status_of(end: &EpisodeEnd) -> (Status, Option<String>) {
    match end {
        EpisodeEnd::Submitted => (Status::Ok, None),
        EpisodeEnd::TurnsExhausted | EpisodeEnd::ContextExhausted | EpisodeEnd::EpisodeTimeout => {
            (Status::Truncated, None)
        }
        EpisodeEnd::Cancelled => (Status::Cancelled, Some("cancelled".into())),
        EpisodeEnd::PolicyError(e) if e.contains("unexpected response") => {
            (Status::AgentError, Some(e.clone()))
        }
        EpisodeEnd::PolicyError(e) => (Status::InfraError, Some(e.clone())),
    }
}

/// Messages, turns and model time of a transcript.
fn shape(t: &Transcript) -> EpisodeResult {
    let mut turns = Vec::new();
    let mut read: Vec<u32> = Vec::new();
    let mut records = t.turns.iter();
    for seg in &t.segments {
        if seg.sampled {
            let record = records.next();
            let finish = record
                .and_then(|r| serde_json::to_value(r.finish).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "stop".into());
            turns.push(Turn {
                prompt_token_ids: read.clone(),
                completion_token_ids: seg.token_ids.clone(),
                logprobs: seg.logprobs.clone(),
                finish_reason: finish,
                exact_tokens: t.exact_tokens,
                policy_version: record.and_then(|r| r.policy_version.clone()),
            });
        }
        read.extend(&seg.token_ids);
    }
    let (status, error) = status_of(&t.end);
    EpisodeResult {
        episode_id: t.episode_id.clone(),
        status,
        reward: None,
        messages: t.messages.clone(),
        turns,
        result: json!({}),
        timing: Timing {
            llm_s: Duration::from_millis(t.stats.generate_ms).as_secs_f64(),
            env_s: 0.0,
        },
        error,
    }
}

/// A solver attempt as a trainer gets it. An attempt the game scored as infra (the
/// sandbox could not evaluate it) is `infra_error` with no reward, like a model
/// failure.
fn solver_result(d: Done) -> EpisodeResult {
    let Some(t) = d.transcript.as_ref() else {
        return infra(&d.record.episode_id, &"the attempt has no transcript");
    };
    let mut r = shape(t);
    if let Some(reason) = d.record.infra.clone().filter(|_| r.status.scored()) {
        r.status = Status::InfraError;
        r.error = Some(reason);
    }
    if r.status.scored() {
        r.reward = d.record.reward.map(f64::from);
    }
    let outcome = serde_json::to_value(&d.record.outcome).unwrap_or_default();
    r.result = json!({
        "bug_id": d.record.bug_id,
        "patch": d.patch.unwrap_or_default(),
        "evaluation": outcome,
    });
    r
}

/// An injector episode alone: its validity reward (SSR_SPEC.md section 7 with no
/// solver attempts to observe).
fn injector_result(
    d: Done,
    verdict: &ssr_game::Verdict,
    bug: Option<&ssr_game::Bug>,
) -> EpisodeResult {
    let Some(t) = d.transcript.as_ref() else {
        return infra(&d.record.episode_id, &"the episode has no transcript");
    };
    let mut r = shape(t);
    if verdict.is_infra() && r.status.scored() {
        r.status = Status::InfraError;
        r.error = verdict.reason.clone();
    }
    if r.status.scored() {
        r.reward = Some(if verdict.valid { 1.0 } else { -1.0 });
    }
    r.result = json!({
        "bug_id": verdict.bug_id,
        "verdict": verdict,
        "report": bug.map(|b| json!(b.report)),
    });
    r
}

fn cancelled(id: &str) -> EpisodeResult {
    failed(id, Status::Cancelled, "cancelled".into())
}

fn infra(id: &str, e: &dyn std::fmt::Display) -> EpisodeResult {
    failed(id, Status::InfraError, e.to_string())
}

fn failed(id: &str, status: Status, error: String) -> EpisodeResult {
    EpisodeResult::failed(id, status, error)
}

/// Where a repository's stores live under the server's store.
pub fn repo_store(store: &Path, name: &str) -> (BugStore, PathBuf) {
    let dir = store.join(name);
    (BugStore::new(dir.join("bugs")), dir.join("rounds"))
}
