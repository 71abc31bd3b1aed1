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

mod files;
mod numbering;

pub use files::{
    OpenedPath, RepoStat, open_repo_path, preopen, read_file_in, read_opened, read_repo_file,
    repo_stat, repository, write_file_in,
};
pub use numbering::{number_all_lines, number_lines};

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

/// Bytes to text, failing on invalid UTF-8. Why not only `String::from_utf8`: its
/// validation works a 32-bit word at a time on wasm32 and was a third of viewing a
/// 1,000-line file; source files are mostly pure ASCII, which this checks 64 bits at a
/// time (wasm has native 64-bit integers) before falling back to the full validation.
pub fn into_text(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    if is_ascii(&bytes) {
        // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
        return Ok(unsafe { String::from_utf8_unchecked(bytes) });
    }
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

/// [`String::from_utf8_lossy`] with the same ASCII fast path as [`into_text`].
pub fn text_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if is_ascii(bytes) {
        // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
        return std::borrow::Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    String::from_utf8_lossy(bytes)
}

fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        let word = |i: usize| {
            u64::from_le_bytes([
                c[i],
                c[i + 1],
                c[i + 2],
                c[i + 3],
                c[i + 4],
                c[i + 5],
                c[i + 6],
                c[i + 7],
            ])
        };
        if (word(0) | word(8) | word(16) | word(24)) & HIGH != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|b| *b < 0x80)
}

/// The lines of `text` exactly as [`str::lines`] gives them (a final line without a
/// newline included, `\r\n` endings stripped of the `\r`), with the newline search
/// done 64 bits at a time: core's works a 32-bit word at a time on wasm32, and splitting
/// lines is most of numbering a file.
pub fn lines(text: &str) -> Lines<'_> {
    Lines { text, at: 0 }
}

pub struct Lines<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        if self.at >= bytes.len() {
            return None;
        }
        let start = self.at;
        // `\n` and `\r` are ASCII, so both cuts are on character boundaries.
        match next_newline(bytes, start) {
            Some(end) => {
                self.at = end + 1;
                let line = &self.text[start..end];
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => {
                // A last line without a newline keeps a lone `\r`, as `str::lines` does.
                self.at = bytes.len();
                Some(&self.text[start..])
            }
        }
    }
}

/// The number of lines [`lines`] yields.
pub fn count_lines(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut at = 0;
    while let Some(nl) = next_newline(bytes, at) {
        count += 1;
        at = nl + 1;
    }
    count + usize::from(at < bytes.len())
}

/// The index of the first `\n` at or after `from`.
pub(crate) fn next_newline(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = from;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        // A zero byte of `x` is a newline; the lowest flagged byte is the first one
        // (flags above a true zero byte can be false, never below it).
        let found = x.wrapping_sub(ONES) & !x & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
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
    fn into_text_takes_ascii_fast_and_checks_the_rest() {
        let ascii = "def f():\n    return 1\n".repeat(10).into_bytes();
        assert_eq!(into_text(ascii.clone()).unwrap().as_bytes(), &ascii[..]);
        let utf8 = format!("{}é", "x".repeat(40)).into_bytes();
        assert!(into_text(utf8).is_ok());
        let mut bad = "x".repeat(40).into_bytes();
        bad[35] = 0xff;
        assert!(into_text(bad).is_err());
    }

    #[test]
    fn lines_match_str_lines() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\r\nb",
            "a\r",
            "a\r\n\r",
            "one\ntwo\n\nfour is a longer line than eight bytes\r\n",
            "\n\n\n\n\n\n\n\n\n\n",
            "é\nü and more than eight bytes\n",
        ] {
            let ours: Vec<&str> = lines(text).collect();
            let std: Vec<&str> = text.lines().collect();
            assert_eq!(ours, std, "{text:?}");
            assert_eq!(count_lines(text), std.len(), "{text:?}");
        }
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
