//! The snapshot benchmark: making an episode snapshot against a plain recursive copy,
//! measured side by side in the same run on the same generated repository.
//!
//! Owns: generating the benchmark repository and timing both ways. Does not own: the
//! command that prints the result (`ssr bench sandbox` in the `ssr` binary).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::copy::{CopyOptions, history_free_copy};
use crate::snapshot::{SnapshotBase, SnapshotError, SnapshotMethod};

/// Result of [`snapshot_vs_copy`]; times in milliseconds (medians over the rounds).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotBench {
    /// Files in the generated repository (plus its `.git`).
    pub n_files: usize,
    /// Total bytes of those files.
    pub bytes: u64,
    /// Timed rounds per measurement.
    pub rounds: usize,
    /// The method the snapshot used (detected at run time).
    pub method: SnapshotMethod,
    /// Median time to make a snapshot.
    pub snapshot_ms: f64,
    /// Median time to drop one (unmount and remove).
    pub snapshot_drop_ms: f64,
    /// Median time of the baseline: a plain sequential recursive copy (`cp -r` in Rust).
    pub copy_ms: f64,
    /// Median time to remove the baseline copy.
    pub copy_remove_ms: f64,
    /// Time of one snapshot made with the fallback method (parallel copy), for hosts
    /// without overlayfs or reflinks (one round).
    pub fallback_copy_ms: f64,
    /// `copy_ms / snapshot_ms`: how many times faster the snapshot is (target ≥ 10).
    pub speedup: f64,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Writing the generated repository or the copies failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Making the repository failed.
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// Making a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Writes `n_files` small source files (100 per directory) under `dir`; returns bytes.
fn generate_files(dir: &Path, n_files: usize) -> std::io::Result<u64> {
    let mut bytes = 0u64;
    for i in 0..n_files {
        let sub = dir.join(format!("pkg{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let body = format!(
            "# module {i}\n\ndef f_{i}(x):\n    return x * {i} + {}\n\n\nclass C{i}:\n    value = {i}\n",
            i % 7
        )
        .repeat(4);
        bytes += body.len() as u64;
        std::fs::write(sub.join(format!("mod_{i}.py")), body)?;
    }
    Ok(bytes)
}

/// Sequential recursive copy, the baseline (what `cp -r` does).
fn plain_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let to = dest.join(entry.file_name());
        if ft.is_dir() {
            plain_copy(&entry.path(), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Generates an `n_files` repository (committed with gix) in a temporary directory and
/// times, over `rounds` rounds each, making and dropping a snapshot of it against a plain
/// recursive copy and its removal. Everything it makes is removed before it returns.
pub fn snapshot_vs_copy(n_files: usize, rounds: usize) -> Result<SnapshotBench, BenchError> {
    let rounds = rounds.max(1);
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    std::fs::create_dir(&src)?;
    let bytes = generate_files(&src, n_files)?;
    let repo = work.path().join("repo");
    history_free_copy(&src, &repo, &CopyOptions::default())?;
    let base = SnapshotBase::new(&repo, &work.path().join("snapshots"))?;

    let (mut snap, mut snap_drop, mut copy, mut copy_rm) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let t = Instant::now();
        let snapshot = base.snapshot()?;
        snap.push(t.elapsed());
        let t = Instant::now();
        drop(snapshot);
        snap_drop.push(t.elapsed());

        let dest = work.path().join(format!("copy{round}"));
        let t = Instant::now();
        plain_copy(&repo, &dest)?;
        copy.push(t.elapsed());
        let t = Instant::now();
        std::fs::remove_dir_all(&dest)?;
        copy_rm.push(t.elapsed());
    }
    let fallback =
        SnapshotBase::with_method(&repo, &work.path().join("snapshots"), SnapshotMethod::Copy)?;
    let t = Instant::now();
    let fallback_snapshot = fallback.snapshot()?;
    let fallback_copy_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(fallback_snapshot);
    let snapshot_ms = median_ms(snap);
    let copy_ms = median_ms(copy);
    Ok(SnapshotBench {
        n_files,
        bytes,
        rounds,
        method: base.method(),
        snapshot_ms,
        snapshot_drop_ms: median_ms(snap_drop),
        copy_ms,
        copy_remove_ms: median_ms(copy_rm),
        fallback_copy_ms,
        speedup: if snapshot_ms > 0.0 {
            copy_ms / snapshot_ms
        } else {
            f64::INFINITY
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_runs_and_reports_both_sides() {
        let result = snapshot_vs_copy(50, 1).unwrap();
        assert_eq!(result.n_files, 50);
        assert!(result.copy_ms > 0.0);
        assert!(result.snapshot_ms > 0.0);
        assert!(result.bytes > 0);
    }
}
