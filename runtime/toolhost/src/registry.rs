//! The [`ToolHost`]: loads the standard and custom tools once (contract check, compile
//! or cache hit, pre-instantiation, `describe`), and runs calls for an [`Episode`]
//! under the grant the policy gives the episode's role.
//!
//! Does not own the limits' mechanics (`call`), the write checks (`grants`) or the
//! sandbox (`exec` forwards to any `Sandbox`).

use crate::bindings::Host_Pre as HostPre;
use crate::cache::{CacheOutcome, ComponentCache};
use crate::call::{
    self, Answer, CallProfile, CallSetup, CallState, Failure, Invocation, Placement, Runner,
};
use crate::contract::{self, ContractImports};
use crate::engine::ToolEngine;
use crate::episode::{Episode, HostConfig, ToolOrigin, ToolReply};
use crate::error::ToolHostError;
use crate::exec::ExecGrant;
use crate::grants::{Protected, WorkspaceGrant};
use crate::manifest::Manifest;
use crate::output::BoundedOutput;
use crate::policy::{CallLimits, EffectiveGrant, Policy, RepoAccess, Role, ToolGrantSpec};
use crate::workers::Workers;
use crate::{Description, standard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Limits of the load-time `describe` call.
const DESCRIBE_LIMITS: CallLimits = CallLimits {
    cpu_ms: 2_000,
    memory_bytes: 64 << 20,
    output_bytes: 64 << 10,
    wall_ms: 10_000,
    host_calls: 100_000,
    table_entries: 256,
};

/// Guest path of the per-tool scratch directory.
pub const STATE_GUEST_DIR: &str = "/state";

/// A tool ready to call.
pub struct LoadedTool {
    pub description: Description,
    pub origin: ToolOrigin,
    /// The component file (for standard tools: where it was built).
    pub component_path: PathBuf,
    /// What the tool asks for (standard: built in; custom: its manifest).
    pub asked: ToolGrantSpec,
    /// The manifest's limit ceiling, for custom tools.
    pub asked_limits: Option<CallLimits>,
    /// The `ssr:tool` interfaces it imports.
    pub imports: ContractImports,
    /// How the compiled component was obtained.
    pub cache: CacheOutcome,
    pre: HostPre<CallState>,
    /// One of this binary's own standard tools, whose guests cannot wait on anything
    /// the watchdog's signal does not interrupt (see [`ToolHost::placement`]). Only
    /// [`ToolHost::new`] sets it: a component passed to [`ToolHost::load`] is never
    /// trusted this way, whatever origin it claims.
    inline_safe: bool,
}

impl std::fmt::Debug for LoadedTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTool")
            .field("name", &self.description.name)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LoadedTool {
    pub fn name(&self) -> &str {
        &self.description.name
    }
}

/// How a call was asked for.
#[derive(Clone, Copy, Debug, Default)]
struct CallHow {
    /// Fill the profile's CPU times.
    measure_cpu: bool,
    /// The caller vouched that its thread may block (`call_blocking`).
    blocking_thread: bool,
}

/// The tool host.
pub struct ToolHost {
    engine: ToolEngine,
    workers: Workers,
    linker: Linker<CallState>,
    cache: ComponentCache,
    policy: Policy,
    tools: BTreeMap<String, LoadedTool>,
    /// Each role's protected globs, compiled once.
    protected: BTreeMap<Role, Protected>,
    /// Whether calls may run on the caller's thread (see [`ToolHost::set_inline_calls`]).
    inline_calls: bool,
}

impl std::fmt::Debug for ToolHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolHost")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

// The agent shares one host between threads: the worker pool must not change that.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<ToolHost>();
};

/// What each standard tool asks for.
fn standard_ask(name: &str) -> ToolGrantSpec {
    let mut g = ToolGrantSpec::default();
    match name {
        "bash" => g.exec = true,
        "editor" => {
            g.repo = RepoAccess::Rw;
            g.state = true;
        }
        _ => g.repo = RepoAccess::Ro,
    }
    g
}

impl ToolHost {
    /// Starts the engine and loads the standard tools and every custom tool found.
    pub fn new(config: HostConfig) -> Result<ToolHost, ToolHostError> {
        let engine = ToolEngine::new()?;
        let cache = ComponentCache::new(config.cache_dir.clone(), engine.compatibility_key())?;
        let mut linker: Linker<CallState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| ToolHostError::Engine(format!("linking WASI: {e:#}")))?;
        crate::bindings::Host_::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| ToolHostError::Engine(format!("linking ssr:tool: {e:#}")))?;
        let mut protected = BTreeMap::new();
        for (role, rp) in &config.policy.roles {
            let p = Protected::new(&rp.protected, &[]).map_err(|reason| ToolHostError::Policy {
                path: PathBuf::from("(policy)"),
                reason,
            })?;
            protected.insert(*role, p);
        }
        let mut host = ToolHost {
            engine,
            workers: Workers::new(),
            linker,
            cache,
            policy: config.policy,
            tools: BTreeMap::new(),
            protected,
            inline_calls: true,
        };
        if config.standard_tools {
            for (name, embedded) in standard::EMBEDDED {
                let path = crate::tools_wasm_dir().join(format!("ssr_tool_{name}.wasm"));
                let bytes = match embedded {
                    Some(b) => b.to_vec(),
                    None => std::fs::read(&path)
                        .map_err(|_| ToolHostError::StandardToolMissing(name.to_string()))?,
                };
                host.load_trusted(
                    &bytes,
                    &path,
                    standard_ask(name),
                    None,
                    ToolOrigin::Standard,
                    Some(*name),
                    true,
                )?;
            }
        }
        for dir in &config.tool_dirs {
            for manifest_path in crate::manifest::discover(dir)? {
                host.load_manifest(&manifest_path)?;
            }
        }
        Ok(host)
    }

    /// Loads the custom tool described by a `tool.toml`.
    pub fn load_manifest(&mut self, manifest_path: &Path) -> Result<&LoadedTool, ToolHostError> {
        let manifest = Manifest::from_file(manifest_path)?;
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        let component_path = base.join(&manifest.component);
        let bytes = std::fs::read(&component_path).map_err(|e| ToolHostError::Manifest {
            path: manifest_path.to_path_buf(),
            reason: format!("component `{}`: {e}", component_path.display()),
        })?;
        self.load(
            &bytes,
            &component_path,
            manifest.asked(),
            Some(manifest.limits()),
            ToolOrigin::Custom {
                manifest: manifest_path.to_path_buf(),
            },
            Some(&manifest.name),
        )
    }

    /// Checks, compiles (or loads from the cache), pre-instantiates and describes one
    /// component. `expected_name`, when given, must match what `describe` returns.
    pub fn load(
        &mut self,
        wasm: &[u8],
        path: &Path,
        asked: ToolGrantSpec,
        asked_limits: Option<CallLimits>,
        origin: ToolOrigin,
        expected_name: Option<&str>,
    ) -> Result<&LoadedTool, ToolHostError> {
        self.load_trusted(
            wasm,
            path,
            asked,
            asked_limits,
            origin,
            expected_name,
            false,
        )
    }

    /// [`ToolHost::load`]; `inline_safe` only for the built-in standard tools.
    #[allow(clippy::too_many_arguments)]
    fn load_trusted(
        &mut self,
        wasm: &[u8],
        path: &Path,
        asked: ToolGrantSpec,
        asked_limits: Option<CallLimits>,
        origin: ToolOrigin,
        expected_name: Option<&str>,
        inline_safe: bool,
    ) -> Result<&LoadedTool, ToolHostError> {
        let (component, cache) = self.cache.load(self.engine.engine(), wasm, path)?;
        let imports = contract::check(
            self.engine.engine(),
            &component,
            path,
            asked.repo == RepoAccess::Rw,
            asked.exec,
        )?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(HostPre::new)
            .map_err(|e| ToolHostError::Contract {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        let setup = CallSetup {
            wasi: WasiCtxBuilder::new().build(),
            workspace: None,
            exec: None,
            limits: DESCRIBE_LIMITS,
            stdout: BoundedOutput::new(4096),
            stderr: BoundedOutput::new(4096),
        };
        let placement = self.placement(inline_safe, &setup, false);
        let finished = call::run(
            self.runner(),
            &pre,
            setup,
            Invocation::Describe,
            Instant::now(),
            placement,
            false,
        );
        let description = match finished.answer {
            Ok(Answer::Described(d)) => d,
            Ok(Answer::Called(_)) => unreachable_answer(path)?,
            Err(Failure::Limit(stop)) => {
                return Err(ToolHostError::Contract {
                    path: path.to_path_buf(),
                    reason: format!("`describe` hit the {} limit: {}", stop.kind, stop.detail),
                });
            }
            Err(Failure::Trap(message)) => {
                return Err(ToolHostError::Contract {
                    path: path.to_path_buf(),
                    reason: format!("`describe` trapped: {message}"),
                });
            }
        };
        contract::validate_description(&description, path, expected_name)?;
        if let Some(existing) = self.tools.get(&description.name) {
            return Err(ToolHostError::DuplicateTool {
                name: description.name.clone(),
                first: existing.component_path.clone(),
                second: path.to_path_buf(),
            });
        }
        let name = description.name.clone();
        let tool = LoadedTool {
            description,
            origin,
            component_path: path.to_path_buf(),
            asked,
            asked_limits,
            imports,
            cache,
            pre,
            inline_safe,
        };
        Ok(self.tools.entry(name).or_insert(tool))
    }

    /// Every loaded tool, by name.
    pub fn tools(&self) -> impl Iterator<Item = &LoadedTool> {
        self.tools.values()
    }

    pub fn tool(&self, name: &str) -> Option<&LoadedTool> {
        self.tools.get(name)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The tools `role` may use (what goes into the model's prompt).
    pub fn tools_for(&self, role: Role) -> Vec<&LoadedTool> {
        self.tools
            .values()
            .filter(|t| self.grant_of(role, t).is_some())
            .collect()
    }

    /// The effective grant of a loaded tool for a role.
    pub fn grant_of(&self, role: Role, tool: &LoadedTool) -> Option<EffectiveGrant> {
        self.policy
            .grant(role, tool.name(), &tool.asked, tool.asked_limits)
    }

    /// Calls `name` with JSON `arguments` for `episode`.
    pub fn call(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
    ) -> Result<ToolReply, ToolHostError> {
        let mut profile = CallProfile::default();
        let how = CallHow::default();
        self.call_inner(episode, name, arguments, Instant::now(), &mut profile, how)
    }

    /// [`ToolHost::call`] for a thread that may block and drives no async tasks: a
    /// plain thread, or a `tokio::task::spawn_blocking` closure (where `call` cannot
    /// tell it is not an async worker and hands the call to a worker thread). A
    /// standard tool then runs on this thread even inside a tokio runtime, without the
    /// hand-off. Called on a thread that drives async tasks, the call fails with a trap
    /// error (no panic).
    pub fn call_blocking(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
    ) -> Result<ToolReply, ToolHostError> {
        let mut profile = CallProfile::default();
        let how = CallHow {
            blocking_thread: true,
            ..CallHow::default()
        };
        self.call_inner(episode, name, arguments, Instant::now(), &mut profile, how)
    }

    /// [`ToolHost::call_blocking`] with the profile of [`ToolHost::call_profiled`].
    pub fn call_blocking_profiled(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
    ) -> (Result<ToolReply, ToolHostError>, CallProfile) {
        self.profiled(episode, name, arguments, true)
    }

    /// [`ToolHost::call`], also saying where the call's time went, CPU time of the
    /// threads involved included (two system calls per thread more than `call`). The
    /// profile is filled as far as the call got (zero phases when it failed before
    /// running).
    pub fn call_profiled(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
    ) -> (Result<ToolReply, ToolHostError>, CallProfile) {
        self.profiled(episode, name, arguments, false)
    }

    fn profiled(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
        blocking_thread: bool,
    ) -> (Result<ToolReply, ToolHostError>, CallProfile) {
        let started = Instant::now();
        let cpu_started = crate::watchdog::thread_cpu_time();
        let mut profile = CallProfile::default();
        let how = CallHow {
            measure_cpu: true,
            blocking_thread,
        };
        let reply = self.call_inner(episode, name, arguments, started, &mut profile, how);
        if profile.total.is_zero() {
            profile.total = started.elapsed();
        }
        profile.caller_cpu = crate::watchdog::thread_cpu_time().saturating_sub(cpu_started);
        (reply, profile)
    }

    /// Whether calls may run on the caller's thread when that is safe (the default);
    /// `false` hands every call to a worker thread (for comparing the two, as
    /// `ssr bench tools` does).
    pub fn set_inline_calls(&mut self, inline: bool) {
        self.inline_calls = inline;
    }

    fn runner(&self) -> Runner<'_> {
        Runner {
            engine: self.engine.engine(),
            watchdog: self.engine.watchdog(),
            workers: &self.workers,
        }
    }

    /// Where a call runs. On the caller's thread only when all of these hold:
    /// - the caller is not inside a tokio runtime, or said it is on a thread that may
    ///   block ([`ToolHost::call_blocking`]): wasmtime-wasi's synchronous host calls
    ///   `block_on` the current runtime, which panics on a thread that drives async
    ///   tasks, and tokio's public API cannot tell such a thread from a
    ///   `spawn_blocking` one;
    /// - the tool is one of this binary's standard ones: their guests read files with direct descriptor
    ///   reads and never wait on a clock or a stream, so all they can block in is a
    ///   system call the watchdog's signal interrupts; a custom guest could wait in a
    ///   WASI `poll` (a sleep, a stream read done on tokio's blocking pool) that no
    ///   signal ends, which only a worker the caller walks away from bounds;
    /// - the call may not run commands: a command waits on another process, bounded by
    ///   the sandbox's own timeout, which the host does not verify (and a command costs
    ///   milliseconds, so the hand-off does not matter there);
    /// - the watchdog's signal is installed and not blocked on this thread.
    fn placement(&self, inline_safe: bool, setup: &CallSetup, blocking_thread: bool) -> Placement {
        let inline = self.inline_calls
            && inline_safe
            && setup.exec.is_none()
            && (blocking_thread || tokio::runtime::Handle::try_current().is_err())
            && crate::watchdog::signal_available()
            && crate::watchdog::signal_unblocked_here();
        if inline {
            Placement::Inline
        } else {
            Placement::Worker
        }
    }

    fn call_inner(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
        started: Instant,
        profile: &mut CallProfile,
        how: CallHow,
    ) -> Result<ToolReply, ToolHostError> {
        let tool = self
            .tools
            .get(name)
            .ok_or_else(|| ToolHostError::UnknownTool(name.to_string()))?;
        let grant = self
            .grant_of(episode.role, tool)
            .ok_or_else(|| ToolHostError::NotGranted {
                tool: name.to_string(),
                role: episode.role.as_str().to_string(),
            })?;
        let setup = self.setup(episode, tool, &grant)?;
        let limits = grant.limits;
        let placement = self.placement(tool.inline_safe, &setup, how.blocking_thread);
        let finished = call::run(
            self.runner(),
            &tool.pre,
            setup,
            Invocation::Call(arguments.to_string()),
            started,
            placement,
            how.measure_cpu,
        );
        *profile = finished.profile;
        let (stdout, _) = finished.stdout.contents();
        let (stderr, _) = finished.stderr.contents();
        match finished.answer {
            Ok(Answer::Called(result)) => {
                let mut truncated = false;
                let result = result.map(|text| {
                    let max = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
                    if text.len() > max {
                        truncated = true;
                        crate::output::cut_to(&text, max)
                    } else {
                        text
                    }
                });
                Ok(ToolReply {
                    result,
                    truncated,
                    stdout,
                    stderr,
                    elapsed: finished.elapsed,
                })
            }
            Ok(Answer::Described(_)) => unreachable_answer(&tool.component_path),
            Err(Failure::Limit(stop)) => Err(ToolHostError::Limit {
                tool: name.to_string(),
                limit: stop.kind,
                detail: stop.detail,
            }),
            Err(Failure::Trap(message)) => Err(ToolHostError::Trap {
                tool: name.to_string(),
                message: if stderr.is_empty() {
                    message
                } else {
                    format!("{message}; guest stderr: {}", stderr.trim_end())
                },
            }),
        }
    }

    /// Builds the call's WASI context and host grants from the effective grant.
    fn setup(
        &self,
        episode: &Episode,
        tool: &LoadedTool,
        grant: &EffectiveGrant,
    ) -> Result<CallSetup, ToolHostError> {
        let grant_err = |reason: String| ToolHostError::Grant {
            path: episode.repo.clone(),
            reason,
        };
        let limits = grant.limits;
        let output_cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        let stdout = BoundedOutput::new(output_cap);
        let stderr = BoundedOutput::new(output_cap);
        let mut b = WasiCtxBuilder::new();
        // Before any preopen: each preopen copies the flag when it is created.
        b.allow_blocking_current_thread(true);
        b.stdout(stdout.clone()).stderr(stderr.clone());
        b.env("SSR_ROLE", episode.role.as_str());
        b.env("SSR_WORKSPACE", episode.workspace_guest.to_string_lossy());
        b.env("SSR_TOOL_CONFIG", grant.config.to_string());
        let protected = match self.protected.get(&episode.role) {
            Some(p) => p.with_exact(&episode.oracle_files),
            None => Protected::new(&grant.protected, &episode.oracle_files).map_err(grant_err)?,
        };
        let mut workspace = None;
        if grant.repo != RepoAccess::None {
            // No `is_dir` first: the preopen opens with O_DIRECTORY and fails the same way,
            // for one system call less.
            b.preopened_dir(&episode.repo, ".", FsPerms::ReadOnly)
                .map_err(|e| grant_err(format!("not a directory that can be opened: {e:#}")))?;
            workspace = Some(WorkspaceGrant::new(
                &episode.repo,
                grant.repo == RepoAccess::Rw,
                protected.clone(),
            ));
        }
        if grant.state
            && let Some(root) = &episode.state_dir
        {
            let dir = root.join(tool.name());
            // Open first and create only when missing: one system call on every call
            // after the episode's first, where `create_dir_all` costs two.
            if b.preopened_dir(&dir, STATE_GUEST_DIR, FsPerms::ReadWrite)
                .is_err()
            {
                std::fs::create_dir_all(&dir).map_err(|source| ToolHostError::Io {
                    path: dir.clone(),
                    source,
                })?;
                b.preopened_dir(&dir, STATE_GUEST_DIR, FsPerms::ReadWrite)
                    .map_err(|e| grant_err(format!("{e:#}")))?;
            }
            b.env("SSR_STATE_DIR", STATE_GUEST_DIR);
        }
        for extra in &grant.extra {
            let perms = if extra.mode == RepoAccess::Rw {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            b.preopened_dir(&extra.host, &extra.guest, perms)
                .map_err(|e| grant_err(format!("extra `{}`: {e:#}", extra.host.display())))?;
        }
        let exec = match (&episode.sandbox, grant.exec) {
            (Some(sandbox), true) => {
                let deny = grant
                    .deny
                    .iter()
                    .map(|p| regex::Regex::new(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| grant_err(e.to_string()))?;
                Some(ExecGrant {
                    sandbox: sandbox.clone(),
                    workspace: episode.repo.clone(),
                    workspace_guest: episode.workspace_guest.clone(),
                    deny,
                    protected,
                    max_timeout: Duration::from_millis(self.policy.exec_timeout_ms),
                    output_bytes: output_cap,
                    env: BTreeMap::new(),
                })
            }
            _ => None,
        };
        Ok(CallSetup {
            wasi: b.build(),
            workspace,
            exec,
            limits,
            stdout,
            stderr,
        })
    }
}

fn unreachable_answer<T>(path: &Path) -> Result<T, ToolHostError> {
    Err(ToolHostError::Engine(format!(
        "{}: the call answered a different invocation than was made",
        path.display()
    )))
}
