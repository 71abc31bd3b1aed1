//! The `submit` tool: ends an episode, role-aware.
//!
//! - Injector: checks the bug artifact's five files (either spelling of SSR_SPEC.md
//!   section 2) are present and non-empty in the artifact directory.
//! - Solver: either names a patch file, checked non-empty and diff-shaped, or asks for
//!   the workspace's diff against its base, which the agent loop computes on the host.
//!
//! Convention (read by the agent loop): on success the result text is one JSON object
//! `{"ssr_submit": {...}}`; `role` is `injector` or `solver`, and for the solver `kind`
//! is `patch_file` (with `path`) or `workspace_diff`. An `Err` leaves the episode
//! running so the agent can fix what is missing. This tool never writes.

use serde::Deserialize;
use serde_json::json;
use ssr_guest::{GuestError, repo_path};
use std::fs;

/// Largest patch file read.
const MAX_PATCH_BYTES: u64 = 16 << 20;

wit_bindgen::generate!({ world: "read-tool", path: "../wit" });

use exports::ssr::tool::tool::Guest;
use ssr::tool::types::{Description, ToolError};

/// The artifact's files: the name written by this project, then the paper's spelling.
const ARTIFACT_FILES: [(&str, &str); 5] = [
    ("test_script.sh", "test_script.sh"),
    ("test_files.txt", "test_files.txt"),
    ("test_parser.py", "parse_test_output.py"),
    ("bug_inject.diff", "bug_patch.diff"),
    ("test_weaken.diff", "test_patch.diff"),
];

struct Submit;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Arguments {
    /// Injector: directory holding the artifact files (default from the tool config
    /// `artifact_dir`, else the repository root).
    #[serde(default)]
    directory: Option<String>,
    /// Solver: a patch file to submit instead of the workspace's diff.
    #[serde(default)]
    patch_file: Option<String>,
}

impl From<GuestError> for ToolError {
    fn from(e: GuestError) -> Self {
        match e {
            GuestError::InvalidArguments(m) => ToolError::InvalidArguments(m),
            GuestError::NotFound(m) => ToolError::NotFound(m),
            GuestError::PermissionDenied(m) => ToolError::PermissionDenied(m),
            GuestError::Conflict(m) => ToolError::Conflict(m),
            GuestError::Failed(m) => ToolError::Failed(m),
        }
    }
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "directory": {"type": "string", "description": "Injector: directory with test_script.sh, test_files.txt, test_parser.py, bug_inject.diff, test_weaken.diff (default: the repository root)"},
    "patch_file": {"type": "string", "description": "Solver: a patch file to submit; omit it to submit your changes to the repository as they are"}
  },
  "additionalProperties": false
}"#;

impl Guest for Submit {
    fn describe() -> Description {
        Description {
            name: "submit".into(),
            description: "Submit your work and end the episode. As the bug injector, first write \
                test_script.sh, test_files.txt, test_parser.py, bug_inject.diff and test_weaken.diff \
                (in `directory`, default the repository root); submit checks they all exist and are \
                non-empty. As the solver, call it with no arguments to submit your changes to the \
                repository, or give `patch_file` to submit a patch you wrote."
                .into(),
            parameters_schema: SCHEMA.into(),
        }
    }

    fn call(arguments: String) -> Result<String, ToolError> {
        let args: Arguments = if arguments.trim().is_empty() {
            Arguments::default()
        } else {
            ssr_guest::parse_arguments(&arguments)?
        };
        let role = ssr_guest::role();
        let reply = match role.as_str() {
            "injector" => injector(args)?,
            "solver" => solver(args)?,
            other => {
                return Err(ToolError::Failed(format!(
                    "submit does not know the role `{other}` (expected injector or solver)"
                )));
            }
        };
        Ok(reply.to_string())
    }
}

export!(Submit);

fn non_empty_file(path: &str) -> Result<Option<u64>, GuestError> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(GuestError::InvalidArguments(format!(
            "{path} is not a file"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(GuestError::io(path, &e)),
    }
}

fn injector(args: Arguments) -> Result<serde_json::Value, GuestError> {
    if args.patch_file.is_some() {
        return Err(GuestError::InvalidArguments(
            "`patch_file` is for the solver; the injector submits the artifact files".into(),
        ));
    }
    let configured = ssr_guest::config()
        .get("artifact_dir")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let dir = repo_path(
        args.directory
            .as_deref()
            .or(configured.as_deref())
            .unwrap_or("."),
    )?;
    let join = |name: &str| {
        if dir == "." {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    };
    let mut files = serde_json::Map::new();
    let mut problems = Vec::new();
    for (name, alias) in ARTIFACT_FILES {
        let found = [name, alias]
            .into_iter()
            .map(|n| (n, join(n)))
            .map(|(n, p)| non_empty_file(&p).map(|size| (n, p, size)))
            .collect::<Result<Vec<_>, _>>()?;
        match found
            .iter()
            .find(|(_, _, size)| size.is_some_and(|s| s > 0))
        {
            Some((_, path, _)) => {
                files.insert(name.to_string(), json!(path));
            }
            None if found.iter().any(|(_, _, size)| *size == Some(0)) => {
                problems.push(format!("{name} is empty"));
            }
            None if name == alias => problems.push(format!("{name} is missing")),
            None => problems.push(format!("{name} (or {alias}) is missing")),
        }
    }
    if !problems.is_empty() {
        return Err(GuestError::NotFound(format!(
            "the bug artifact in {dir} is incomplete: {}. Write these files, then submit again.",
            problems.join("; ")
        )));
    }
    Ok(json!({"ssr_submit": {"role": "injector", "directory": dir, "files": files}}))
}

fn solver(args: Arguments) -> Result<serde_json::Value, GuestError> {
    if args.directory.is_some() {
        return Err(GuestError::InvalidArguments(
            "`directory` is for the injector; the solver submits a patch or its changes".into(),
        ));
    }
    let Some(raw) = args.patch_file else {
        return Ok(json!({"ssr_submit": {"role": "solver", "kind": "workspace_diff"}}));
    };
    let path = repo_path(&raw)?;
    // Direct descriptor reads, not `std::fs` (a WASI stream the host reads on another
    // thread; see the tools-wasm README).
    let bytes = ssr_guest::read_file_in(&ssr_guest::repository()?, &path, MAX_PATCH_BYTES)?
        .ok_or_else(|| GuestError::NotFound(format!("{path}: no such file")))?;
    let text = ssr_guest::into_text(bytes)
        .map_err(|_| GuestError::InvalidArguments(format!("{path} is not UTF-8 text")))?;
    if text.trim().is_empty() {
        return Err(GuestError::InvalidArguments(format!("{path} is empty")));
    }
    let diff_shaped = text
        .lines()
        .any(|l| l.starts_with("diff --git ") || l.starts_with("--- "));
    if !diff_shaped {
        return Err(GuestError::InvalidArguments(format!(
            "{path} does not look like a unified diff (no `diff --git` or `---` line)"
        )));
    }
    Ok(json!({"ssr_submit": {"role": "solver", "kind": "patch_file", "path": path}}))
}
