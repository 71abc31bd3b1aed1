//! The [`Arena`] over the real game: `ssr-game`'s verifier, procedural injector,
//! solver episode builder, evaluator and higher-order pool, commands in an
//! `ssr-sandbox` sandbox, episode tools from the WASM tool host ([`WasmTools`]: the
//! injector's and the solver's grants come from the host's policy, and the solver's
//! oracle files and test infrastructure are protected for every tool and in bash).
//!
//! Owns: workspaces per episode (an injector's is an `ssr-repo` snapshot of the
//! repository that keeps `.git`, for history-aware injection; a solver's is the game's
//! history-free copy; both removed when the episode's [`World`] is dropped), where in the workspace the injector's artifact is read
//! (the game reads its files, regular files only), taking the solver's patch (inside
//! the sandbox: the workspace's git is untrusted). Does not own: any rule of the game,
//! or storing bugs (the orchestrator asks `ssr-game`'s [`ssr_game::BugStore`]).

use super::arena::{Arena, ArenaError, BugSource, Judged, SolveOutcome, Verdict, World};
use crate::tools::{SolverSubmission, Submission, Tools};
use crate::wasm_tools::{RunEnvSandbox, SharedHost, WasmTools};
use ssr_game::artifact::MAX_PATCH_BYTES;
use ssr_game::bug_store::{self, BugMeta};
use ssr_game::higher_order::HigherOrderPool;
use ssr_game::inject::{self, InjectConfig, Strategy};
use ssr_game::{
    Artifact, Bug, BugState, EpisodeConfig, Evaluator, Verifier, VerifyConfig, build_episode,
};
use ssr_repo::snapshot::SnapshotBase;
use ssr_sandbox::{Command, ExecSpec, Sandbox};
use ssr_toolhost::{Episode, Policy, Role};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The directory, relative to the workspace, where the injector writes its artifact
/// (the prompt says so, and the `submit` tool checks it unless told another one).
pub const ARTIFACT_DIR: &str = "ssr_artifact";

/// Points the injector's `submit` tool at [`ARTIFACT_DIR`] unless the operator's policy
/// names another directory (the tool's `artifact_dir` setting).
pub fn use_artifact_dir(policy: &mut Policy) {
    if let Some(submit) = policy
        .roles
        .get_mut(&Role::Injector)
        .and_then(|r| r.tools.get_mut("submit"))
    {
        submit
            .config
            .entry("artifact_dir")
            .or_insert_with(|| toml::Value::String(ARTIFACT_DIR.into()));
    }
}

/// The real game.
pub struct GameArena {
    /// The original repository (with its git history).
    pub repo: PathBuf,
    pub repo_name: String,
    pub sandbox: Arc<dyn Sandbox>,
    pub verify: VerifyConfig,
    pub episode: EpisodeConfig,
    /// Where episode workspaces are made.
    pub scratch: PathBuf,
    /// The WASM tool host every episode's tools run in (grants from its policy).
    pub tools: Arc<SharedHost>,
    /// Candidates the procedural injector tries per bug.
    pub procedural_candidates: usize,
    /// Hashes of the higher-order bugs made so far (shared with the blocking job that
    /// makes the next one).
    pub pool: Arc<Mutex<HigherOrderPool>>,
    /// Snapshots of the repository with its `.git`, for injector workspaces (probed on
    /// first use; start with `Default::default()`).
    pub injector_base: OnceLock<SnapshotBase>,
}

/// Where the game's commands run: the sandbox and the run environment every test run
/// and agent shell command gets.
pub struct Stage {
    pub sandbox: Arc<dyn Sandbox>,
    pub run_env: ssr_game::RunEnv,
}

/// Why the real game could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OpenArenaError {
    #[error("no sandbox backend (install bubblewrap): {0}")]
    Sandbox(#[from] ssr_sandbox::SandboxError),
    #[error("starting the WASM tool host: {0}")]
    Tools(#[from] ssr_toolhost::ToolHostError),
    #[error("repository {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("making the repository's Rust dependencies available offline: {0}")]
    Dependencies(#[from] ssr_game::vendor::VendorError),
}

/// The WASM tool host of a run: the standard tools, the custom tools found in the
/// configured folders, grants from the policy file (or the built-in one).
pub fn tool_host(cfg: &super::SelfPlayConfig) -> Result<Arc<SharedHost>, OpenArenaError> {
    let mut policy = match &cfg.tools_policy {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default(),
    };
    use_artifact_dir(&mut policy);
    let host = ssr_toolhost::ToolHost::new(ssr_toolhost::HostConfig {
        policy,
        tool_dirs: cfg.tools_dirs.clone(),
        ..ssr_toolhost::HostConfig::default()
    })?;
    Ok(SharedHost::new(host))
}

impl GameArena {
    /// The real game over `repo` with `cfg`'s settings: a bubblewrap sandbox running
    /// with the host's toolchains and `cfg.test_env`, episode workspaces under
    /// `scratch`, tools from `tools` (one host may serve several arenas).
    pub fn open(
        cfg: &super::SelfPlayConfig,
        repo: &Path,
        scratch: PathBuf,
        tools: Arc<SharedHost>,
    ) -> Result<GameArena, OpenArenaError> {
        let sandbox = ssr_sandbox::default_sandbox(ssr_sandbox::Environment::default())?;
        let stage = Stage {
            sandbox: Arc::from(sandbox),
            run_env: ssr_game::RunEnv::host_toolchains().with_cargo_deps(repo)?,
        };
        Self::open_on(cfg, repo, scratch, tools, stage)
    }

    /// As [`GameArena::open`], with commands run on `stage` (an image's environment,
    /// `ssr_game::image::ImageGame`) and `cfg.test_env` added to its run environment.
    pub fn open_on(
        cfg: &super::SelfPlayConfig,
        repo: &Path,
        scratch: PathBuf,
        tools: Arc<SharedHost>,
        stage: Stage,
    ) -> Result<GameArena, OpenArenaError> {
        if !repo.is_dir() {
            return Err(OpenArenaError::NotADirectory(repo.to_path_buf()));
        }
        let Stage {
            sandbox,
            mut run_env,
        } = stage;
        run_env.env.extend(cfg.test_env.clone());
        let verify = VerifyConfig {
            min_passing_tests: cfg.min_passing_tests,
            // One setting for both sides: the verifier rejects an artifact with a
            // finding, and the evaluator (same config) scores such a patch tampered.
            reject_tampering_findings: cfg.reject_tampering,
            run_env,
            ..VerifyConfig::default()
        };
        Ok(GameArena {
            repo_name: repo
                .file_name()
                .map_or_else(|| "repo".into(), |n| n.to_string_lossy().into_owned()),
            repo: repo.to_path_buf(),
            sandbox,
            verify,
            episode: EpisodeConfig::default(),
            scratch,
            tools,
            procedural_candidates: 12,
            pool: Default::default(),
            injector_base: Default::default(),
        })
    }
}

/// Runs blocking game work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ArenaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| ArenaError::Task { what, source })
}

impl GameArena {
    /// The episode's WASM tools: `oracle_files` (repository-relative) stay read-only
    /// for every tool and in the bash shim's sandbox, on top of the role's protected
    /// globs; editor undo state lives in `state_dir`, outside the repository.
    fn tools(
        &self,
        workspace: &Path,
        role: Role,
        oracle_files: Vec<String>,
        state_dir: PathBuf,
        cancel: &ssr_sandbox::Cancel,
        target: Option<&ssr_game::build_cache::TargetLayer>,
    ) -> Result<Arc<dyn Tools>, ArenaError> {
        let env = &self.verify.run_env;
        let (mut vars, mut mounts) = (env.env.clone(), env.mounts.clone());
        if let Some(t) = target {
            use ssr_game::build_cache::{TARGET_GUEST, TARGET_VAR};
            mounts.push(t.mount());
            vars.insert(TARGET_VAR.into(), TARGET_GUEST.into());
        }
        let sandbox = RunEnvSandbox {
            inner: self.sandbox.clone(),
            env: vars,
            mounts,
            memory_bytes: env.memory_bytes,
            pids: env.pids,
            cancel: cancel.clone(),
        };
        let episode = Episode {
            role,
            repo: workspace.to_path_buf(),
            state_dir: Some(state_dir),
            oracle_files,
            sandbox: Some(Arc::new(sandbox)),
            workspace_guest: PathBuf::from("/repo"),
        };
        Ok(Arc::new(
            WasmTools::new(self.tools.clone(), episode)?.interrupted_by(cancel.clone()),
        ))
    }

    /// A procedural bug from the first of `order`'s strategies that makes one (the
    /// environment server's `POST /v1/tasks` names one strategy).
    pub async fn procedural_in_order(
        &self,
        order: &[Strategy],
        seed: u64,
        bug_id: &str,
    ) -> Result<Judged, ArenaError> {
        let mut misses = Vec::new();
        for &strategy in order {
            let bug = match self.procedural_with(strategy, seed).await? {
                Ok(bug) => bug,
                Err(miss) => {
                    misses.push(miss);
                    continue;
                }
            };
            let meta = self.meta(
                bug_id,
                BugSource::Procedural,
                Some(strategy.name().into()),
                Some(seed),
                &bug.candidate,
            );
            return Ok(Judged::made(Bug {
                artifact: bug.artifact,
                report: bug.report,
                meta,
                higher_order_patch: None,
            }));
        }
        // `procedural_failed` only when no strategy even ran its candidates.
        let code = if misses.iter().any(|(c, _)| *c == "procedural_none") {
            "procedural_none"
        } else {
            "procedural_failed"
        };
        let reason = misses
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Judged::rejected(Verdict::rejected(
            bug_id,
            BugSource::Procedural,
            code,
            reason,
        )))
    }

    fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, ArenaError> {
        std::fs::create_dir_all(&self.scratch).map_err(|source| ArenaError::Io {
            what: "creating the scratch directory",
            source,
        })?;
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.scratch)
            .map_err(|source| ArenaError::Io {
                what: "creating a workspace",
                source,
            })
    }

    fn meta(
        &self,
        id: &str,
        source: BugSource,
        strategy: Option<String>,
        seed: Option<u64>,
        candidate: &str,
    ) -> BugMeta {
        BugMeta {
            source: Some(source),
            id: id.to_string(),
            strategy,
            seed,
            candidate: candidate.to_string(),
            repo: self.repo_name.clone(),
            repo_path: self.repo.display().to_string(),
            base_commit: bug_store::head_commit(&self.repo),
            framework: None,
        }
    }
}

impl GameArena {
    /// The solver's changes to its workspace, taken inside the sandbox: its `.git` is
    /// untrusted (hooks and config could run code on the host). Empty when the diff
    /// fails or is cut.
    async fn workspace_patch(&self, world: &World) -> Result<String, ArenaError> {
        let mut spec = ExecSpec::new(
            Command::Script("git add -A >/dev/null 2>&1 && git diff --cached --binary HEAD".into()),
            &world.workspace,
        );
        spec.env = self.verify.run_env.env.clone();
        spec.mounts = self.verify.run_env.mounts.clone();
        spec.limits.output_bytes = MAX_PATCH_BYTES as usize;
        spec.limits.timeout = std::time::Duration::from_secs(60);
        let sandbox = self.sandbox.clone();
        let out = blocking("taking the solver's patch", move || sandbox.exec(&spec)).await??;
        Ok(if out.success() && !out.truncated {
            out.stdout
        } else {
            String::new()
        })
    }
}

/// `relative` inside `workspace`, refusing absolute paths, `..` and any symlink on the
/// way (a symlinked directory could lead to host files).
fn inside_workspace(workspace: &Path, relative: &str) -> Result<PathBuf, String> {
    let mut p = workspace.to_path_buf();
    for c in Path::new(relative).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => {
                p.push(part);
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(format!("`{relative}` goes through a symbolic link"));
                }
            }
            _ => return Err(format!("`{relative}` is not a path inside the repository")),
        }
    }
    Ok(p)
}

/// Reads the patch file a solver submitted: a regular file, bounded in size.
fn read_patch_file(path: &Path, shown: &str) -> Result<Vec<u8>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && m.len() <= MAX_PATCH_BYTES => {
            std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
        }
        Ok(m) if m.file_type().is_file() => Err(format!(
            "{shown} is larger than {} MiB",
            MAX_PATCH_BYTES >> 20
        )),
        Ok(_) => Err(format!("{shown} is not a regular file")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

impl GameArena {
    /// One procedural injection with `strategy`: the bug, or why there was none
    /// (`procedural_none` when candidates were tried, `procedural_failed` when the
    /// injector could not run).
    async fn procedural_with(
        &self,
        strategy: Strategy,
        seed: u64,
    ) -> Result<Result<inject::InjectedBug, (&'static str, String)>, ArenaError> {
        let cfg = InjectConfig {
            strategy,
            count: 1,
            seed,
            max_candidates: self.procedural_candidates,
            verify: self.verify.clone(),
        };
        let (sandbox, repo) = (self.sandbox.clone(), self.repo.clone());
        let run = blocking("procedural injection", move || {
            inject::inject(sandbox.as_ref(), &repo, &cfg, &mut |_| {})
        })
        .await?;
        Ok(match run {
            Ok(r) => {
                let tried = r.tried.len();
                r.bugs.into_iter().next().ok_or_else(|| {
                    (
                        "procedural_none",
                        format!("no valid {} candidate among {tried} tried", strategy.name()),
                    )
                })
            }
            Err(e) => Err(("procedural_failed", format!("{}: {e}", strategy.name()))),
        })
    }
}

#[async_trait::async_trait]
impl Arena for GameArena {
    fn repo_name(&self) -> String {
        self.repo_name.clone()
    }

    async fn injector_world(&self, _episode_id: &str) -> Result<World, ArenaError> {
        let dir = self.scratch_dir("inj-")?;
        let base = match self.injector_base.get() {
            Some(b) => b.clone(),
            None => {
                // Not `hiding(".git")`: the injector reads history (history-aware
                // injection); the solver's workspace and every test run hide it.
                let (repo, scratch) = (self.repo.clone(), self.scratch.join("snapshots"));
                let b = blocking("probing snapshots", move || {
                    SnapshotBase::new(&repo, &scratch)
                })
                .await??;
                self.injector_base.get_or_init(|| b).clone()
            }
        };
        let snapshot = blocking("snapshotting the repository", move || base.snapshot()).await??;
        let ws = snapshot.path().to_path_buf();
        let cancel = ssr_sandbox::Cancel::default();
        let state = dir.path().join("state");
        let tools = self.tools(&ws, Role::Injector, Vec::new(), state, &cancel, None)?;
        Ok(World {
            workspace: ws,
            tools,
            cancel,
            // The snapshot goes first (unmounted and removed), then the state directory.
            guard: Box::new((snapshot, dir)),
        })
    }

    async fn verify_submission(&self, world: &World, bug_id: &str) -> Result<Judged, ArenaError> {
        let directory = match world.tools.submission() {
            Some(Submission::Artifact { directory }) => directory,
            _ => ARTIFACT_DIR.to_string(),
        };
        let unreadable = |e: String| {
            Judged::rejected(Verdict::rejected(
                bug_id,
                BugSource::Model,
                "artifact_unreadable",
                e,
            ))
        };
        let dir = match inside_workspace(&world.workspace, &directory) {
            Ok(d) => d,
            Err(e) => return Ok(unreadable(e)),
        };
        let artifact = match Artifact::read_submitted(&dir) {
            Ok(a) => a,
            Err(e) => return Ok(unreadable(e.to_string())),
        };
        let (sandbox, cfg, repo) = (self.sandbox.clone(), self.verify.clone(), self.repo.clone());
        let a = artifact.clone();
        let report = blocking("verifying", move || {
            Verifier::new(sandbox.as_ref(), cfg).verify(&repo, &a)
        })
        .await?;
        Ok(Judged::made(Bug {
            artifact,
            report,
            meta: self.meta(bug_id, BugSource::Model, None, None, "model"),
            higher_order_patch: None,
        }))
    }

    async fn procedural_bug(&self, seed: u64, bug_id: &str) -> Result<Judged, ArenaError> {
        // The seed picks which strategy goes first; the other is tried when the first
        // finds nothing. Why: a repository with a short or absent git history has no
        // history candidates at all, and every other round would make no bug.
        let order = if seed.is_multiple_of(2) {
            [Strategy::Removal, Strategy::History]
        } else {
            [Strategy::History, Strategy::Removal]
        };
        self.procedural_in_order(&order, seed, bug_id).await
    }

    async fn solver_world(
        &self,
        bug: &Bug,
        _episode_id: &str,
    ) -> Result<(World, String), ArenaError> {
        let dir = self.scratch_dir("sol-")?;
        let dest = dir.path().join("repo");
        let (repo, cfg) = (self.repo.clone(), self.episode.clone());
        let (artifact, ho) = (bug.artifact.clone(), bug.higher_order_patch.clone());
        let d = dest.clone();
        let ep = blocking("building the solver workspace", move || {
            build_episode(&repo, &artifact, ho.as_deref(), &cfg, &d)
        })
        .await??;
        let oracle = ep.read_only_paths.clone();
        let cancel = ssr_sandbox::Cancel::default();
        let state = dir.path().join("state");
        // The solver's builds start from the dependency cache: dependency units only,
        // never the crate's own (they would hand the solver the original code). A
        // cache only saves time: one that cannot be layered is done without.
        let target = match &self.verify.run_env.build_cache {
            Some(c) => {
                let (c, scratch) = (c.clone(), self.scratch.join("snapshots"));
                blocking("layering the dependency cache", move || {
                    c.solver_layer(&scratch)
                })
                .await?
                .unwrap_or_else(|e| {
                    eprintln!("ssr: the solver's build cache is not used: {e}");
                    None
                })
            }
            None => None,
        };
        let tools = self.tools(
            &ep.workspace,
            Role::Solver,
            oracle,
            state,
            &cancel,
            target.as_ref(),
        )?;
        Ok((
            World {
                workspace: ep.workspace,
                tools,
                cancel,
                // The layer goes first (unmounted and removed), then the workspace.
                guard: Box::new((target, dir)),
            },
            ep.task,
        ))
    }

    async fn evaluate(&self, bug: &Bug, world: &World) -> Result<SolveOutcome, ArenaError> {
        let t0 = Instant::now();
        let patch = match world.tools.submission() {
            Some(Submission::Solver(SolverSubmission::PatchFile { path })) => {
                // A patch file that cannot be read safely is an empty answer (−1).
                inside_workspace(&world.workspace, &path)
                    .and_then(|p| read_patch_file(&p, &path))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            }
            _ => self.workspace_patch(world).await?,
        };
        let (sandbox, cfg, repo) = (self.sandbox.clone(), self.verify.clone(), self.repo.clone());
        let globs = self.episode.protected_globs.clone();
        let (b, p) = (bug.clone(), patch.clone());
        let eval = blocking("evaluating", move || {
            let tests = b.report.all_tests();
            let state = BugState {
                artifact: &b.artifact,
                higher_order_patch: b.higher_order_patch.as_deref(),
                tests: &tests,
            };
            // The solver's read-only set is the one the evaluator drops patch sections
            // for, and the log must keep the format verification saw.
            Evaluator::new(sandbox.as_ref(), cfg)
                .with_protected_globs(globs)
                .expecting_log_format(b.report.log_format)
                .evaluate(&repo, state, &p)
        })
        .await?;
        Ok(SolveOutcome {
            score: eval.score(),
            patch,
            summary: eval.summary(),
            evaluate_ms: t0.elapsed().as_millis() as u64,
        })
    }

    async fn higher_order(
        &self,
        parent_id: &str,
        parent: &Bug,
        failed_patch: &str,
        bug_id: &str,
    ) -> Result<Judged, ArenaError> {
        let t0 = Instant::now();
        let (sandbox, cfg, repo, patch) = (
            self.sandbox.clone(),
            self.verify.clone(),
            self.repo.clone(),
            failed_patch.to_string(),
        );
        let (pool, globs, p) = (
            self.pool.clone(),
            self.episode.protected_globs.clone(),
            parent.clone(),
        );
        // The pool stays in its mutex while the job runs (a panicking job poisons it
        // rather than losing it); higher-order bugs are made one at a time anyway.
        let made = blocking("making a higher-order bug", move || {
            let mut pool = pool.lock().map_err(|_| ArenaError::PoolPoisoned)?;
            let tests = p.report.all_tests();
            Ok::<_, ArenaError>(
                pool.make(
                    &Evaluator::new(sandbox.as_ref(), cfg)
                        .with_protected_globs(globs)
                        .expecting_log_format(p.report.log_format),
                    &repo,
                    &p.artifact,
                    p.order(),
                    &tests,
                    &patch,
                ),
            )
        })
        .await??;
        let bug = match made {
            Ok(bug) => bug,
            Err(rejection) => {
                return Ok(Judged::rejected(Verdict::rejected(
                    bug_id,
                    BugSource::HigherOrder,
                    &format!("higher_order_{}", rejection.code()),
                    rejection.to_string(),
                )));
            }
        };
        let meta = self.meta(
            bug_id,
            BugSource::HigherOrder,
            None,
            None,
            &format!("higher-order of {parent_id}"),
        );
        Ok(Judged::made(Bug {
            artifact: parent.artifact.clone(),
            report: bug.report(&parent.report, t0.elapsed().as_millis() as u64),
            meta,
            higher_order_patch: Some(bug.patch),
        }))
    }
}
