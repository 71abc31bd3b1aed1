//! Workspace snapshots: every method available here, isolation from the base, cleanup
//! on drop, after a panic, and with a busy mount.

use crate::support::{read_tree, tree, write_tree};
use ssr_repo::snapshot::{SnapshotBase, SnapshotMethod, is_mounted, sweep_stale};

fn base_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &tree(&[
            ("a.txt", "a\n"),
            ("sub/b.txt", "b\n"),
            ("sub/deep/c.txt", "c\n"),
        ]),
    );
    std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
    dir
}

fn methods(base: &std::path::Path, scratch: &std::path::Path) -> Vec<SnapshotBase> {
    [
        SnapshotMethod::Overlay,
        SnapshotMethod::Reflink,
        SnapshotMethod::Copy,
    ]
    .into_iter()
    .filter_map(|m| SnapshotBase::with_method(base, scratch, m).ok())
    .collect()
}

#[test]
fn snapshots_are_writable_and_isolated_from_the_base() {
    let base = base_with_files();
    let scratch = tempfile::tempdir().unwrap();
    let before = read_tree(base.path());
    let bases = methods(base.path(), scratch.path());
    assert!(bases.iter().any(|b| b.method() == SnapshotMethod::Copy));
    let detected = SnapshotBase::new(base.path(), scratch.path()).unwrap();
    eprintln!("detected snapshot method here: {:?}", detected.method());
    for b in &bases {
        let s1 = b.snapshot().unwrap();
        let s2 = b.snapshot().unwrap();
        assert_eq!(s1.method(), b.method());
        assert_eq!(read_tree(s1.path()), before, "{:?}", b.method());
        std::fs::write(s1.path().join("a.txt"), "changed\n").unwrap();
        std::fs::remove_file(s1.path().join("sub/b.txt")).unwrap();
        std::fs::write(s1.path().join("new.txt"), "n\n").unwrap();
        assert_eq!(
            read_tree(base.path()),
            before,
            "{:?} changed the base",
            b.method()
        );
        assert_eq!(
            read_tree(s2.path()),
            before,
            "{:?} leaked between snapshots",
            b.method()
        );
        let dir = s1.path().parent().unwrap().to_owned();
        drop(s1);
        assert!(!dir.exists(), "{:?} left {}", b.method(), dir.display());
    }
}

#[test]
fn drop_cleans_up_after_a_panic() {
    let base = base_with_files();
    let scratch = tempfile::tempdir().unwrap();
    for b in methods(base.path(), scratch.path()) {
        let mut seen = None;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let s = b.snapshot().unwrap();
            seen = Some(s.path().to_owned());
            panic!("episode blew up");
        }));
        assert!(result.is_err());
        let path = seen.unwrap();
        assert!(!is_mounted(&path));
        assert!(!path.parent().unwrap().exists(), "{:?}", b.method());
    }
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn busy_overlay_is_detached_lazily_without_panicking() {
    let base = base_with_files();
    let scratch = tempfile::tempdir().unwrap();
    let Ok(b) = SnapshotBase::with_method(base.path(), scratch.path(), SnapshotMethod::Overlay)
    else {
        eprintln!("overlayfs cannot be mounted here; the busy-unmount path is not exercised");
        return;
    };
    let s = b.snapshot().unwrap();
    let path = s.path().to_owned();
    assert!(is_mounted(&path));
    // An open file keeps the mount busy: a plain unmount fails with EBUSY.
    let held = std::fs::File::open(path.join("a.txt")).unwrap();
    drop(s);
    assert!(!is_mounted(&path));
    drop(held);
    assert!(!path.exists());
}

#[test]
fn sweep_removes_snapshots_of_dead_processes() {
    let base = base_with_files();
    let scratch = tempfile::tempdir().unwrap();
    // What a killed process leaves: a snapshot directory named after a pid that is gone.
    let stale = scratch.path().join("ssr-snap-999999999-0");
    std::fs::create_dir_all(stale.join("tree")).unwrap();
    if let Ok(b) = SnapshotBase::with_method(base.path(), scratch.path(), SnapshotMethod::Overlay) {
        let s = b.snapshot().unwrap();
        let live_dir = s.path().parent().unwrap().to_owned();
        // Leak it as a killed process would, then rename it to a dead pid after unmount
        // is impossible; instead mount an overlay under the stale name by hand.
        std::mem::forget(s);
        let upper = stale.join("upper");
        let work = stale.join("work");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                base.path().display(),
                upper.display(),
                work.display()
            ))
            .arg(stale.join("tree"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(is_mounted(&stale.join("tree")));
        // The leaked live snapshot belongs to this (running) process: sweep keeps it.
        assert_eq!(sweep_stale(scratch.path()).unwrap(), 1);
        assert!(live_dir.exists());
        assert!(!is_mounted(&stale.join("tree")));
        // Clean the leaked one up by hand.
        let _ = std::process::Command::new("umount")
            .arg(live_dir.join("tree"))
            .status();
        std::fs::remove_dir_all(live_dir).unwrap();
    } else {
        assert_eq!(sweep_stale(scratch.path()).unwrap(), 1);
    }
    assert!(!stale.exists());
}

/// The episode flow the game uses: history-free copy as the base, a snapshot per episode,
/// a patch applied in the snapshot, and the snapshot's worktree diff giving it back.
#[test]
fn episode_flow_copy_snapshot_apply_diff() {
    use ssr_repo::copy::{CopyOptions, history_free_copy};
    use ssr_repo::{Patch, Repo};
    let src = tempfile::tempdir().unwrap();
    write_tree(
        src.path(),
        &tree(&[
            ("m.py", "def f():\n    return 1\n"),
            ("t/test_m.py", "assert True\n"),
        ]),
    );
    let work = tempfile::tempdir().unwrap();
    let base_dir = work.path().join("base");
    history_free_copy(src.path(), &base_dir, &CopyOptions::default()).unwrap();
    let base = SnapshotBase::new(&base_dir, &work.path().join("snaps")).unwrap();
    let text = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 2\n";
    let patch = Patch::parse(text).unwrap();
    let snap = base.snapshot().unwrap();
    assert!(
        Repo::open(snap.path())
            .unwrap()
            .diff_worktree()
            .unwrap()
            .is_empty()
    );
    patch.apply_to_dir(snap.path()).unwrap();
    let diff = Repo::open(snap.path()).unwrap().diff_worktree().unwrap();
    let mut files = read_tree(&base_dir);
    diff.apply_to_files(&mut files).unwrap();
    assert_eq!(files, read_tree(snap.path()));
    assert_eq!(diff.touched_paths(), patch.touched_paths());
    // The base is untouched.
    assert!(
        Repo::open(&base_dir)
            .unwrap()
            .diff_worktree()
            .unwrap()
            .is_empty()
    );
}
