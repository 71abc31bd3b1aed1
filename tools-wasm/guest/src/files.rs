//! Reading and writing files with `wasi:filesystem` directly (the `wasip2` crate)
//! instead of `std::fs`: fewer host calls, and no WASI streams (which the host runs on
//! another thread).
//!
//! Does not own paths' meaning ([`crate::repo_path`]) or text decoding.

use crate::GuestError;

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
    read_to_end(&file, path, READ_CHUNK, max_bytes)
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
    read_to_end(file, path, (size + 1).min(READ_CHUNK), max_bytes)
}

/// Reads `file` from its start to its end: `first` bytes asked for at first, then
/// [`READ_CHUNK`] at a time; refuses files over `max_bytes`.
fn read_to_end(
    file: &wasip2::filesystem::types::Descriptor,
    path: &str,
    first: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, GuestError> {
    let mut bytes: Vec<u8> = Vec::new();
    let mut want = first;
    loop {
        let (chunk, end) = file
            .read(want, bytes.len() as u64)
            .map_err(|e| fs_error(path, e))?;
        let short = (chunk.len() as u64) < want;
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
        want = READ_CHUNK;
    }
}

fn too_big(path: &str, max_bytes: u64) -> GuestError {
    GuestError::Failed(format!(
        "{path} has more than {max_bytes} bytes, over this tool's limit"
    ))
}
