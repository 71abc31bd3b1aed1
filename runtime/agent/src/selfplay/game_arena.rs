//! The [`Arena`] over the real game: `ssr-game`'s verifier, procedural injector,
//! solver episode builder, evaluator and higher-order pool, commands in an
//! `ssr-sandbox` sandbox, episode tools from the WASM tool host ([`WasmTools`]: the
//! injector's and the solver's grants come from the host's policy, and the solver's
//! oracle files and test infrastructure are protected for every tool and in bash).
//!
//! Owns: workspaces per episode (temporary copies, removed when the episode's
//! [`World`] is dropped), reading the injector's artifact safely (regular files only),
//! taking the solver's patch (inside the sandbox: the workspace's git is untrusted),
//! storing bugs in the run directory in `ssr-game`'s bug-store layout. Does not own:
//! any rule of the game.

use super::arena::{Arena, ArenaError, BugSource, SolveOutcome, Verdict, World};
use crate::tools::Tools;
use crate::wasm_tools::{RunEnvSandbox, SharedHost, WasmTools};
use ssr_game::bug_store::{self, BugMeta};
use ssr_game::higher_order::HigherOrderPool;
use ssr_game::inject::{self, InjectConfig, Strategy};
use ssr_game::{
    Artifact, BugState, EpisodeConfig, Evaluator, VerificationReport, Verifier, VerifyConfig,
    build_episode,
};
use ssr_sandbox::{Command, ExecSpec, Sandbox};
use ssr_toolhost::{Episode, Policy, Role};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Name of the file holding a higher-order bug's failed patch, next to its artifact.
pub const HIGHER_ORDER_PATCH: &str = "higher_order.diff";

/// The directory, relative to the workspace, where the injector writes its artifact
/// (the prompt says so, and the `submit` tool checks it unless told another one).
pub const ARTIFACT_DIR: &str = "ssr_artifact";
/// Files of an artifact (either spelling of SSR_SPEC.md section 2 counts).
pub const ARTIFACT_FILES: [(&str, &str); 5] = [
    ("test_script.sh", "test_script.sh"),
    ("test_files.txt", "test_files.txt"),
    ("test_parser.py", "parse_test_output.py"),
    ("bug_inject.diff", "bug_patch.diff"),
    ("test_weaken.diff", "test_patch.diff"),
];
/// Largest artifact file or submitted patch file read from a workspace.
const MAX_SUBMITTED_FILE: u64 = 8 << 20;

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
    pub pool: Mutex<HigherOrderPool>,
}

fn fail(what: &str) -> impl Fn(String) -> ArenaError + '_ {
    move |reason| ArenaError::failed(what, reason)
}

/// Runs blocking game work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ArenaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArenaError::failed(what, e))?
        .map_err(fail(what))
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
    ) -> Result<Arc<dyn Tools>, ArenaError> {
        let env = &self.verify.run_env;
        let sandbox = RunEnvSandbox {
            inner: self.sandbox.clone(),
            env: env.env.clone(),
            mounts: env.mounts.clone(),
            memory_bytes: env.memory_bytes,
            pids: env.pids,
        };
        let episode = Episode {
            role,
            repo: workspace.to_path_buf(),
            state_dir: Some(state_dir),
            oracle_files,
            sandbox: Some(Arc::new(sandbox)),
            workspace_guest: PathBuf::from("/repo"),
        };
        let tools = WasmTools::new(self.tools.clone(), episode)
            .map_err(|e| ArenaError::failed("setting up the episode's tools", e))?;
        Ok(Arc::new(tools))
    }

    fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, ArenaError> {
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| ArenaError::failed("creating the scratch directory", e))?;
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.scratch)
            .map_err(|e| ArenaError::failed("creating a workspace", e))
    }

    fn meta(
        &self,
        id: &str,
        strategy: Option<String>,
        seed: Option<u64>,
        candidate: &str,
    ) -> BugMeta {
        BugMeta {
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
        spec.limits.output_bytes = 16 << 20;
        spec.limits.timeout = std::time::Duration::from_secs(60);
        let sandbox = self.sandbox.clone();
        let out = blocking("taking the solver's patch", move || {
            sandbox.exec(&spec).map_err(|e| e.to_string())
        })
        .await?;
        Ok(if out.success() && !out.truncated {
            out.stdout
        } else {
            String::new()
        })
    }
}

fn verdict_of(bug_id: &str, source: BugSource, order: u8, r: &VerificationReport) -> Verdict {
    Verdict {
        bug_id: bug_id.to_string(),
        source,
        valid: r.valid,
        reason: r.reason.clone(),
        reason_code: r
            .code
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        order,
        fail_to_pass: r.fail_to_pass.clone(),
        pass_to_pass: r.pass_to_pass.clone(),
        verify_ms: r.wall_ms,
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

/// Reads a regular file the model submitted, bounded in size.
fn read_submitted(path: &Path, shown: &str) -> Result<Vec<u8>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && m.len() <= MAX_SUBMITTED_FILE => {
            std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
        }
        Ok(m) if m.file_type().is_file() => Err(format!("{shown} is larger than 8 MiB")),
        Ok(_) => Err(format!("{shown} is not a regular file")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Copies the injector's artifact files out of `directory` (workspace-relative) into
/// `dest`, refusing anything that is not a regular file.
fn stage_artifact(workspace: &Path, directory: &str, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let src = inside_workspace(workspace, directory)?;
    for (a, b) in ARTIFACT_FILES {
        for name in [a, b] {
            let p = src.join(name);
            if std::fs::symlink_metadata(&p).is_err() {
                continue;
            }
            let bytes = read_submitted(&p, &format!("{directory}/{name}"))?;
            std::fs::write(dest.join(name), bytes).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Copies a directory tree with `cp -a` (keeps the git history of the original).
fn copy_repo(from: &Path, to: &Path) -> Result<(), String> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Loads a stored bug: the artifact, its report, and a higher-order patch if any.
fn load_bug(dir: &Path) -> Result<(Artifact, VerificationReport, Option<String>), String> {
    let stored = bug_store::read(dir).map_err(|e| e.to_string())?;
    let ho = std::fs::read_to_string(dir.join(HIGHER_ORDER_PATCH)).ok();
    Ok((stored.artifact, stored.report, ho))
}

#[async_trait::async_trait]
impl Arena for GameArena {
    fn repo_name(&self) -> String {
        self.repo_name.clone()
    }

    async fn injector_world(&self, _episode_id: &str) -> Result<World, ArenaError> {
        let dir = self.scratch_dir("inj-")?;
        let ws = dir.path().join("repo");
        std::fs::create_dir_all(&ws)
            .map_err(|e| ArenaError::failed("creating the injector workspace", e))?;
        let (from, to) = (self.repo.clone(), ws.clone());
        blocking("copying the repository", move || copy_repo(&from, &to)).await?;
        let tools = self.tools(&ws, Role::Injector, Vec::new(), dir.path().join("state"))?;
        Ok(World {
            workspace: ws,
            tools,
            guard: Box::new(dir),
        })
    }

    async fn verify_submission(
        &self,
        world: &World,
        bug_id: &str,
        bug_dir: &Path,
    ) -> Result<Verdict, ArenaError> {
        let staging = self.scratch_dir("artifact-")?;
        let submitted = world.tools.submission();
        let directory = submitted
            .as_ref()
            .and_then(|s| s["directory"].as_str())
            .unwrap_or(ARTIFACT_DIR)
            .to_string();
        if let Err(e) = stage_artifact(&world.workspace, &directory, staging.path()) {
            return Ok(Verdict::rejected(
                bug_id,
                BugSource::Model,
                "artifact_unreadable",
                e,
            ));
        }
        let artifact = match Artifact::read_dir(staging.path()) {
            Ok(a) => a,
            Err(e) => {
                return Ok(Verdict::rejected(
                    bug_id,
                    BugSource::Model,
                    "artifact_unreadable",
                    e.to_string(),
                ));
            }
        };
        let (sandbox, cfg, repo) = (self.sandbox.clone(), self.verify.clone(), self.repo.clone());
        let a = artifact.clone();
        let report = blocking("verifying", move || {
            Ok(Verifier::new(sandbox.as_ref(), cfg).verify(&repo, &a))
        })
        .await?;
        let root = bug_dir.parent().unwrap_or(bug_dir);
        bug_store::write(
            root,
            &artifact,
            &report,
            &self.meta(bug_id, None, None, "model"),
        )
        .map_err(|e| ArenaError::failed("storing the bug", e))?;
        Ok(verdict_of(bug_id, BugSource::Model, 1, &report))
    }

    async fn procedural_bug(
        &self,
        seed: u64,
        bug_id: &str,
        bug_dir: &Path,
    ) -> Result<Verdict, ArenaError> {
        // The seed picks which strategy goes first; the other is tried when the first
        // finds nothing. Why: a repository with a short or absent git history has no
        // history candidates at all, and every other round would make no bug.
        let order = if seed.is_multiple_of(2) {
            [Strategy::Removal, Strategy::History]
        } else {
            [Strategy::History, Strategy::Removal]
        };
        let mut misses = Vec::new();
        let mut found = None;
        for strategy in order {
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
                    .map_err(|e| e.to_string())
            })
            .await;
            match run {
                Ok(r) => match r.bugs.into_iter().next() {
                    Some(bug) => {
                        found = Some((strategy, bug));
                        break;
                    }
                    None => misses.push((
                        "procedural_none",
                        format!(
                            "no valid {} candidate among {} tried",
                            strategy.name(),
                            r.tried.len()
                        ),
                    )),
                },
                Err(e) => misses.push(("procedural_failed", format!("{}: {e}", strategy.name()))),
            }
        }
        let Some((strategy, bug)) = found else {
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
            return Ok(Verdict::rejected(
                bug_id,
                BugSource::Procedural,
                code,
                reason,
            ));
        };
        let root = bug_dir.parent().unwrap_or(bug_dir);
        let meta = self.meta(
            bug_id,
            Some(strategy.name().into()),
            Some(seed),
            &bug.candidate,
        );
        bug_store::write(root, &bug.artifact, &bug.report, &meta)
            .map_err(|e| ArenaError::failed("storing the bug", e))?;
        Ok(verdict_of(bug_id, BugSource::Procedural, 1, &bug.report))
    }

    async fn solver_world(
        &self,
        bug_dir: &Path,
        _episode_id: &str,
    ) -> Result<(World, String), ArenaError> {
        let (artifact, _, ho) = load_bug(bug_dir).map_err(fail("reading the bug"))?;
        let dir = self.scratch_dir("sol-")?;
        let dest = dir.path().join("repo");
        let (repo, cfg) = (self.repo.clone(), self.episode.clone());
        let d = dest.clone();
        let ep = blocking("building the solver workspace", move || {
            build_episode(&repo, &artifact, ho.as_deref(), &cfg, &d).map_err(|e| e.to_string())
        })
        .await?;
        let oracle = ep.read_only_paths.clone();
        let tools = self.tools(
            &ep.workspace,
            Role::Solver,
            oracle,
            dir.path().join("state"),
        )?;
        Ok((
            World {
                workspace: ep.workspace,
                tools,
                guard: Box::new(dir),
            },
            ep.task,
        ))
    }

    async fn evaluate(&self, bug_dir: &Path, world: &World) -> Result<SolveOutcome, ArenaError> {
        let t0 = Instant::now();
        let patch = match world.tools.submission() {
            Some(s) if s["kind"] == "patch_file" => {
                let path = s["path"].as_str().unwrap_or_default();
                // A patch file that cannot be read safely is an empty answer (−1).
                inside_workspace(&world.workspace, path)
                    .and_then(|p| read_submitted(&p, path))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            }
            _ => self.workspace_patch(world).await?,
        };
        let (artifact, report, ho) = load_bug(bug_dir).map_err(fail("reading the bug"))?;
        let (sandbox, cfg, repo) = (self.sandbox.clone(), self.verify.clone(), self.repo.clone());
        let globs = self.episode.protected_globs.clone();
        let p = patch.clone();
        let eval = blocking("evaluating", move || {
            let tests = report.all_tests();
            let state = BugState {
                artifact: &artifact,
                higher_order_patch: ho.as_deref(),
                tests: &tests,
            };
            // The solver's read-only set is the one the evaluator drops patch sections
            // for, and the log must keep the format verification saw.
            Ok(Evaluator::new(sandbox.as_ref(), cfg)
                .with_protected_globs(globs)
                .expecting_log_format(report.log_format)
                .evaluate(&repo, state, &p))
        })
        .await?;
        Ok(SolveOutcome {
            solved: eval.solved,
            patch,
            summary: eval.summary(),
            evaluate_ms: t0.elapsed().as_millis() as u64,
        })
    }

    async fn higher_order(
        &self,
        parent_dir: &Path,
        failed_patch: &str,
        bug_id: &str,
        dest_dir: &Path,
    ) -> Result<Verdict, ArenaError> {
        let t0 = Instant::now();
        let (artifact, report, parent_ho) =
            load_bug(parent_dir).map_err(fail("reading the parent bug"))?;
        let parent_order = if parent_ho.is_some() { 2 } else { 1 };
        let pool = std::mem::take(
            &mut *self
                .pool
                .lock()
                .map_err(|_| ArenaError::failed("higher-order pool", "lock poisoned"))?,
        );
        let (sandbox, cfg, repo, patch) = (
            self.sandbox.clone(),
            self.verify.clone(),
            self.repo.clone(),
            failed_patch.to_string(),
        );
        let globs = self.episode.protected_globs.clone();
        let a = artifact.clone();
        let r = report.clone();
        let (pool, made) = blocking("making a higher-order bug", move || {
            let mut pool = pool;
            let tests = r.all_tests();
            let made = pool.make(
                &Evaluator::new(sandbox.as_ref(), cfg)
                    .with_protected_globs(globs)
                    .expecting_log_format(r.log_format),
                &repo,
                &a,
                parent_order,
                &tests,
                &patch,
            );
            Ok((pool, made))
        })
        .await?;
        if let Ok(mut slot) = self.pool.lock() {
            *slot = pool;
        }
        match made {
            Ok(bug) => {
                let root = dest_dir.parent().unwrap_or(dest_dir);
                bug_store::write(
                    root,
                    &artifact,
                    &report,
                    &self.meta(
                        bug_id,
                        None,
                        None,
                        &format!("higher-order of {}", parent_dir.display()),
                    ),
                )
                .map_err(|e| ArenaError::failed("storing the bug", e))?;
                std::fs::write(dest_dir.join(HIGHER_ORDER_PATCH), &bug.patch)
                    .map_err(|e| ArenaError::failed("storing the bug", e))?;
                let still: std::collections::BTreeSet<&String> = bug.still_failing.iter().collect();
                let all = report.all_tests();
                Ok(Verdict {
                    bug_id: bug_id.to_string(),
                    source: BugSource::HigherOrder,
                    valid: true,
                    reason: None,
                    reason_code: None,
                    order: bug.order,
                    fail_to_pass: bug.still_failing.clone(),
                    pass_to_pass: all.into_iter().filter(|t| !still.contains(t)).collect(),
                    verify_ms: t0.elapsed().as_millis() as u64,
                })
            }
            Err(rejection) => {
                let code = serde_json::to_value(&rejection)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "higher_order".into());
                Ok(Verdict::rejected(
                    bug_id,
                    BugSource::HigherOrder,
                    &format!("higher_order_{code}"),
                    rejection.to_string(),
                ))
            }
        }
    }
}
