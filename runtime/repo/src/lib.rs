//! Repositories as data: history, diffs, patches and workspace snapshots.
//!
//! Owns: opening a repository and walking its history (gix), the `git diff`-format
//! `Patch` type (parse, print, reverse, strict all-or-nothing apply), history-free
//! copies for solver episodes, and copy-on-write workspace snapshots for episodes.
//!
//! Does not own: running anything (that is `ssr-sandbox`), or deciding what a bug is
//! (`ssr-game`).

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
