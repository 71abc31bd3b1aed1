//! The held-out split of a repository's bugs, by function and by commit (issue 14):
//! a seeded choice of the repository's functions (at HEAD, as the removal injector
//! finds them) and of its commits (as the history injector reverts them) whose fixes
//! are kept out of training.
//!
//! A bug is held out when its patch changes a line of a held-out function, or its
//! metadata says it reverts a held-out commit. The same test excludes a bug from
//! training, whoever made it (a procedural injector, the model, a higher-order
//! failure): "held out" and "excluded from training" are one predicate, so no held-out
//! fix can appear in a training bug. Why the functions a held-out commit changed are
//! held out too: a removal bug on such a function would have as its fix the whole
//! body at HEAD, held-out commit included.
//!
//! The split is a JSON file ([`Split`]) the user keeps; [`SplitJudge`] applies it to
//! bugs. Functions are named `<file>::<function>`; two functions of one name in one
//! file share the name, and so their fate (conservative: both held out or neither).
//!
//! Owns: the split's format, its seeded making, the judgement of one bug. Does not own:
//! finding functions (`inject::removal`), reading history (`inject::history`), line
//! diffs (`ssr-repo`).

use crate::bug_store::BugMeta;
use crate::inject::removal::{self, RemovalSite};
use crate::inject::{Framework, history, scripts};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use regex::Regex;
use serde::{Deserialize, Serialize};
use ssr_repo::patch::{FileSide, MODE_FILE};
use ssr_repo::{FileBody, FilePatch, LineKind, Patch};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

/// The format version written in every split file.
pub const SPLIT_VERSION: u32 = 1;

/// A held-out split (the JSON file `ssr split` writes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub version: u32,
    /// The repository's HEAD when the split was made (functions are listed there).
    pub head: Option<String>,
    pub seed: u64,
    /// The share of functions and of commits drawn as held out.
    pub fraction: f64,
    /// Functions found at HEAD, and commits in the history.
    pub functions_total: usize,
    pub commits_total: usize,
    /// Held-out functions, `<file>::<function>`, sorted: the ones drawn and the ones a
    /// held-out commit changed.
    pub functions: Vec<String>,
    /// Held-out commits, full ids, sorted.
    pub commits: Vec<String>,
    /// Per file, the lines at HEAD (0-based, `[start, end)`) that a held-out commit's
    /// revert changes, in functions or not: a bug changing one of them carries part
    /// of a held-out fix (a module constant two commits both edited, say).
    pub lines: BTreeMap<String, Vec<(usize, usize)>>,
}

/// Why a split could not be made, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("no supported test framework found in {0} (pytest tests or a Cargo.toml)")]
    NoFramework(PathBuf),
    #[error("the held-out fraction must lie in [0, 1], not {0}")]
    Fraction(f64),
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a split file: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: split format version {found}, this program reads {SPLIT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error(
        "the split was made at commit {split} but the repository is at {repo}: make a new \
         split (`ssr split`) for this state"
    )]
    Head { split: String, repo: String },
    #[error("bug {bug}: its patch cannot be read against the repository: {reason}")]
    Patch { bug: String, reason: String },
    #[error("reading the bugs: {0}")]
    Store(#[from] crate::bug_store::StoreError),
}

/// Where one bug falls, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Held out (and so excluded from training).
    pub held_out: bool,
    /// The held-out functions its patch changes.
    pub functions: Vec<String>,
    /// The held-out commit it reverts.
    pub commit: Option<String>,
    /// The held-out lines it changes, `<file>:<first>-<last>` (1-based).
    pub lines: Vec<String>,
}

/// `<file>::<function>`, the one spelling of a function in a split.
pub fn function_key(file: &str, function: &str) -> String {
    format!("{file}::{function}")
}

/// A seeded draw of `fraction` of `items` (sorted first, so the draw depends only on
/// the set and the seed): at least one when there are items and the fraction is
/// above 0.
fn draw(mut items: Vec<String>, fraction: f64, seed: u64) -> Vec<String> {
    items.sort();
    items.dedup();
    let mut n = (items.len() as f64 * fraction).round() as usize;
    if fraction > 0.0 && !items.is_empty() {
        n = n.max(1);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    items.shuffle(&mut rng);
    items.truncate(n);
    items.sort();
    items
}

impl Split {
    /// Draws a split of `repo` (a git repository with tests) with `seed`.
    pub fn make(repo: &Path, seed: u64, fraction: f64) -> Result<Split, SplitError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(SplitError::Fraction(fraction));
        }
        let framework =
            Framework::detect(repo).ok_or_else(|| SplitError::NoFramework(repo.into()))?;
        let functions: BTreeSet<String> = scripts::repo_files(repo)
            .into_iter()
            .filter(|f| framework.is_code_file(f))
            .flat_map(|f| file_sites(repo, framework, &f))
            .map(|s| function_key(&s.file, &s.function))
            .collect();
        let commits = history::commits(repo)?;
        let functions_total = functions.len();
        let ids = commits.iter().map(|c| c.id.clone()).collect();
        let held_commits = draw(ids, fraction, seed);
        // Different streams for the two draws (the same seed would couple them).
        let mut held: BTreeSet<String> = draw(
            functions.into_iter().collect(),
            fraction,
            seed ^ 0x9e37_79b9_7f4a_7c15,
        )
        .into_iter()
        .collect();
        let mut spans = FileSpans::new(repo, framework);
        let mut lines: BTreeMap<String, Vec<Range<usize>>> = BTreeMap::new();
        for c in commits.iter().filter(|c| held_commits.contains(&c.id)) {
            // Each revert diff that applies at HEAD (whole, or file by file) is a bug
            // the history injector can make: every function and line it changes is
            // held out.
            for diff in history::revert_diffs(repo, framework, c)? {
                let Ok(changes) = spans.changes(&[diff.as_str()]) else {
                    continue;
                };
                held.extend(spans.functions_in(&changes));
                for (file, ranges) in changes {
                    // An insertion point holds out its two neighbouring lines.
                    let held_lines = ranges.into_iter().map(|r| match r.is_empty() {
                        true => r.start.saturating_sub(1)..r.start + 1,
                        false => r,
                    });
                    lines.entry(file).or_default().extend(held_lines);
                }
            }
        }
        Ok(Split {
            version: SPLIT_VERSION,
            head: crate::bug_store::head_commit(repo),
            seed,
            fraction,
            functions_total,
            commits_total: commits.len(),
            functions: held.into_iter().collect(),
            commits: held_commits,
            lines: lines
                .into_iter()
                .map(|(file, ranges)| (file, merged(ranges)))
                .collect(),
        })
    }

    /// Reads a split file.
    pub fn read(path: &Path) -> Result<Split, SplitError> {
        let text = std::fs::read_to_string(path).map_err(|source| SplitError::Io {
            path: path.into(),
            source,
        })?;
        let split: Split = serde_json::from_str(&text).map_err(|source| SplitError::Json {
            path: path.into(),
            source,
        })?;
        if split.version != SPLIT_VERSION {
            return Err(SplitError::Version {
                path: path.into(),
                found: split.version,
            });
        }
        Ok(split)
    }

    /// Writes the split file (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<(), SplitError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| SplitError::Json {
            path: path.into(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| SplitError::Io {
            path: path.into(),
            source,
        })
    }
}

/// The removal sites of one file at HEAD (none when it cannot be read as text).
fn file_sites(repo: &Path, framework: Framework, file: &str) -> Vec<RemovalSite> {
    std::fs::read_to_string(repo.join(file))
        .map(|text| removal::sites(framework, file, &text))
        .unwrap_or_default()
}

/// The functions of the repository's files at HEAD, read once per file, and the
/// functions a patch changes.
struct FileSpans {
    repo: PathBuf,
    framework: Framework,
    /// Per file: each function's key and lines.
    files: BTreeMap<String, Vec<(String, Range<usize>)>>,
}

impl FileSpans {
    fn new(repo: &Path, framework: Framework) -> Self {
        FileSpans {
            repo: repo.to_path_buf(),
            framework,
            files: BTreeMap::new(),
        }
    }

    fn spans(&mut self, file: &str) -> &[(String, Range<usize>)] {
        let (repo, framework) = (&self.repo, self.framework);
        self.files.entry(file.to_string()).or_insert_with(|| {
            file_sites(repo, framework, file)
                .into_iter()
                .map(|s| (function_key(&s.file, &s.function), s.lines))
                .collect()
        })
    }

    /// The lines at HEAD of each code file that `patches`, applied in order to HEAD,
    /// change ([`changed_lines`]). Why re-diff rather than read the hunks' line
    /// numbers: a history bug's hunks are numbered in the reverted commit's file, and a
    /// higher-order patch's in the buggy one; the line diff of HEAD against the result
    /// is numbered in HEAD.
    fn changes(&mut self, patches: &[&str]) -> Result<Changes, String> {
        let parsed: Vec<Patch> = patches
            .iter()
            .map(|p| Patch::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let paths: BTreeSet<String> = parsed
            .iter()
            .flat_map(Patch::touched_paths)
            .map(|t| t.path)
            .filter(|p| self.framework.is_code_file(p))
            .collect();
        let mut files = BTreeMap::new();
        for p in &paths {
            if let Ok(bytes) = std::fs::read(self.repo.join(p)) {
                files.insert(p.clone(), bytes);
            }
        }
        let head = files.clone();
        for p in &parsed {
            // Only the code files were loaded: the rest of the patch (tests) is left out.
            let (code, _) = p.partition(|f| f.paths().all(|x| paths.contains(x)));
            code.apply_to_files(&mut files).map_err(|e| e.to_string())?;
        }
        Ok(head
            .iter()
            .map(|(path, old)| {
                let new = files.get(path).map(Vec::as_slice);
                (path.clone(), changed_lines(path, old, new))
            })
            .collect())
    }

    /// The functions (at HEAD) that `changes` touch.
    fn functions_in(&mut self, changes: &Changes) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (path, changed) in changes {
            for (key, lines) in self.spans(path) {
                if changed.iter().any(|c| overlaps(c, lines)) {
                    out.insert(key.clone());
                }
            }
        }
        out
    }
}

/// Per code file, the changed lines at HEAD.
type Changes = BTreeMap<String, Vec<Range<usize>>>;

/// Sorted ranges with overlapping and adjacent ones joined.
fn merged(mut ranges: Vec<Range<usize>>) -> Vec<(usize, usize)> {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<(usize, usize)> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.1 => last.1 = last.1.max(r.end),
            _ => out.push((r.start, r.end)),
        }
    }
    out
}

/// The old-side lines a change of `path` from `old` to `new` (`None`: deleted)
/// touches: removed lines as ranges, insertions as empty ranges at their place.
fn changed_lines(path: &str, old: &[u8], new: Option<&[u8]>) -> Vec<Range<usize>> {
    let side = |content| FileSide {
        path,
        content,
        mode: MODE_FILE,
    };
    let Some(fp) = FilePatch::from_contents(Some(side(old)), new.map(side)) else {
        return Vec::new();
    };
    let FileBody::Text(hunks) = fp.body else {
        // Binary either way: the whole file.
        return std::iter::once(0..usize::MAX).collect();
    };
    let mut out = Vec::new();
    for h in hunks {
        let mut at = (h.old_start as usize).saturating_sub(1);
        if h.old_len == 0 {
            // An empty old side names the line before the insertion.
            at = h.old_start as usize;
        }
        for l in &h.lines {
            match l.kind {
                LineKind::Context => at += 1,
                LineKind::Removed => {
                    out.push(at..at + 1);
                    at += 1;
                }
                LineKind::Added => out.push(at..at),
            }
        }
    }
    out
}

/// Whether a changed range touches a function's lines. An insertion touches the
/// function it lands inside, or right after its last line (conservative: a line
/// appended to a body ends there too).
fn overlaps(changed: &Range<usize>, function: &Range<usize>) -> bool {
    if changed.is_empty() {
        function.start < changed.start && changed.start <= function.end
    } else {
        changed.start < function.end && function.start < changed.end
    }
}

/// The commit a history bug reverts, from its candidate (`revert <id> "…"`,
/// `partial revert #k of <id> "…"`).
fn reverted_commit(meta: &BugMeta) -> Option<&str> {
    static REVERT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:revert|partial revert #\d+ of) ([0-9a-f]{7,40})\b").unwrap()
    });
    if meta.strategy.as_deref() != Some("history") {
        return None;
    }
    REVERT
        .captures(&meta.candidate)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// A split applied to the bugs of its repository.
pub struct SplitJudge {
    split: Split,
    functions: BTreeSet<String>,
    spans: Mutex<FileSpans>,
}

impl SplitJudge {
    /// The judge of `split` over `repo`, which must be at the split's HEAD (else the
    /// functions' lines would not be the split's).
    pub fn open(split: Split, repo: &Path) -> Result<SplitJudge, SplitError> {
        let framework =
            Framework::detect(repo).ok_or_else(|| SplitError::NoFramework(repo.into()))?;
        let head = crate::bug_store::head_commit(repo);
        if let (Some(s), Some(r)) = (&split.head, &head)
            && s != r
        {
            return Err(SplitError::Head {
                split: s.clone(),
                repo: r.clone(),
            });
        }
        Ok(SplitJudge {
            functions: split.functions.iter().cloned().collect(),
            split,
            spans: Mutex::new(FileSpans::new(repo, framework)),
        })
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    /// Where a bug falls: `patches` are its changes to the original in order (the
    /// bug's diff, then a higher-order bug's failed patch), `meta` its provenance.
    pub fn judge(&self, patches: &[&str], meta: &BugMeta) -> Result<Membership, SplitError> {
        let commit = reverted_commit(meta).and_then(|short| {
            self.split
                .commits
                .iter()
                .find(|c| c.starts_with(short))
                .cloned()
        });
        let mut spans = self
            .spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changes = spans.changes(patches).map_err(|reason| SplitError::Patch {
            bug: meta.id.clone(),
            reason,
        })?;
        let functions: Vec<String> = spans
            .functions_in(&changes)
            .into_iter()
            .filter(|f| self.functions.contains(f))
            .collect();
        let lines = self.held_lines(&changes);
        Ok(Membership {
            held_out: commit.is_some() || !functions.is_empty() || !lines.is_empty(),
            functions,
            commit,
            lines,
        })
    }

    /// The held-out line ranges `changes` touch.
    fn held_lines(&self, changes: &Changes) -> Vec<String> {
        let mut out = Vec::new();
        for (file, changed) in changes {
            for &(a, b) in self.split.lines.get(file).into_iter().flatten() {
                if changed.iter().any(|c| overlaps(c, &(a..b))) {
                    out.push(format!("{file}:{}-{b}", a + 1));
                }
            }
        }
        out
    }

    /// The stored bugs under `root` (`ssr inject`'s layout) with where each falls,
    /// sorted by id.
    pub fn judge_dir(&self, root: &Path) -> Result<Vec<(String, Membership)>, SplitError> {
        let mut out = Vec::new();
        for dir in crate::bug_store::list(root)? {
            let bug = crate::bug_store::read(&dir)?;
            let m = self.judge(&[bug.artifact.bug_inject.as_str()], &bug.meta)?;
            out.push((bug.meta.id, m));
        }
        Ok(out)
    }

    /// Where an in-memory bug falls.
    pub fn judge_bug(&self, bug: &crate::Bug) -> Result<Membership, SplitError> {
        let mut patches = vec![bug.artifact.bug_inject.as_str()];
        patches.extend(bug.higher_order_patch.as_deref());
        self.judge(&patches, &bug.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_is_seeded_and_takes_the_fraction() {
        let items: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let a = draw(items.clone(), 0.25, 7);
        let mut shuffled = items.clone();
        shuffled.reverse();
        assert_eq!(a, draw(shuffled, 0.25, 7), "order of the input matters not");
        assert_eq!(a.len(), 5);
        assert_ne!(a, draw(items.clone(), 0.25, 8));
        assert_eq!(draw(items.clone(), 0.01, 1).len(), 1, "at least one");
        assert!(draw(items, 0.0, 1).is_empty());
    }

    #[test]
    fn changed_lines_are_numbered_in_the_old_file() {
        let old = b"a\nb\nc\nd\ne\n";
        let new = b"a\nB\nc\nd\ne\nf\n";
        assert_eq!(
            changed_lines("m.py", old, Some(new)),
            vec![1..2, 2..2, 5..5]
        );
        assert_eq!(
            changed_lines("m.py", old, Some(old)),
            Vec::<Range<usize>>::new()
        );
        assert_eq!(
            changed_lines("m.py", old, None),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
    }

    #[test]
    fn insertions_touch_the_function_they_land_in() {
        let f = 3..7;
        assert!(overlaps(&(4..4), &f));
        assert!(overlaps(&(7..7), &f), "appended to the body");
        assert!(!overlaps(&(3..3), &f), "above the def");
        assert!(!overlaps(&(8..8), &f));
        assert!(overlaps(&(6..7), &f));
        assert!(!overlaps(&(7..8), &f));
    }

    #[test]
    fn reverted_commits_are_read_from_history_candidates_only() {
        let meta = |strategy: Option<&str>, candidate: &str| BugMeta {
            id: "b".into(),
            strategy: strategy.map(str::to_string),
            seed: None,
            candidate: candidate.into(),
            repo: "r".into(),
            repo_path: "/r".into(),
            base_commit: None,
            framework: None,
            source: None,
        };
        let m = meta(Some("history"), "revert 0123456789 \"fix: x\"");
        assert_eq!(reverted_commit(&m), Some("0123456789"));
        let m = meta(Some("history"), "partial revert #2 of abcdef1234 \"y\"");
        assert_eq!(reverted_commit(&m), Some("abcdef1234"));
        assert_eq!(
            reverted_commit(&meta(Some("removal"), "revert 0123456789")),
            None
        );
        assert_eq!(reverted_commit(&meta(None, "stub m.py::f")), None);
    }
}
