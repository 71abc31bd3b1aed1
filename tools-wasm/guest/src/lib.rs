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
    let mut bytes = Vec::new();
    loop {
        let (chunk, end) = file
            .read(READ_CHUNK, bytes.len() as u64)
            .map_err(|e| fs_error(path, e))?;
        let short = (chunk.len() as u64) < READ_CHUNK;
        if bytes.is_empty() && (end || short) {
            // The whole file in one read (the usual case): no second buffer.
            return if chunk.len() as u64 > max_bytes {
                Err(too_big(path, max_bytes))
            } else {
                Ok(chunk)
            };
        }
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max_bytes {
            return Err(too_big(path, max_bytes));
        }
        if end || short {
            return Ok(bytes);
        }
    }
}

/// A repository path opened for reading, and what its descriptor's `stat` says.
pub struct OpenedPath {
    pub descriptor: wasip2::filesystem::types::Descriptor,
    pub stat: RepoStat,
}

/// Opens a repository-relative path for reading (symbolic links inside the repository
/// followed; a directory opens too) and stats the open descriptor. The same answer as
/// [`repo_stat`] plus a handle for [`read_opened`]: on the host an `openat2`, an `fstat`
/// and a `close` fewer than a stat by path followed by an open.
pub fn open_repo_path(
    repo: &wasip2::filesystem::types::Descriptor,
    path: &str,
) -> Result<OpenedPath, GuestError> {
    use wasip2::filesystem::types::{DescriptorFlags, DescriptorType, OpenFlags, PathFlags};
    let descriptor = repo
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| fs_error(path, e))?;
    let stat = descriptor.stat().map_err(|e| fs_error(path, e))?;
    Ok(OpenedPath {
        descriptor,
        stat: RepoStat {
            is_dir: stat.type_ == DescriptorType::Directory,
            size: stat.size,
        },
    })
}

/// The directory the host preopened at guest path `name` (as `/state`).
pub fn preopen(name: &str) -> Option<wasip2::filesystem::types::Descriptor> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(d, _)| d)
}

/// Reads the file `path` under `dir` whole with direct descriptor calls (see
/// [`repository`] for why); `Ok(None)` when it does not exist.
pub fn read_file_in(
    dir: &wasip2::filesystem::types::Descriptor,
    path: &str,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, GuestError> {
    let opened = match open_repo_path(dir, path) {
        Ok(o) => o,
        Err(GuestError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if opened.stat.is_dir {
        return Err(GuestError::InvalidArguments(format!(
            "{path} is a directory"
        )));
    }
    read_opened(&opened.descriptor, path, opened.stat.size, max_bytes).map(Some)
}

/// Replaces the contents of the file `path` under `dir` with `bytes`, creating it and
/// its parent directories, with direct descriptor calls. Why not `std::fs::write`: through wasi-libc a write
/// goes through a WASI output stream, which the host runs on a thread of its own pool;
/// the round trips to that thread were most of an edit.
pub fn write_file_in(
    dir: &wasip2::filesystem::types::Descriptor,
    path: &str,
    bytes: &[u8],
) -> Result<(), GuestError> {
    use wasip2::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
    if let Some((parent, _)) = path.rsplit_once('/') {
        let mut at = String::new();
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            match dir.create_directory_at(&at) {
                Ok(()) | Err(ErrorCode::Exist) => {}
                Err(e) => return Err(fs_error(&at, e)),
            }
        }
    }
    // Overwritten in place and then cut to size, not truncated on open: ext4 flushes a
    // file truncated to zero when it is closed (its `auto_da_alloc`), a disk write that
    // was most of an edit. Not atomic: for the tool's own state, never the repository.
    let file = dir
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| fs_error(path, e))?;
    let mut done = 0usize;
    while done < bytes.len() {
        let n = file
            .write(&bytes[done..], done as u64)
            .map_err(|e| fs_error(path, e))?;
        if n == 0 {
            return Err(GuestError::Failed(format!(
                "{path}: the write made no progress"
            )));
        }
        done += usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(bytes.len() - done);
    }
    file.set_size(bytes.len() as u64)
        .map_err(|e| fs_error(path, e))
}

/// Reads an opened file whole, `size` being its size when stat'ed: the first read asks
/// for one byte more, so a file that did not grow is read in one host call (and the host
/// allocates what the file needs, not a whole chunk). Refuses files over `max_bytes`.
pub fn read_opened(
    file: &wasip2::filesystem::types::Descriptor,
    path: &str,
    size: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, GuestError> {
    if size > max_bytes {
        return Err(too_big(path, max_bytes));
    }
    let mut bytes: Vec<u8> = Vec::new();
    let mut want = (size + 1).min(READ_CHUNK);
    loop {
        let (chunk, end) = file
            .read(want, bytes.len() as u64)
            .map_err(|e| fs_error(path, e))?;
        let short = (chunk.len() as u64) < want;
        if bytes.is_empty() && (end || short) {
            return if chunk.len() as u64 > max_bytes {
                Err(too_big(path, max_bytes))
            } else {
                Ok(chunk)
            };
        }
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max_bytes {
            return Err(too_big(path, max_bytes));
        }
        if end || short {
            return Ok(bytes);
        }
        want = READ_CHUNK;
    }
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

/// Lines `first..=last` of `text` (1-based; `last` `None`: to the end), each as
/// `{n:6}\t{line}\n`, split exactly as [`lines`] splits them. What `editor view` returns.
///
/// Why not a loop over [`lines`] pushing each piece: that was most of viewing a file
/// (a newline search, a number formatted with divisions, and a `memory.copy` per line,
/// which wasmtime runs as a call out of the guest). This is one pass over the text a
/// vector at a time (16 bytes with wasm SIMD, 8 elsewhere): each vector is stored into
/// the output as it is searched for a newline, and the line number is a decimal counter
/// incremented in place.
pub fn number_lines(text: &str, first: usize, last: Option<usize>) -> String {
    let (out, _) = number_bytes(text.as_bytes(), first, last);
    // SAFETY: the text was UTF-8 and was cut only before ASCII newlines and `\r`s, with
    // ASCII added.
    unsafe { String::from_utf8_unchecked(out) }
}

/// [`number_lines`] of a whole file read as bytes, checking in the same pass that they
/// are text: `Err` gives the bytes back when they are not UTF-8. Saves the separate
/// pass of [`into_text`] over the file.
pub fn number_all_lines(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    let (out, ascii) = number_bytes(&bytes, 1, None);
    if !ascii && std::str::from_utf8(&bytes).is_err() {
        return Err(bytes);
    }
    // SAFETY: the bytes are UTF-8 (ASCII, or checked above), cut only before ASCII
    // newlines and `\r`s, with ASCII added.
    Ok(unsafe { String::from_utf8_unchecked(out) })
}

/// The vector step of [`number_bytes`] with wasm SIMD: copies 16 bytes, folds them into
/// the non-ASCII accumulator, and says where the first newline among them is.
#[cfg(target_arch = "wasm32")]
mod wide {
    use core::arch::wasm32::{
        u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_load, v128_or, v128_store,
    };

    pub const WIDTH: usize = 16;
    pub type Acc = v128;

    #[inline(always)]
    pub fn zero() -> Acc {
        u8x16_splat(0)
    }

    /// # Safety
    /// `src` readable and `dst` writable for 16 bytes.
    #[inline(always)]
    pub unsafe fn step(src: *const u8, dst: *mut u8, acc: &mut Acc) -> Option<usize> {
        // SAFETY: the caller's; wasm loads and stores need no alignment.
        let v = unsafe { v128_load(src.cast::<v128>()) };
        unsafe { v128_store(dst.cast::<v128>(), v) };
        *acc = v128_or(*acc, v);
        let newlines = u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'\n')));
        (newlines != 0).then(|| newlines.trailing_zeros() as usize)
    }

    #[inline(always)]
    pub fn any_high(acc: Acc) -> bool {
        u8x16_bitmask(acc) != 0
    }
}

/// The same step eight bytes at a time in a 64-bit word, for other targets (the tests).
#[cfg(not(target_arch = "wasm32"))]
mod wide {
    pub const WIDTH: usize = 8;
    pub type Acc = u64;

    #[inline(always)]
    pub fn zero() -> Acc {
        0
    }

    /// # Safety
    /// `src` readable and `dst` writable for 8 bytes.
    #[inline(always)]
    pub unsafe fn step(src: *const u8, dst: *mut u8, acc: &mut Acc) -> Option<usize> {
        // SAFETY: the caller's.
        let w = unsafe { src.cast::<u64>().read_unaligned() };
        unsafe { dst.cast::<u64>().write_unaligned(w) };
        *acc |= w;
        let x = u64::from_le(w) ^ 0x0a0a_0a0a_0a0a_0a0a;
        // A zero byte of `x` is a newline; the lowest flag is the first one (flags above
        // a true zero byte can be false, never below it).
        let found = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
        (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
    }

    #[inline(always)]
    pub fn any_high(acc: Acc) -> bool {
        acc & 0x8080_8080_8080_8080 != 0
    }
}

/// The numbered lines `first..=last` of `bytes`, and whether every byte scanned was
/// ASCII (all of them when `first` is 1 and `last` is `None`).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn number_bytes(bytes: &[u8], first: usize, last: Option<usize>) -> (Vec<u8>, bool) {
    use wide::WIDTH;
    let first = first.max(1);
    let mut at = 0;
    let mut n = 1;
    while n < first {
        match next_newline(bytes, at) {
            Some(nl) => {
                at = nl + 1;
                n += 1;
            }
            None => return (Vec::new(), true),
        }
    }
    let mut counter = LineCounter::new(n);
    // Room for the text plus a 7-byte prefix per 32 bytes of it; grown when the lines
    // are shorter. The copy stores whole vectors, so keep spare room past the end.
    let rest = bytes.len() - at;
    let mut out: Vec<u8> = Vec::with_capacity(rest + rest / 4 + 64);
    let mut len = 0usize;
    let mut acc = wide::zero();
    let mut tail_high = 0u8;
    let src = bytes.as_ptr();
    while at < bytes.len() && last.is_none_or(|l| n <= l) {
        if out.capacity() - len < 64 {
            // SAFETY: `len` bytes were written (all initialised).
            unsafe { out.set_len(len) };
            out.reserve(out.capacity().max(64));
        }
        len = counter.write(&mut out, len);
        let mut newline = false;
        loop {
            if out.capacity() - len < 2 * WIDTH {
                // SAFETY: as above.
                unsafe { out.set_len(len) };
                out.reserve(out.capacity().max(64));
            }
            if at + WIDTH <= bytes.len() {
                // SAFETY: `WIDTH` bytes are readable at `at` and at least `2 * WIDTH`
                // are free past `len`.
                let found = unsafe { wide::step(src.add(at), out.as_mut_ptr().add(len), &mut acc) };
                match found {
                    Some(k) => {
                        len += k;
                        at += k + 1;
                        newline = true;
                        break;
                    }
                    None => {
                        len += WIDTH;
                        at += WIDTH;
                    }
                }
            } else {
                // The last few bytes, one at a time.
                while at < bytes.len() {
                    let b = bytes[at];
                    at += 1;
                    tail_high |= b;
                    if b == b'\n' {
                        newline = true;
                        break;
                    }
                    // SAFETY: fewer than `WIDTH` bytes are written here; `2 * WIDTH` were free.
                    unsafe { out.as_mut_ptr().add(len).write(b) };
                    len += 1;
                }
                break;
            }
        }
        // `str::lines` drops a `\r` before a newline (not a lone one at the very end).
        // SAFETY: the byte at `len - 1` was written (the prefix at least).
        if newline && unsafe { *out.as_ptr().add(len - 1) } == b'\r' {
            len -= 1;
        }
        // SAFETY: room remains (at least `WIDTH` bytes free after the copy).
        unsafe { out.as_mut_ptr().add(len).write(b'\n') };
        len += 1;
        n += 1;
        counter.increment();
    }
    // SAFETY: every byte below `len` was written.
    unsafe { out.set_len(len) };
    let ascii = !wide::any_high(acc) && tail_high < 0x80;
    (out, ascii)
}

/// A line number kept as right-aligned ASCII digits, incremented in place.
struct LineCounter {
    digits: [u8; 24],
    /// Index of the first digit in `digits` (the number ends at index 23).
    start: usize,
}

impl LineCounter {
    fn new(mut n: usize) -> Self {
        let mut digits = [b' '; 24];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        LineCounter { digits, start }
    }

    fn increment(&mut self) {
        let mut i = self.digits.len() - 1;
        loop {
            match self.digits[i] {
                b'9' => {
                    self.digits[i] = b'0';
                    i -= 1;
                }
                b' ' => {
                    self.digits[i] = b'1';
                    self.start = i;
                    return;
                }
                d => {
                    self.digits[i] = d + 1;
                    return;
                }
            }
        }
    }

    /// Writes `{n:6}\t` at `len` (at least 32 bytes of capacity past it) and returns the
    /// new length.
    fn write(&self, out: &mut Vec<u8>, len: usize) -> usize {
        let from = self.start.min(self.digits.len() - 6);
        let width = self.digits.len() - from;
        if width == 6 {
            let d = &self.digits[18..];
            let word = [d[0], d[1], d[2], d[3], d[4], d[5], b'\t', 0];
            // SAFETY: the caller keeps 32 bytes of capacity past `len`.
            unsafe {
                out.as_mut_ptr()
                    .add(len)
                    .cast::<[u8; 8]>()
                    .write_unaligned(word)
            };
            return len + 7;
        }
        // SAFETY: as above; `width` is at most 20 (a 64-bit number's digits).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.digits[from..].as_ptr(),
                out.as_mut_ptr().add(len),
                width,
            );
            out.as_mut_ptr().add(len + width).write(b'\t');
        }
        len + width + 1
    }
}

/// The index of the first `\n` at or after `from`.
fn next_newline(bytes: &[u8], from: usize) -> Option<usize> {
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

fn too_big(path: &str, max_bytes: u64) -> GuestError {
    GuestError::Failed(format!(
        "{path} has more than {max_bytes} bytes, over this tool's limit"
    ))
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

    /// What `number_lines` must produce: the obvious loop over `str::lines`.
    fn number_lines_naive(text: &str, first: usize, last: Option<usize>) -> String {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(n, _)| *n >= first && last.is_none_or(|l| *n <= l))
            .map(|(n, l)| format!("{n:6}\t{l}\n"))
            .collect()
    }

    #[test]
    fn number_lines_matches_the_obvious_loop() {
        let long: String = (0..2_000)
            .map(|i| format!("line {i} with some text é ✓\r\n{}", "x".repeat(i % 37)))
            .collect();
        let cases = [
            "",
            "a",
            "a\n",
            "\n\n\n",
            "one\ntwo\nthree",
            "crlf\r\nlone cr at end\r",
            "\r\n\r",
            "exactly8\nexactly8\n",
            "1234567\n12345678\n123456789\n",
            "multi ✓ byte ✓ text\nnext ✓\n",
            long.as_str(),
        ];
        for text in cases {
            for (first, last) in [
                (1, None),
                (2, None),
                (1, Some(1)),
                (3, Some(5)),
                (1000, None),
            ] {
                assert_eq!(
                    number_lines(text, first, last),
                    number_lines_naive(text, first, last),
                    "{text:?} {first} {last:?}"
                );
            }
        }
    }

    #[test]
    fn number_all_lines_checks_utf8_in_the_same_pass() {
        let text = "one ✓\r\ntwo\nthree";
        assert_eq!(
            number_all_lines(text.as_bytes().to_vec()).unwrap(),
            number_lines_naive(text, 1, None)
        );
        let ascii = "a\nb\n".repeat(50);
        assert_eq!(
            number_all_lines(ascii.as_bytes().to_vec()).unwrap(),
            number_lines_naive(&ascii, 1, None)
        );
        // Invalid UTF-8 inside a vector, and in the tail.
        let mut bad = "x".repeat(40).into_bytes();
        bad[20] = 0xff;
        assert!(number_all_lines(bad).is_err());
        let mut bad_tail = "y\n".repeat(20).into_bytes();
        bad_tail.push(0xc3);
        assert!(number_all_lines(bad_tail).is_err());
    }

    #[test]
    fn line_numbers_widen_past_six_digits() {
        let mut c = LineCounter::new(999_998);
        let mut out = Vec::with_capacity(64);
        let mut len = c.write(&mut out, 0);
        c.increment();
        len = c.write(&mut out, len);
        c.increment();
        len = c.write(&mut out, len);
        unsafe { out.set_len(len) };
        assert_eq!(out, b"999998\t999999\t1000000\t");
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
