//! Workspace snapshots for episodes: one read-only base per repository, a thin writable
//! copy-on-write layer per episode.
//!
//! Owns: choosing the method at run time ([`SnapshotMethod`]: overlayfs where mounting one
//! works, else `FICLONE` reflinks where the filesystem shares extents, else a parallel full
//! copy), making a [`Snapshot`], and tearing it down on `Drop` (also while unwinding from
//! a panic): unmount (lazily if the mount is busy), then remove every directory it made.
//! [`sweep_stale`] removes what a killed process left behind. Does not own: what runs in
//! the snapshot (`ssr-sandbox`), or the base's content (`crate::copy`).
//!
//! Overlays are mounted `volatile` where the kernel has it: nothing a snapshot writes is
//! ever synced to disk (its upper layer is deleted after use).
//!
//! Hard links are never used: a write through a hard link would change the base.
//! The base must not change while snapshots of it exist (overlayfs forbids it).
//!
//! Hidden names ([`SnapshotBase::hiding`]): top-level entries of the base that snapshots
//! must not show (a repository's `.git`, so code under test cannot read the original from
//! its history). A copy or reflink skips them; an overlay gets a whiteout for each in its
//! upper layer before mounting (a `0:0` character device, which needs `CAP_MKNOD`: where
//! one cannot be made, the base falls back to reflinks or copies).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How a snapshot's writable tree was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMethod {
    /// An overlayfs mount: the base as the lower layer, an empty upper layer.
    Overlay,
    /// A tree of reflinked (`FICLONE`) files sharing the base's extents.
    Reflink,
    /// A full copy, files copied in parallel.
    Copy,
}

/// Errors making a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The base is not a directory.
    #[error("snapshot base {0} is not a directory")]
    BaseNotADirectory(PathBuf),
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A name given to [`SnapshotBase::hiding`] that is not one plain path component.
    #[error("hidden name {0:?} must be one path component (not empty, `.`, `..`, no `/`)")]
    BadHiddenName(String),
    /// The requested method does not work on this host or filesystem.
    #[error("snapshot method {method:?} is not available here: {reason}")]
    Unavailable {
        /// The method asked for.
        method: SnapshotMethod,
        /// Why not.
        reason: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Prefix of every directory this module makes under a scratch directory.
const SNAP_PREFIX: &str = "ssr-snap-";

/// A base tree and the scratch directory where its snapshots live.
#[derive(Debug, Clone)]
pub struct SnapshotBase {
    base: PathBuf,
    scratch: PathBuf,
    method: SnapshotMethod,
    /// Top-level names of the base that snapshots do not show.
    hidden: Vec<String>,
}

impl SnapshotBase {
    /// Uses `base` (a directory, treated as read-only from now on) and puts snapshots
    /// under `scratch` (created if missing; best on the same filesystem as `base`, which
    /// reflinks need). Probes the best method once.
    pub fn new(base: &Path, scratch: &Path) -> Result<SnapshotBase, SnapshotError> {
        let (base, scratch) = prepare(base, scratch)?;
        let method = if probe_overlay(&base, &scratch).is_ok() {
            SnapshotMethod::Overlay
        } else if probe_reflink(&base, &scratch).is_ok() {
            SnapshotMethod::Reflink
        } else {
            SnapshotMethod::Copy
        };
        Ok(SnapshotBase {
            base,
            scratch,
            method,
            hidden: Vec::new(),
        })
    }

    /// Hides the top-level entries `names` of the base from every snapshot (for example
    /// `.git`). Each name must be one path component. An overlay base whose host cannot
    /// make whiteouts falls back to reflinks, else copies.
    pub fn hiding(mut self, names: &[&str]) -> Result<SnapshotBase, SnapshotError> {
        for name in names {
            if name.is_empty() || *name == "." || *name == ".." || name.contains(['/', '\0']) {
                return Err(SnapshotError::BadHiddenName((*name).to_owned()));
            }
            if !self.hidden.iter().any(|h| h == name) {
                self.hidden.push((*name).to_owned());
            }
        }
        if self.method == SnapshotMethod::Overlay
            && !self.hidden.is_empty()
            && probe_whiteout(&self.scratch).is_err()
        {
            self.method = if probe_reflink(&self.base, &self.scratch).is_ok() {
                SnapshotMethod::Reflink
            } else {
                SnapshotMethod::Copy
            };
        }
        Ok(self)
    }

    /// The top-level names snapshots do not show.
    pub fn hidden(&self) -> &[String] {
        &self.hidden
    }

    /// Like [`SnapshotBase::new`] but with a chosen method; fails with
    /// [`SnapshotError::Unavailable`] when it does not work here.
    pub fn with_method(
        base: &Path,
        scratch: &Path,
        method: SnapshotMethod,
    ) -> Result<SnapshotBase, SnapshotError> {
        let (base, scratch) = prepare(base, scratch)?;
        let probe = match method {
            SnapshotMethod::Overlay => probe_overlay(&base, &scratch),
            SnapshotMethod::Reflink => probe_reflink(&base, &scratch),
            SnapshotMethod::Copy => Ok(()),
        };
        probe.map_err(|reason| SnapshotError::Unavailable { method, reason })?;
        Ok(SnapshotBase {
            base,
            scratch,
            method,
            hidden: Vec::new(),
        })
    }

    /// The method snapshots of this base use.
    pub fn method(&self) -> SnapshotMethod {
        self.method
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Makes a fresh writable snapshot of the base.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        let dir = new_snapshot_dir(&self.scratch)?;
        // From here on, Drop cleans up whatever was made, also on an error below.
        let mut snapshot = Snapshot {
            path: dir.join("tree"),
            dir,
            method: self.method,
            mounted: false,
        };
        match self.method {
            SnapshotMethod::Overlay => {
                let (upper, work) = (snapshot.dir.join("upper"), snapshot.dir.join("work"));
                for d in [&upper, &work, &snapshot.path] {
                    std::fs::create_dir(d).map_err(io_err("creating", d))?;
                }
                for name in &self.hidden {
                    if self.base.join(name).symlink_metadata().is_ok() {
                        let w = upper.join(name);
                        make_whiteout(&w).map_err(io_err("making a whiteout", &w))?;
                    }
                }
                mount_overlay(&self.base, &upper, &work, &snapshot.path).map_err(|reason| {
                    SnapshotError::Unavailable {
                        method: SnapshotMethod::Overlay,
                        reason,
                    }
                })?;
                snapshot.mounted = true;
            }
            SnapshotMethod::Reflink => {
                copy_tree_hiding(&self.base, &snapshot.path, true, &self.hidden)?
            }
            SnapshotMethod::Copy => {
                copy_tree_hiding(&self.base, &snapshot.path, false, &self.hidden)?
            }
        }
        Ok(snapshot)
    }
}

fn prepare(base: &Path, scratch: &Path) -> Result<(PathBuf, PathBuf), SnapshotError> {
    if !base.is_dir() {
        return Err(SnapshotError::BaseNotADirectory(base.to_owned()));
    }
    std::fs::create_dir_all(scratch).map_err(io_err("creating", scratch))?;
    let base = base.canonicalize().map_err(io_err("resolving", base))?;
    let scratch = scratch
        .canonicalize()
        .map_err(io_err("resolving", scratch))?;
    Ok((base, scratch))
}

fn new_snapshot_dir(scratch: &Path) -> Result<PathBuf, SnapshotError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = scratch.join(format!("{SNAP_PREFIX}{}-{n}", std::process::id()));
    std::fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
    Ok(dir)
}

/// A writable copy-on-write view of a base. Dropping it unmounts and deletes it.
#[derive(Debug)]
pub struct Snapshot {
    /// The directory holding everything this snapshot made.
    dir: PathBuf,
    /// The writable tree.
    path: PathBuf,
    method: SnapshotMethod,
    mounted: bool,
}

impl Snapshot {
    /// The writable tree: the base's files, changes private to this snapshot.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the tree was made.
    pub fn method(&self) -> SnapshotMethod {
        self.method
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.mounted && unmount(&self.path).is_err() {
            // Still mounted: removing the tree would only write whiteouts into the upper
            // layer. Leave it for `sweep_stale`.
            eprintln!(
                "ssr-repo: could not unmount snapshot {}; left for sweep_stale",
                self.path.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts `path`; a busy mount is detached lazily (it disappears when the last user
/// leaves). Never panics.
fn unmount(path: &Path) -> Result<(), std::io::Error> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives both calls.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    Err(std::io::Error::last_os_error())
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), String> {
    for p in [lower, upper, work] {
        let bytes = p.as_os_str().as_bytes();
        if bytes.contains(&b',') || bytes.contains(&b':') {
            return Err(format!(
                "overlay paths cannot hold ',' or ':': {}",
                p.display()
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    // `volatile` (Linux 5.10+) skips syncing the upper layer, above all the sync of
    // everything a run wrote (a cargo `target/`) when the snapshot is unmounted: a
    // snapshot is thrown away after use, so its writes never need to reach the disk.
    // Kernels without it refuse the option; mount again without.
    mount_with(&format!("{data},volatile"), target).or_else(|_| mount_with(&data, target))
}

fn mount_with(data: &str, target: &Path) -> Result<(), String> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|e| e.to_string());
    let source = cstr(b"overlay")?;
    let fstype = cstr(b"overlay")?;
    let target_c = cstr(target.as_os_str().as_bytes())?;
    let data_c = cstr(data.as_bytes())?;
    // SAFETY: all pointers are valid NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            data_c.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("mount: {}", std::io::Error::last_os_error()))
    }
}

/// Makes an overlayfs whiteout (a `0:0` character device) at `path`.
fn make_whiteout(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that lives across the call; device 0
    // with S_IFCHR is the whiteout overlayfs defines.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes and removes one whiteout under `scratch` to see whether this process may.
fn probe_whiteout(scratch: &Path) -> Result<(), String> {
    let dir = new_snapshot_dir(scratch).map_err(|e| e.to_string())?;
    let result = make_whiteout(&dir.join("probe")).map_err(|e| format!("mknod: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Mounts and unmounts a throwaway overlay of `base` to see whether this host allows it.
fn probe_overlay(base: &Path, scratch: &Path) -> Result<(), String> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Err("the kernel has no overlay filesystem".into());
    }
    let dir = new_snapshot_dir(scratch).map_err(|e| e.to_string())?;
    let result = (|| {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("tree"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        mount_overlay(base, &upper, &work, &merged)?;
        unmount(&merged).map_err(|e| format!("unmounting the probe: {e}"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `ioctl(FICLONE)`: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

fn reflink(src: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let from = std::fs::File::open(src)?;
    let to = std::fs::File::create(dest)?;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the
    // source descriptor as its integer argument.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) };
    if rc == 0 {
        to.set_permissions(from.metadata()?.permissions())?;
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        drop(to);
        let _ = std::fs::remove_file(dest);
        Err(err)
    }
}

/// Reflinks one file of `base` into scratch to see whether the filesystem shares extents.
fn probe_reflink(base: &Path, scratch: &Path) -> Result<(), String> {
    let mut stack = vec![base.to_owned()];
    let mut sample = None;
    'walk: while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let ft = entry.file_type().map_err(|e| e.to_string())?;
            if ft.is_file() {
                sample = Some(entry.path());
                break 'walk;
            } else if ft.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    let Some(sample) = sample else {
        return Err("the base has no file to probe with".into());
    };
    let dest = scratch.join(format!("{SNAP_PREFIX}{}-reflink-probe", std::process::id()));
    let result = reflink(&sample, &dest).map_err(|e| format!("FICLONE: {e}"));
    let _ = std::fs::remove_file(&dest);
    result
}

/// Copies (or reflinks) the tree `src` to `dest`: directories and symlinks first, then
/// files in parallel.
/// Top-level entries named in `hidden` are left out.
fn copy_tree_hiding(
    src: &Path,
    dest: &Path,
    use_reflink: bool,
    hidden: &[String],
) -> Result<(), SnapshotError> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    std::fs::create_dir(dest).map_err(io_err("creating", dest))?;
    let mut stack = vec![(src.to_owned(), dest.to_owned())];
    while let Some((from_dir, to_dir)) = stack.pop() {
        let top = from_dir == src;
        for entry in std::fs::read_dir(&from_dir).map_err(io_err("listing", &from_dir))? {
            let entry = entry.map_err(io_err("listing", &from_dir))?;
            if top && hidden.iter().any(|h| entry.file_name() == h.as_str()) {
                continue;
            }
            let (from, to) = (entry.path(), to_dir.join(entry.file_name()));
            let ft = entry.file_type().map_err(io_err("inspecting", &from))?;
            if ft.is_dir() {
                std::fs::create_dir(&to).map_err(io_err("creating", &to))?;
                stack.push((from, to));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&from).map_err(io_err("reading link", &from))?;
                std::os::unix::fs::symlink(target, &to).map_err(io_err("creating link", &to))?;
            } else if ft.is_file() {
                files.push((from, to));
            }
        }
    }
    files.par_iter().try_for_each(|(from, to)| {
        let done = use_reflink && reflink(from, to).is_ok();
        if done {
            return Ok(());
        }
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(io_err("copying", to))
    })
}

/// Unmounts and removes snapshot directories under `scratch` left by processes that are
/// gone (killed before their `Drop` ran). Returns how many directories were removed.
pub fn sweep_stale(scratch: &Path) -> Result<usize, SnapshotError> {
    let Ok(scratch) = scratch.canonicalize() else {
        return Ok(0);
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect();
    let mut removed = 0;
    for entry in std::fs::read_dir(&scratch).map_err(io_err("listing", &scratch))? {
        let entry = entry.map_err(io_err("listing", &scratch))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SNAP_PREFIX) else {
            continue;
        };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            continue;
        }
        let dir = entry.path();
        for mount in mounts.iter().filter(|m| m.starts_with(&dir)) {
            let _ = unmount(mount);
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len() + 1
            && bytes
                .get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when `path` is a mount point in this process's mount namespace (for tests and
/// diagnostics).
pub fn is_mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(&unescape_mountinfo(p)) == path)
}
