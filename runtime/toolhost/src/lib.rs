//! The host of the agent's tools, which are WebAssembly components.
//!
//! Owns: one wasmtime engine (pooling allocator, epoch interruption), the on-disk cache
//! of compiled components, the per-call store with its limits, the filesystem grants
//! derived from the operator's policy file, and the registry of standard and custom
//! tools.
//!
//! Does not own: what the tools do (their guests live in `tools-wasm/`), or the agent
//! loop that calls them (`ssr-agent`). The model never reaches this crate's grants:
//! they come from the [`Policy`], the tools' manifests and the runtime's [`Episode`].
//!
//! ```no_run
//! # use ssr_toolhost::*;
//! let host = ToolHost::new(HostConfig::default())?;
//! let episode = Episode::new(Role::Solver, "/tmp/repo");
//! let args = r#"{"command":"view","path":"README.md"}"#;
//! let reply = host.call(&episode, "editor", args, CallOptions::default())?;
//! println!("{}", reply.text());
//! # Ok::<(), ToolHostError>(())
//! ```

pub mod bench;
mod cache;
mod call;
mod call_setup;
pub mod contract;
mod dispatch;
mod engine;
mod episode;
mod error;
mod exec;
mod grants;
mod in_flight;
pub mod manifest;
mod output;
mod placement;
pub mod policy;
mod registry;
mod tool_grant;
mod watchdog;
mod workers;

/// The WIT bindings (private to the host; the public types are re-exported below).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../tools-wasm/wit",
        world: "host",
        imports: { default: trappable },
    });
}

/// The standard tools built by `build.rs`.
mod standard {
    include!(concat!(env!("OUT_DIR"), "/standard_tools.rs"));
}

pub use bindings::ssr::tool::types::{Description, ToolError};
pub use cache::CacheOutcome;
pub use call::CallProfile;
pub use dispatch::CallOptions;
pub use engine::EPOCH_TICK;
pub use episode::{Episode, HostConfig, ToolOrigin, ToolReply};
pub use error::{LimitKind, ToolHostError};
pub use grants::Protected;
pub use policy::{CallLimits, Policy, RepoAccess, Role};
pub use registry::{LoadedTool, ToolHost};

/// Where `build.rs` put the compiled tools-wasm components (standard tools, the
/// example custom tool, the test guests).
pub fn tools_wasm_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(standard::TOOLS_WASM_DIR)
}

impl ToolError {
    /// The case name as in the WIT (`invalid-arguments`, `not-found`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments(_) => "invalid-arguments",
            ToolError::NotFound(_) => "not-found",
            ToolError::PermissionDenied(_) => "permission-denied",
            ToolError::Conflict(_) => "conflict",
            ToolError::Failed(_) => "failed",
        }
    }

    /// The message written for the model.
    pub fn message(&self) -> &str {
        match self {
            ToolError::InvalidArguments(m)
            | ToolError::NotFound(m)
            | ToolError::PermissionDenied(m)
            | ToolError::Conflict(m)
            | ToolError::Failed(m) => m,
        }
    }
}
