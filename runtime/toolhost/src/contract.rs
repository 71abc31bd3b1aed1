//! The tool contract checked at load time, before a component is ever instantiated:
//! what it exports and which interfaces it may import.
//!
//! A tool must export `ssr:tool/tool@0.1.0` with `describe` and `call` (their types
//! are checked again by the typed bindings when the host pre-instantiates it). It may
//! import only the WASI interfaces a tool needs (cli, io, clocks, filesystem, random;
//! never sockets or http) and the `ssr:tool` interfaces its grant allows: `workspace`
//! only with a read-write repository grant, `exec` only with `exec = true`.

use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentExtern, ComponentItem};

use crate::Description;
use crate::error::ToolHostError;

pub const TOOL_EXPORT: &str = "ssr:tool/tool@0.1.0";
pub const WORKSPACE_IMPORT: &str = "ssr:tool/workspace@0.1.0";
pub const EXEC_IMPORT: &str = "ssr:tool/exec@0.1.0";
const TYPES_IMPORT: &str = "ssr:tool/types@0.1.0";
const WASI_ALLOWED: [&str; 5] = [
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
];

/// What a component imports from the `ssr:tool` package.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContractImports {
    pub workspace: bool,
    pub exec: bool,
}

/// Checks exports and imports; `allow_workspace` and `allow_exec` come from the
/// tool's manifest (what it may ever be granted).
pub fn check(
    engine: &Engine,
    component: &Component,
    path: &Path,
    allow_workspace: bool,
    allow_exec: bool,
) -> Result<ContractImports, ToolHostError> {
    let err = |reason: String| ToolHostError::Contract {
        path: path.to_path_buf(),
        reason,
    };
    let ty = component.component_type();
    let mut found = ContractImports::default();
    for (name, _) in ty.imports(engine) {
        if name == WORKSPACE_IMPORT {
            if !allow_workspace {
                return Err(err(format!(
                    "it imports `{name}` (repository writes) but its grant has no read-write repository access"
                )));
            }
            found.workspace = true;
        } else if name == EXEC_IMPORT {
            if !allow_exec {
                return Err(err(format!(
                    "it imports `{name}` (commands in the sandbox) but its grant has `exec = false`"
                )));
            }
            found.exec = true;
        } else if name != TYPES_IMPORT
            && !(WASI_ALLOWED.iter().any(|p| name.starts_with(p)) && name.contains("@0.2."))
        {
            return Err(err(format!(
                "it imports `{name}`, which is outside the tool contract (allowed: wasi:cli, wasi:io, \
                 wasi:clocks, wasi:filesystem and wasi:random 0.2, and the granted ssr:tool interfaces)"
            )));
        }
    }
    let export = ty
        .exports(engine)
        .find(|(name, _)| *name == TOOL_EXPORT)
        .map(|(_, item)| item.ty);
    match export {
        Some(ComponentItem::ComponentInstance(instance)) => {
            for func in ["describe", "call"] {
                match instance.get_export(engine, func) {
                    Some(ComponentExtern {
                        ty: ComponentItem::ComponentFunc(_),
                        ..
                    }) => {}
                    _ => {
                        return Err(err(format!(
                            "its `{TOOL_EXPORT}` export lacks the function `{func}`"
                        )));
                    }
                }
            }
        }
        _ => {
            return Err(err(format!(
                "it does not export `{TOOL_EXPORT}` (build it for one of the worlds in tools-wasm/wit/tool.wit)"
            )));
        }
    }
    Ok(found)
}

/// Checks what `describe` returned: a valid name (the manifest's, when given), an
/// object schema, a description.
pub(crate) fn validate_description(
    d: &Description,
    path: &Path,
    expected: Option<&str>,
) -> Result<(), ToolHostError> {
    let err = |reason: String| ToolHostError::Contract {
        path: path.to_path_buf(),
        reason,
    };
    if d.name.is_empty()
        || !d
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(err(format!(
            "`describe` returned the invalid name `{}`",
            d.name
        )));
    }
    if let Some(expected) = expected
        && d.name != expected
    {
        return Err(err(format!(
            "`describe` says its name is `{}` but the manifest says `{expected}`",
            d.name
        )));
    }
    let schema: serde_json::Value = serde_json::from_str(&d.parameters_schema)
        .map_err(|e| err(format!("`parameters-schema` is not JSON: {e}")))?;
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(err("`parameters-schema` must be an object schema".into()));
    }
    if d.description.trim().is_empty() {
        return Err(err("`describe` returned an empty description".into()));
    }
    Ok(())
}
