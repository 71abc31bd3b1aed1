//! `ssr tools ...`: list, describe, call and check the agent's WASM tools, print the
//! default policy, and benchmark the host (`ssr tools bench`).
//!
//! Owns argument parsing and presentation only; loading, grants and limits are
//! `ssr-toolhost`'s.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use ssr_toolhost::manifest::Manifest;
use ssr_toolhost::policy::{RepoAccess, ToolGrantSpec};
use ssr_toolhost::{
    Episode, HostConfig, LoadedTool, Policy, Role, ToolHost, ToolOrigin, policy::DEFAULT_POLICY,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options shared by every `ssr tools` command.
#[derive(Args, Debug)]
pub struct ToolsArgs {
    /// Policy file (TOML); the built-in default when absent (`ssr tools policy` prints it).
    #[arg(long, global = true)]
    pub policy: Option<PathBuf>,
    /// Folder scanned for custom tools (`tool.toml` + component); repeatable. Also read
    /// from `SSR_TOOLS_DIR` (colon-separated) and `./tools` when it exists.
    #[arg(long = "tools-dir", global = true)]
    pub tools_dirs: Vec<PathBuf>,
    /// Where compiled components are cached (default: ~/.cache/ssr/components).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Compile every component in memory instead of using the on-disk cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    #[command(subcommand)]
    pub cmd: ToolsCmd,
}

#[derive(Subcommand, Debug)]
pub enum ToolsCmd {
    /// Lists the loaded tools and what each role is granted.
    List {
        /// Only the tools this role may use.
        #[arg(long)]
        role: Option<Role>,
        /// One JSON object: {"tools": [{name, origin, component, description, imports, grants}]}.
        #[arg(long)]
        json: bool,
    },
    /// Shows a tool's description and argument schema, as the model sees them.
    Describe {
        name: String,
        /// One JSON object: {name, description, parameters_schema}.
        #[arg(long)]
        json: bool,
    },
    /// Calls a tool once, as the agent would.
    Call {
        name: String,
        /// The role whose grant applies: injector or solver.
        #[arg(long)]
        role: Role,
        /// The repository the tool works on.
        #[arg(long)]
        repo: PathBuf,
        /// The JSON arguments.
        #[arg(long, default_value = "{}")]
        args: String,
        /// An oracle file (repository-relative) that stays read-only; repeatable.
        #[arg(long = "oracle")]
        oracle_files: Vec<String>,
        /// Per-episode scratch folder (the editor's undo history lives there).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// One JSON object: {ok, result, error: {kind, message}, truncated, elapsed_ms}.
        #[arg(long)]
        json: bool,
    },
    /// Validates a component (or a tool.toml): exports, imports against the contract
    /// and the manifest's grants, compiles it and runs `describe`.
    Check {
        /// A `.wasm` component or a `tool.toml`.
        file: PathBuf,
        /// One JSON object: {ok, name, imports, error}.
        #[arg(long)]
        json: bool,
    },
    /// Prints the built-in policy file.
    Policy,
    /// Benchmarks tool calls against a fresh python3 process per call (same run).
    Bench(crate::cli::bench_tools::BenchToolsArgs),
}

fn host_config(args: &ToolsArgs, standard_tools: bool) -> anyhow::Result<HostConfig> {
    let policy = match &args.policy {
        Some(p) => Policy::from_file(p)?,
        None => Policy::default(),
    };
    let mut tool_dirs = args.tools_dirs.clone();
    if let Some(env) = std::env::var_os("SSR_TOOLS_DIR") {
        tool_dirs.extend(std::env::split_paths(&env));
    }
    if tool_dirs.is_empty() && Path::new("tools").is_dir() {
        tool_dirs.push(PathBuf::from("tools"));
    }
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(|| HostConfig::default().cache_dir)
    };
    Ok(HostConfig {
        policy,
        tool_dirs,
        cache_dir,
        standard_tools,
    })
}

pub fn run(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    match &args.cmd {
        ToolsCmd::List { role, json } => list(&args, *role, *json),
        ToolsCmd::Describe { name, json } => describe(&args, name, *json),
        ToolsCmd::Call {
            name,
            role,
            repo,
            args: call_args,
            oracle_files,
            state_dir,
            json,
        } => {
            let host = ToolHost::new(host_config(&args, true)?)?;
            let mut episode = Episode::new(
                *role,
                repo.canonicalize()
                    .with_context(|| format!("--repo {}", repo.display()))?,
            );
            episode.oracle_files = oracle_files.clone();
            episode.state_dir = state_dir.clone();
            // The bash shim's commands run in the default sandbox (bubblewrap); where it
            // is unavailable `exec` is refused (permission-denied), never run unsandboxed.
            if host.tool(name).is_some_and(|t| t.imports.exec) {
                match ssr_sandbox::default_sandbox(ssr_sandbox::Environment::default()) {
                    Ok(sandbox) => episode.sandbox = Some(std::sync::Arc::from(sandbox)),
                    Err(e) => eprintln!("warning: no sandbox, commands will be refused: {e}"),
                }
            }
            let reply = host.call(&episode, name, call_args, Default::default())?;
            if *json {
                let (result, error) = match &reply.result {
                    Ok(t) => (json!(t), json!(null)),
                    Err(e) => (
                        json!(null),
                        json!({"kind": e.kind(), "message": e.message()}),
                    ),
                };
                let obj = json!({
                    "ok": reply.result.is_ok(),
                    "result": result,
                    "error": error,
                    "truncated": reply.truncated,
                    "elapsed_ms": reply.elapsed.as_secs_f64() * 1e3,
                });
                println!("{obj}");
            } else {
                println!("{}", reply.text());
            }
            Ok(if reply.result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ToolsCmd::Check { file, json } => check(&args, file, *json),
        ToolsCmd::Policy => {
            print!("{DEFAULT_POLICY}");
            Ok(ExitCode::SUCCESS)
        }
        ToolsCmd::Bench(b) => crate::cli::bench_tools::run(b, host_config(&args, true)?),
    }
}

fn origin_text(tool: &LoadedTool) -> String {
    match &tool.origin {
        ToolOrigin::Standard => "standard".into(),
        ToolOrigin::Custom { manifest } => format!("custom ({})", manifest.display()),
    }
}

fn grant_json(host: &ToolHost, tool: &LoadedTool, role: Role) -> serde_json::Value {
    match host.grant_of(role, tool) {
        None => json!(null),
        Some(g) => json!({
            "repo": g.repo,
            "state": g.state,
            "exec": g.exec,
            "protected": g.protected,
            "limits": g.limits,
        }),
    }
}

fn list(args: &ToolsArgs, role: Option<Role>, as_json: bool) -> anyhow::Result<ExitCode> {
    let host = ToolHost::new(host_config(args, true)?)?;
    let tools: Vec<&LoadedTool> = match role {
        Some(r) => host.tools_for(r),
        None => host.tools().collect(),
    };
    if as_json {
        let items: Vec<_> = tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name(),
                    "origin": origin_text(t),
                    "component": t.component_path,
                    "description": t.description.description,
                    "imports": {"workspace": t.imports.workspace, "exec": t.imports.exec},
                    "grants": {
                        "injector": grant_json(&host, t, Role::Injector),
                        "solver": grant_json(&host, t, Role::Solver),
                    },
                })
            })
            .collect();
        println!("{}", json!({ "tools": items }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<10} {:<22} {:<22}",
        "TOOL", "ORIGIN", "INJECTOR", "SOLVER"
    );
    for t in tools {
        let grant = |r: Role| match host.grant_of(r, t) {
            None => "-".to_string(),
            Some(g) => {
                let repo = match g.repo {
                    RepoAccess::None => "no repo",
                    RepoAccess::Ro => "repo ro",
                    RepoAccess::Rw if g.protected.is_empty() => "repo rw",
                    RepoAccess::Rw => "repo rw*",
                };
                let mut s = repo.to_string();
                if g.state {
                    s.push_str(", state");
                }
                if g.exec {
                    s.push_str(", exec");
                }
                s
            }
        };
        let origin = match t.origin {
            ToolOrigin::Standard => "standard",
            ToolOrigin::Custom { .. } => "custom",
        };
        println!(
            "{:<12} {:<10} {:<22} {:<22}",
            t.name(),
            origin,
            grant(Role::Injector),
            grant(Role::Solver)
        );
    }
    println!("(rw* = read-write except the protected files)");
    Ok(ExitCode::SUCCESS)
}

fn describe(args: &ToolsArgs, name: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let host = ToolHost::new(host_config(args, true)?)?;
    let tool = host
        .tool(name)
        .ok_or_else(|| ssr_toolhost::ToolHostError::UnknownTool(name.into()))?;
    let d = &tool.description;
    let schema: serde_json::Value = serde_json::from_str(&d.parameters_schema)?;
    if as_json {
        println!(
            "{}",
            json!({"name": d.name, "description": d.description, "parameters_schema": schema})
        );
    } else {
        println!(
            "{}\n\n{}\n\nArguments (JSON schema):\n{}",
            d.name,
            d.description,
            serde_json::to_string_pretty(&schema)?
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: &ToolsArgs, file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    // Only the file under check is loaded. Scanning the tools folders as well loaded a
    // manifest that lives in one (`./tools` is scanned by default) twice, and the check
    // failed with the tool as its own duplicate.
    let mut config = host_config(args, false)?;
    config.tool_dirs.clear();
    let mut host = ToolHost::new(config)?;
    let is_manifest = file.file_name().is_some_and(|n| n == "tool.toml")
        || file.extension().is_some_and(|e| e == "toml");
    let result = if is_manifest {
        // Validate the manifest first so its errors are about the manifest.
        Manifest::from_file(file)
            .map_err(anyhow::Error::from)
            .and_then(|_| host.load_manifest(file).map_err(anyhow::Error::from))
    } else {
        // A bare component is checked against the widest grant: only imports outside
        // the contract are refused; the manifest decides the rest.
        let asked = ToolGrantSpec {
            repo: RepoAccess::Rw,
            state: true,
            exec: true,
            ..Default::default()
        };
        std::fs::read(file)
            .with_context(|| format!("reading {}", file.display()))
            .and_then(|bytes| {
                host.load(
                    &bytes,
                    file,
                    asked,
                    None,
                    ToolOrigin::Custom {
                        manifest: file.to_path_buf(),
                    },
                    None,
                )
                .map_err(anyhow::Error::from)
            })
    };
    match result {
        Ok(tool) => {
            if as_json {
                println!(
                    "{}",
                    json!({"ok": true, "name": tool.name(), "imports": {"workspace": tool.imports.workspace, "exec": tool.imports.exec}, "error": null})
                );
            } else {
                println!(
                    "ok: `{}` exports ssr:tool/tool@0.1.0, imports {}; compiled and described",
                    tool.name(),
                    match (tool.imports.workspace, tool.imports.exec) {
                        (false, false) => "WASI only (a read-only tool)",
                        (true, false) => "ssr:tool/workspace (needs repo = \"rw\")",
                        (false, true) => "ssr:tool/exec (needs exec = true)",
                        (true, true) => "ssr:tool/workspace and ssr:tool/exec",
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if as_json {
                println!(
                    "{}",
                    json!({"ok": false, "name": null, "imports": null, "error": format!("{e:#}")})
                );
            } else {
                eprintln!("check failed: {e:#}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
