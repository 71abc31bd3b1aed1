//! The [`ToolHost`] and its tools: loads the standard and custom tools once (contract
//! check, compile or cache hit, pre-instantiation, `describe`, each role's grant
//! compiled), and answers what is loaded and who may use it.
//!
//! Does not own calls (`dispatch`, with `call_setup`, `placement` and `call`), the
//! limits' mechanics (`call`), the write checks (`grants`), the bound on calls in flight
//! (`in_flight`) or the sandbox (`exec` forwards to any `Sandbox`).

use crate::bindings::Host_Pre as HostPre;
use crate::cache::{CacheOutcome, ComponentCache};
use crate::call::{self, Answer, CallSetup, CallState, Failure, Invocation, Runner};
use crate::contract::{self, ContractImports};
use crate::engine::{MAX_CALLS_IN_FLIGHT, ToolEngine};
use crate::episode::{HostConfig, ToolOrigin};
use crate::error::ToolHostError;
use crate::grants::Protected;
use crate::in_flight::CallsInFlight;
use crate::manifest::Manifest;
use crate::output::BoundedOutput;
use crate::placement::{PlacementFacts, placement};
use crate::policy::{CallLimits, EffectiveGrant, Policy, RepoAccess, Role, ToolGrantSpec};
use crate::tool_grant::ToolGrants;
use crate::workers::Workers;
use crate::{Description, standard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtxBuilder;

/// Limits of the load-time `describe` call.
const DESCRIBE_LIMITS: CallLimits = CallLimits {
    cpu_ms: 2_000,
    memory_bytes: 64 << 20,
    output_bytes: 64 << 10,
    wall_ms: 10_000,
    host_calls: 100_000,
    table_entries: 256,
};

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
    pub(crate) pre: HostPre<CallState>,
    /// One of this binary's own standard tools, whose guests cannot wait on anything
    /// the watchdog's signal does not interrupt (see `placement`). Only
    /// [`ToolHost::new`] sets it: a component passed to [`ToolHost::load`] is never
    /// trusted this way, whatever origin it claims.
    pub(crate) inline_safe: bool,
    /// Each role's grant, compiled at load.
    pub(crate) grants: ToolGrants,
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

/// The tool host. Calls go through [`ToolHost::call`] (in `dispatch`).
pub struct ToolHost {
    engine: ToolEngine,
    workers: Workers,
    linker: Linker<CallState>,
    cache: ComponentCache,
    pub(crate) policy: Policy,
    pub(crate) tools: BTreeMap<String, LoadedTool>,
    /// Each role's protected globs, compiled once.
    pub(crate) protected: BTreeMap<Role, Protected>,
    /// Whether calls may run on the caller's thread (see [`ToolHost::set_inline_calls`]).
    pub(crate) inline_calls: bool,
    /// The bound on calls running at once.
    pub(crate) in_flight: CallsInFlight,
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
            in_flight: CallsInFlight::new(MAX_CALLS_IN_FLIGHT),
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
        let placement = placement(PlacementFacts {
            inline_allowed: self.inline_calls,
            standard_tool: inline_safe,
            runs_commands: false,
            blocking_thread: false,
        });
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
            Ok(Answer::Called(_)) => return Err(ToolHostError::wrong_answer(path)),
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
        let grants = ToolGrants::compile(&self.policy, &name, &asked, asked_limits)?;
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
            grants,
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
            .filter(|t| t.grants.get(role).is_some())
            .collect()
    }

    /// The effective grant of a loaded tool for a role (computed when it was loaded).
    pub fn grant_of(&self, role: Role, tool: &LoadedTool) -> Option<EffectiveGrant> {
        tool.grants.get(role).map(|g| g.effective.clone())
    }

    /// Whether calls may run on the caller's thread when that is safe (the default);
    /// `false` hands every call to a worker thread (for comparing the two, as
    /// `ssr bench tools` does).
    pub fn set_inline_calls(&mut self, inline: bool) {
        self.inline_calls = inline;
    }

    pub(crate) fn runner(&self) -> Runner<'_> {
        Runner {
            engine: self.engine.engine(),
            watchdog: self.engine.watchdog(),
            workers: &self.workers,
        }
    }
}
