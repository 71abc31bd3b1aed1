//! The repository walk of `search`, straight on `wasi:filesystem` handles.
//!
//! Why not `std::fs` and the `ignore` crate's walker: through wasi-libc every file costs
//! about fifteen host calls (stat, open, fstat, a read stream, reads until EOF, drops),
//! and host calls were most of a search's time. Here a file costs four: its directory
//! entry, `open-at` relative to its directory's handle, one `read` per 64 KiB, and the
//! handle's drop. The rules are the walker's: `.gitignore` and `.ignore` files (also in
//! the directories above the searched path, and `.git/info/exclude`), hidden entries
//! skipped, symbolic links never followed, entries sorted by name, depth first.
//!
//! Nothing here is a security boundary: the host's preopen (read-only, the repository
//! only) is.

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::overrides::Override;
use ssr_guest::GuestError;
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// The host's largest read; a shorter read of a regular file is its end.
const READ_CHUNK: u64 = 64 * 1024;
/// The first read of a file: enough for most source files.
const FIRST_READ: u64 = 16 * 1024;

/// What the walk hands to the search for each file.
pub struct FileVisit<'a> {
    /// Repository-relative path, `/`-separated.
    pub path: &'a str,
    pub bytes: &'a [u8],
}

/// The rules of one `.gitignore`/`.ignore` file, with the directory it applies to.
struct IgnoreFile {
    matcher: Gitignore,
}

pub struct Walk<'a> {
    overrides: &'a Override,
    max_file_bytes: u64,
    /// Matchers of the directories from the repository root down to the current one,
    /// outermost first (a deeper file's verdict wins).
    ignores: Vec<IgnoreFile>,
    buffer: Vec<u8>,
}

fn io_error(path: &str, e: ErrorCode) -> GuestError {
    match e {
        ErrorCode::NoEntry => GuestError::NotFound(format!("{path}: no such file or directory")),
        ErrorCode::Access | ErrorCode::NotPermitted => {
            GuestError::PermissionDenied(format!("{path}: not accessible to this tool"))
        }
        other => GuestError::Failed(format!("{path}: {}", other.message())),
    }
}

/// The preopened repository (guest path `.`).
fn repository() -> Result<Descriptor, GuestError> {
    get_directories()
        .into_iter()
        .find(|(_, name)| name == ".")
        .map(|(d, _)| d)
        .ok_or_else(|| {
            GuestError::PermissionDenied("this tool was granted no repository to search".into())
        })
}

fn join(dir: &str, name: &str) -> String {
    if dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl<'a> Walk<'a> {
    pub fn new(overrides: &'a Override, max_file_bytes: u64) -> Walk<'a> {
        Walk {
            overrides,
            max_file_bytes,
            ignores: Vec::new(),
            buffer: Vec::new(),
        }
    }

    /// Walks `root` (`.` or a repository-relative path, a directory or a file) and
    /// calls `visit` for every file the rules keep.
    pub fn run(
        &mut self,
        root: &str,
        visit: &mut dyn FnMut(FileVisit<'_>),
    ) -> Result<(), GuestError> {
        let repo = repository()?;
        if root == "." {
            self.load_ignores(&repo, ".", true);
            return self.walk_dir(&repo, ".", visit);
        }
        let stat = repo
            .stat_at(PathFlags::empty(), root)
            .map_err(|e| io_error(root, e))?;
        // The rules of the directories above the searched path apply to it too.
        let parts: Vec<&str> = root.split('/').collect();
        let mut dir = ".".to_string();
        self.load_ignores(&repo, ".", true);
        for part in &parts[..parts.len() - 1] {
            dir = join(&dir, part);
            if let Ok(d) = repo.open_at(
                PathFlags::empty(),
                &dir,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            ) {
                self.load_ignores(&d, &dir, false);
            }
        }
        match stat.type_ {
            DescriptorType::Directory => {
                let d = repo
                    .open_at(
                        PathFlags::empty(),
                        root,
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ,
                    )
                    .map_err(|e| io_error(root, e))?;
                self.load_ignores(&d, root, false);
                self.walk_dir(&d, root, visit)
            }
            // A file named directly is searched whatever the rules say, as `ignore` does.
            _ => {
                if let Some(len) = self.read(&repo, root) {
                    visit(FileVisit {
                        path: root,
                        bytes: &self.buffer[..len],
                    });
                }
                Ok(())
            }
        }
    }

    /// Adds the rules of `dir`'s `.gitignore` and `.ignore` (and, at the repository
    /// root, `.git/info/exclude`).
    fn load_ignores(&mut self, handle: &Descriptor, dir: &str, is_root: bool) {
        let mut builder = GitignoreBuilder::new(dir);
        let mut any = false;
        let mut files = vec![".gitignore", ".ignore"];
        if is_root {
            files.insert(0, ".git/info/exclude");
        }
        for name in files {
            if let Some(len) = self.read(handle, name) {
                let text = String::from_utf8_lossy(&self.buffer[..len]).into_owned();
                for line in text.lines() {
                    // A bad line is skipped, as git does.
                    let _ = builder.add_line(None, line);
                    any = true;
                }
            }
        }
        if any && let Ok(matcher) = builder.build() {
            self.ignores.push(IgnoreFile { matcher });
        } else {
            // An empty entry keeps the stack aligned with the directory depth.
            self.ignores.push(IgnoreFile {
                matcher: Gitignore::empty(),
            });
        }
    }

    fn ignored(&self, path: &str, is_dir: bool) -> bool {
        for file in self.ignores.iter().rev() {
            match file.matcher.matched(path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    fn walk_dir(
        &mut self,
        handle: &Descriptor,
        dir: &str,
        visit: &mut dyn FnMut(FileVisit<'_>),
    ) -> Result<(), GuestError> {
        let stream = handle.read_directory().map_err(|e| io_error(dir, e))?;
        let mut entries = Vec::new();
        while let Ok(Some(entry)) = stream.read_directory_entry() {
            if entry.name.starts_with('.') {
                continue;
            }
            entries.push((entry.name, entry.type_));
        }
        drop(stream);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in entries {
            let path = join(dir, &name);
            let is_dir = match kind {
                DescriptorType::Directory => true,
                DescriptorType::RegularFile => false,
                // Symbolic links are never followed; nothing else holds text.
                _ => continue,
            };
            match self.overrides.matched(&path, is_dir) {
                Match::Ignore(_) => continue,
                Match::Whitelist(_) => {}
                Match::None => {
                    if self.ignored(&path, is_dir) {
                        continue;
                    }
                }
            }
            if is_dir {
                let Ok(child) = handle.open_at(
                    PathFlags::empty(),
                    &name,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                ) else {
                    continue;
                };
                self.load_ignores(&child, &path, false);
                let r = self.walk_dir(&child, &path, visit);
                self.ignores.pop();
                r?;
            } else if let Some(len) = self.read(handle, &name) {
                visit(FileVisit {
                    path: &path,
                    bytes: &self.buffer[..len],
                });
            }
        }
        Ok(())
    }

    /// Reads the regular file `name` (relative to `dir`, links not followed) into the
    /// buffer; `None` when it cannot be read or is over the size limit.
    fn read(&mut self, dir: &Descriptor, name: &str) -> Option<usize> {
        let file = dir
            .open_at(
                PathFlags::empty(),
                name,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .ok()?;
        self.buffer.clear();
        // The host allocates and zeroes the whole size asked for on every read: most
        // source files fit the first, smaller read, the rest take whole chunks.
        let mut want = FIRST_READ;
        loop {
            let offset = self.buffer.len() as u64;
            let (chunk, end) = file.read(want, offset).ok()?;
            self.buffer.extend_from_slice(&chunk);
            if self.buffer.len() as u64 > self.max_file_bytes {
                return None;
            }
            if end || (chunk.len() as u64) < want {
                return Some(self.buffer.len());
            }
            want = READ_CHUNK;
        }
    }
}
