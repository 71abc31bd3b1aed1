//! The read-only root filesystem a bubblewrap sandbox sees: for [`RootFs::Host`] a
//! minimal view of the host (`/usr`, the merged-/usr symlinks, a few `/etc` entries,
//! never the whole of `/`); for [`RootFs::Dir`] an unpacked image directory.
//!
//! Owns: which host paths are shown, and the per-process snapshot of the selected
//! `/etc` entries. Does not own: the workspace, `/tmp` or other mounts (`bwrap`).
//!
//! Why a snapshot of `/etc`: binding ~27 entries one by one cost ~7 ms per exec on the
//! 2-core dev machine (each bind is a mount and a read-only remount); a copy made once
//! per process is bound with one mount. The price: a change to the host's `/etc` after
//! the first exec is not seen by this process's sandboxes.

use crate::spec::RootFs;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Top-level host directories shown read-only (or recreated as symlinks on merged-/usr
/// systems) for [`RootFs::Host`].
pub(crate) const HOST_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The `/etc` entries shown for [`RootFs::Host`]: what the loader, name service, locale,
/// Debian alternatives, and common tools need. Never `shadow`, `ssh`, or the rest.
pub(crate) const HOST_ETC: &[&str] = &[
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "localtime",
    "timezone",
    "locale.alias",
    "locale.conf",
    "default/locale",
    "mime.types",
    "os-release",
    "debian_version",
    "bash.bashrc",
    "profile",
    "inputrc",
    "gitconfig",
    "pip.conf",
    "python3",
    "ssl/openssl.cnf",
    "ssl/certs",
    "ca-certificates.conf",
    "terminfo",
];

/// Prefix of the snapshot directories in the temporary directory.
const SNAPSHOT_PREFIX: &str = "ssr-sandbox-etc-";
/// Entries larger than this are not copied (nothing on the list should be).
const MAX_FILE_BYTES: u64 = 16 << 20;
/// How deep directories on the list are copied.
const MAX_DEPTH: usize = 4;

/// The `/etc` snapshot of this process, made on first use; `None` when it could not be
/// made (the entries are then bound one by one).
pub(crate) fn etc_snapshot() -> Option<&'static Path> {
    static ETC: OnceLock<Option<PathBuf>> = OnceLock::new();
    ETC.get_or_init(|| {
        sweep_stale_snapshots(&std::env::temp_dir());
        make_etc_snapshot(Path::new("/etc"), &std::env::temp_dir()).ok()
    })
    .as_deref()
}

/// Copies the [`HOST_ETC`] entries of `etc` into a fresh `<tmp>/ssr-sandbox-etc-<pid>-*/etc`
/// (the parent is mode 0700) and returns that `etc` directory.
pub(crate) fn make_etc_snapshot(etc: &Path, tmp: &Path) -> io::Result<PathBuf> {
    let parent = tempfile::Builder::new()
        .prefix(&format!("{SNAPSHOT_PREFIX}{}-", std::process::id()))
        .tempdir_in(tmp)?
        .keep();
    let out = parent.join("etc");
    fs::create_dir(&out)?;
    for entry in HOST_ETC {
        let src = etc.join(entry);
        if fs::symlink_metadata(&src).is_err() {
            continue;
        }
        let dst = out.join(entry);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p)?;
        }
        copy_entry(&src, &dst, 0)?;
    }
    Ok(out)
}

/// Copies a file, recreates a symlink as it is, recurses into a directory.
fn copy_entry(src: &Path, dst: &Path, depth: usize) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else if ft.is_dir() {
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        fs::create_dir(dst)?;
        for e in fs::read_dir(src)? {
            let e = e?;
            copy_entry(&e.path(), &dst.join(e.file_name()), depth + 1)?;
        }
        Ok(())
    } else if ft.is_file() && meta.len() <= MAX_FILE_BYTES {
        // An unreadable entry (mode 0600 of another user) is left out, not an error.
        match fs::copy(src, dst) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        Ok(())
    }
}

/// Removes snapshots of processes that no longer exist and that belong to our uid.
fn sweep_stale_snapshots(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SNAPSHOT_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let ours = e
            .metadata()
            .map(|m| m.is_dir() && m.uid() == uid)
            .unwrap_or(false);
        if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The read-only root filesystem, `/proc` and `/dev`. `skip` is the workspace's guest
/// path, whose top directory is not taken from an image (it is mounted separately).
/// `etc` is the snapshot to bind as `/etc` for [`RootFs::Host`].
pub(crate) fn rootfs_args(rootfs: &RootFs, skip: &Path, etc: Option<&Path>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<OsStr>]| {
        a.extend(items.iter().map(|i| i.as_ref().to_os_string()));
    };
    match rootfs {
        RootFs::Host => {
            for d in HOST_DIRS {
                let host = Path::new("/").join(d);
                bind_entry(&host, &host, &mut push);
            }
            match etc {
                Some(snapshot) => push(&[&"--ro-bind", &snapshot, &"/etc"]),
                None => {
                    for e in HOST_ETC {
                        let host = Path::new("/etc").join(e);
                        if host.exists() {
                            push(&[&"--ro-bind", &host, &host]);
                        }
                    }
                }
            }
        }
        RootFs::Dir(root) => {
            let top = skip
                .components()
                .nth(1)
                .map(|c| c.as_os_str().to_os_string());
            let mut entries: Vec<_> = fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            entries.sort();
            for name in entries {
                let skipped = ["proc", "dev", "tmp", "sys"].iter().any(|s| name == *s);
                if skipped || Some(&name) == top.as_ref() {
                    continue;
                }
                bind_entry(&root.join(&name), &Path::new("/").join(&name), &mut push);
            }
        }
        // Rejected by `BwrapSandbox::new`.
        RootFs::Image(_) => {}
    }
    push(&[&"--proc", &"/proc", &"--dev", &"/dev"]);
    a
}

/// A symlink is recreated as the same symlink (merged /usr: `/bin -> usr/bin`); anything
/// else is bound read-only.
fn bind_entry(host: &Path, guest: &Path, push: &mut dyn FnMut(&[&dyn AsRef<OsStr>])) {
    match fs::symlink_metadata(host) {
        Ok(m) if m.file_type().is_symlink() => {
            if let Ok(target) = fs::read_link(host) {
                push(&[&"--symlink", &target, &guest]);
            }
        }
        Ok(_) => push(&[&"--ro-bind", &host, &guest]),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_snapshot_copies_the_list_and_nothing_else() {
        let etc = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
        fs::write(etc.path().join("shadow"), "root:$6$secret").unwrap();
        fs::create_dir(etc.path().join("alternatives")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/mawk", etc.path().join("alternatives/awk")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", etc.path().join("os-release")).unwrap();
        let snap = make_etc_snapshot(etc.path(), tmp.path()).unwrap();
        assert_eq!(
            fs::read_to_string(snap.join("passwd")).unwrap(),
            "root:x:0:0::/root:/bin/bash\n"
        );
        assert!(!snap.join("shadow").exists());
        assert_eq!(
            fs::read_link(snap.join("alternatives/awk")).unwrap(),
            Path::new("/usr/bin/mawk")
        );
        assert_eq!(
            fs::read_link(snap.join("os-release")).unwrap(),
            Path::new("../usr/lib/os-release")
        );
    }

    #[test]
    fn host_rootfs_binds_the_snapshot_as_one_mount() {
        let a = rootfs_args(
            &RootFs::Host,
            Path::new("/repo"),
            Some(Path::new("/tmp/snap/etc")),
        );
        let a: Vec<String> = a
            .into_iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        assert!(
            a.windows(3)
                .any(|w| w == ["--ro-bind", "/tmp/snap/etc", "/etc"])
        );
        assert_eq!(a.iter().filter(|x| x.starts_with("/etc")).count(), 1);
        assert!(!a.iter().any(|x| x == "/"));
    }
}
