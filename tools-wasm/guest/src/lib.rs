//! What every tool guest shares: the call environment the host sets (role, workspace
//! prefix, tool config, state directory), repository-relative path handling, argument
//! decoding and output truncation.
//!
//! Does not own the WIT bindings: each tool crate generates its own with
//! `wit_bindgen::generate!` and converts [`GuestError`] into its `tool-error`. Nothing
//! here is a security boundary: the host enforces every grant, these checks only give
//! the model friendlier messages.

use serde::de::DeserializeOwned;
use std::fmt;
use std::io;

/// An expected failure, mirroring the WIT `tool-error` variant case for case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    InvalidArguments(String),
    NotFound(String),
    PermissionDenied(String),
    Conflict(String),
    Failed(String),
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            GuestError::NotFound(m) => write!(f, "not found: {m}"),
            GuestError::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            GuestError::Conflict(m) => write!(f, "conflict: {m}"),
            GuestError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl GuestError {
    /// Maps an I/O error on `path` to the case the agent can act on.
    pub fn io(path: &str, e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => {
                GuestError::NotFound(format!("{path}: no such file or directory"))
            }
            io::ErrorKind::PermissionDenied => {
                GuestError::PermissionDenied(format!("{path}: not accessible to this tool ({e})"))
            }
            io::ErrorKind::AlreadyExists => GuestError::Conflict(format!("{path}: already exists")),
            _ => GuestError::Failed(format!("{path}: {e}")),
        }
    }
}

/// Decodes the JSON arguments of a call into `T`, with a message naming the problem.
pub fn parse_arguments<T: DeserializeOwned>(arguments: &str) -> Result<T, GuestError> {
    serde_json::from_str(arguments).map_err(|e| GuestError::InvalidArguments(format!("{e}")))
}

/// The role the host runs this call for (`injector` or `solver`), from `SSR_ROLE`.
pub fn role() -> String {
    std::env::var("SSR_ROLE").unwrap_or_default()
}

/// The tool's `config` table from the policy file (`SSR_TOOL_CONFIG`), `{}` when unset
/// or unreadable.
pub fn config() -> serde_json::Value {
    std::env::var("SSR_TOOL_CONFIG")
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// The granted private scratch directory (`SSR_STATE_DIR`), when there is one.
pub fn state_dir() -> Option<String> {
    std::env::var("SSR_STATE_DIR")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Where the agent sees the repository in its sandbox (`SSR_WORKSPACE`, default `/repo`).
pub fn workspace_prefix() -> String {
    std::env::var("SSR_WORKSPACE").unwrap_or_else(|_| "/repo".to_string())
}

/// Turns a path the model wrote into a path relative to the repository root: accepts
/// `a/b`, `./a/b` and `/repo/a/b`, resolves `.` and `..` lexically, and refuses paths
/// that leave the repository. The root itself is `"."`.
pub fn repo_path(raw: &str) -> Result<String, GuestError> {
    let prefix = workspace_prefix();
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(GuestError::InvalidArguments("`path` is empty".into()));
    }
    let relative = if trimmed == prefix {
        ""
    } else if let Some(rest) = trimmed.strip_prefix(&format!("{prefix}/")) {
        rest
    } else if trimmed.starts_with('/') {
        return Err(GuestError::PermissionDenied(format!(
            "{trimmed}: outside the repository; use a path relative to it or under {prefix}/"
        )));
    } else {
        trimmed
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(GuestError::PermissionDenied(format!(
                        "{trimmed}: leaves the repository"
                    )));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        Ok(".".to_string())
    } else {
        Ok(parts.join("/"))
    }
}

/// Cuts `text` to at most `max` bytes, keeping the head and the tail and putting a
/// visible marker with the number of dropped bytes between them.
pub fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let marker_room = 64.min(max);
    let keep = max - marker_room;
    let head_end = floor_char_boundary(text, keep / 2);
    let tail_start = ceil_char_boundary(text, text.len() - (keep - keep / 2));
    let dropped = tail_start - head_end;
    format!(
        "{}\n[... {dropped} bytes truncated ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    )
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// What [`repo_stat`] says about a repository path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoStat {
    pub is_dir: bool,
    pub size: u64,
}

/// The host's largest single read; a shorter read of a regular file is its end.
const READ_CHUNK: u64 = 64 * 1024;

fn fs_error(path: &str, e: wasip2::filesystem::types::ErrorCode) -> GuestError {
    use wasip2::filesystem::types::ErrorCode;
    match e {
        ErrorCode::NoEntry => GuestError::NotFound(format!("{path}: no such file or directory")),
        ErrorCode::Access | ErrorCode::NotPermitted => {
            GuestError::PermissionDenied(format!("{path}: not accessible to this tool"))
        }
        ErrorCode::Loop => GuestError::PermissionDenied(format!(
            "{path}: a symbolic link loop or a link out of the repository"
        )),
        other => GuestError::Failed(format!("{path}: {}", other.message())),
    }
}

/// The preopened repository directory (guest path `.`), straight from WASI.
///
/// Why not `std::fs`: through wasi-libc a whole-file read costs a stat, an open, an
/// fstat, a read stream, reads until EOF and two drops, each a host call, and host calls
/// were most of a small tool call. [`repo_stat`] and [`read_repo_file`] cost one call
/// for the stat and three for a file up to 64 KiB (open, read, drop).
pub fn repository() -> Result<wasip2::filesystem::types::Descriptor, GuestError> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, name)| name == ".")
        .map(|(d, _)| d)
        .ok_or_else(|| {
            GuestError::PermissionDenied("this tool was granted no access to the repository".into())
        })
}

/// Stats a repository-relative path (as [`repo_path`] returns it), following symbolic
/// links inside the repository (the host refuses those that leave it).
pub fn repo_stat(
    repo: &wasip2::filesystem::types::Descriptor,
    path: &str,
) -> Result<RepoStat, GuestError> {
    use wasip2::filesystem::types::{DescriptorType, PathFlags};
    let stat = repo
        .stat_at(PathFlags::SYMLINK_FOLLOW, path)
        .map_err(|e| fs_error(path, e))?;
    Ok(RepoStat {
        is_dir: stat.type_ == DescriptorType::Directory,
        size: stat.size,
    })
}

/// Reads a repository file whole (symbolic links inside the repository followed);
/// refuses files over `max_bytes`.
pub fn read_repo_file(
    repo: &wasip2::filesystem::types::Descriptor,
    path: &str,
    size_hint: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, GuestError> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let file = repo
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| fs_error(path, e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint.min(max_bytes)).unwrap_or(0));
    loop {
        let (chunk, end) = file
            .read(READ_CHUNK, bytes.len() as u64)
            .map_err(|e| fs_error(path, e))?;
        let short = (chunk.len() as u64) < READ_CHUNK;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max_bytes {
            return Err(GuestError::Failed(format!(
                "{path} has more than {max_bytes} bytes, over this tool's limit"
            )));
        }
        if end || short {
            return Ok(bytes);
        }
    }
}

/// Reads an optional unsigned integer from the tool config.
pub fn config_u64(config: &serde_json::Value, key: &str, default: u64) -> u64 {
    config.get(key).and_then(|v| v.as_u64()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_path_accepts_relative_and_workspace_paths() {
        assert_eq!(repo_path("a/b.py").unwrap(), "a/b.py");
        assert_eq!(repo_path("./a/../b.py").unwrap(), "b.py");
        assert_eq!(repo_path("/repo/a/b.py").unwrap(), "a/b.py");
        assert_eq!(repo_path("/repo").unwrap(), ".");
        assert!(matches!(
            repo_path("../x"),
            Err(GuestError::PermissionDenied(_))
        ));
        assert!(matches!(
            repo_path("/etc/passwd"),
            Err(GuestError::PermissionDenied(_))
        ));
    }

    #[test]
    fn truncate_middle_marks_the_cut() {
        let text = "x".repeat(1000);
        let cut = truncate_middle(&text, 200);
        assert!(cut.len() <= 240);
        assert!(cut.contains("bytes truncated"));
        assert_eq!(truncate_middle("short", 200), "short");
    }
}
