//! Repositories as data: history, diffs, patches and workspace snapshots.
//!
//! Owns: opening a repository and walking its history (gix), the `git diff`-format
//! `Patch` type (parse, print, reverse, strict all-or-nothing apply), history-free
//! copies for solver episodes, and copy-on-write workspace snapshots for episodes.
//!
//! Does not own: running anything (that is `ssr-sandbox`), or deciding what a bug is
//! (`ssr-game`).
//!
//! Modules: [`patch`] (the patch type and its strict apply), [`history`] ([`Repo`]: log,
//! commit diffs, worktree diff), [`copy`] (history-free copies), [`snapshot`]
//! (copy-on-write episode workspaces), [`mod@bench`] (snapshot against a plain copy).
//!
//! ```
//! use std::collections::BTreeMap;
//! use ssr_repo::{Patch, PathChange};
//!
//! let patch = Patch::parse(
//!     "diff --git a/f.py b/f.py\n--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 2\n",
//! )
//! .unwrap();
//! assert_eq!(patch.touched_paths()[0].change, PathChange::Modified);
//! let mut files = BTreeMap::from([("f.py".to_owned(), b"def f():\n    return 1\n".to_vec())]);
//! patch.apply_to_files(&mut files).unwrap();
//! assert_eq!(files["f.py"], b"def f():\n    return 2\n");
//! patch.reverse().apply_to_files(&mut files).unwrap();
//! assert_eq!(files["f.py"], b"def f():\n    return 1\n");
//! // Applying twice fails and changes nothing.
//! patch.apply_to_files(&mut files).unwrap();
//! let err = patch.apply_to_files(&mut files).unwrap_err();
//! assert_eq!((err.file.as_str(), err.hunk), ("f.py", Some(1)));
//! ```

pub mod bench;
pub mod copy;
pub mod history;
pub mod patch;
pub mod snapshot;

pub use history::{CommitInfo, Repo, RepoError};
pub use patch::{
    ApplyError, ApplyFailure, FileBody, FilePatch, Hunk, HunkLine, LineKind, ParseError,
    ParseFailure, Patch, PathChange, TouchedPath, UnsafePath,
};
pub use snapshot::{Snapshot, SnapshotBase, SnapshotMethod};
