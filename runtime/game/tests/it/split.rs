//! The held-out split on the example repositories (real histories): it is
//! deterministic, and no bug either procedural injector can make from a training
//! candidate changes a line of a held-out fix.

use ssr_game::BugMeta;
use ssr_game::inject::{Framework, history, removal, scripts};
use ssr_game::patch_ops::diff_of_changes;
use ssr_game::split::{Split, SplitJudge, function_key};
use ssr_repo::patch::{FileSide, MODE_FILE};
use ssr_repo::{FileBody, FilePatch, LineKind, Patch};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn build(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let out = tempfile::tempdir().unwrap();
    let repo = ssr_game::examples::create_one(&src.join(name), &out.path().join(name)).unwrap();
    (out, repo.path)
}

/// One bug a procedural injector could make: its diff and its provenance, written as
/// the injector writes them.
struct Candidate {
    diff: String,
    meta: BugMeta,
}

fn meta(strategy: Option<&str>, candidate: String) -> BugMeta {
    BugMeta {
        id: "b".into(),
        strategy: strategy.map(str::to_string),
        seed: None,
        candidate,
        repo: "r".into(),
        repo_path: "/r".into(),
        base_commit: None,
        framework: None,
        source: None,
    }
}

/// Every removal and history candidate of the repository.
fn candidates(repo: &Path, fw: Framework) -> Vec<Candidate> {
    let mut out = Vec::new();
    for f in scripts::repo_files(repo)
        .into_iter()
        .filter(|f| fw.is_code_file(f))
    {
        let text = std::fs::read_to_string(repo.join(&f)).unwrap();
        for site in removal::sites(fw, &f, &text) {
            let diff = diff_of_changes(repo, &[(f.clone(), Some(site.stubbed))]).unwrap();
            let what = format!("stub {f}::{}", site.function);
            out.push(Candidate {
                diff,
                meta: meta(Some("removal"), what),
            });
        }
    }
    for c in history::commits(repo).unwrap() {
        for (k, diff) in history::revert_diffs(repo, fw, &c)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let what = match k {
                0 => "revert".to_string(),
                k => format!("partial revert #{k} of"),
            };
            let candidate = format!("{what} {} \"{}\"", &c.id[..10], c.subject);
            // Only what applies at HEAD is a bug the injector can make.
            let mut files = BTreeMap::new();
            let patch = Patch::parse(&diff).unwrap();
            for t in patch.touched_paths() {
                if let Ok(b) = std::fs::read(repo.join(&t.path)) {
                    files.insert(t.path, b);
                }
            }
            if patch.apply_to_files(&mut files).is_ok() {
                out.push(Candidate {
                    diff,
                    meta: meta(Some("history"), candidate),
                });
            }
        }
    }
    out
}

/// The lines at HEAD a diff removes or rewrites, computed here from the applied
/// result (independently of the split's own bookkeeping).
fn removed_lines(repo: &Path, diff: &str) -> BTreeSet<(String, usize)> {
    let patch = Patch::parse(diff).unwrap();
    let mut files = BTreeMap::new();
    for t in patch.touched_paths() {
        if let Ok(b) = std::fs::read(repo.join(&t.path)) {
            files.insert(t.path, b);
        }
    }
    let head = files.clone();
    patch.apply_to_files(&mut files).unwrap();
    let mut out = BTreeSet::new();
    for (path, old) in &head {
        let side = |content| FileSide {
            path,
            content,
            mode: MODE_FILE,
        };
        let Some(fp) =
            FilePatch::from_contents(Some(side(old)), files.get(path).map(|n| side(n.as_slice())))
        else {
            continue;
        };
        let FileBody::Text(hunks) = fp.body else {
            continue;
        };
        for h in hunks {
            let mut at = (h.old_start as usize).saturating_sub(1);
            for l in h.lines {
                match l.kind {
                    LineKind::Context => at += 1,
                    LineKind::Removed => {
                        out.insert((path.clone(), at));
                        at += 1;
                    }
                    LineKind::Added => {}
                }
            }
        }
    }
    out
}

/// The lines of the held-out functions at HEAD.
fn held_function_lines(repo: &Path, fw: Framework, split: &Split) -> BTreeSet<(String, usize)> {
    let held: BTreeSet<&String> = split.functions.iter().collect();
    let mut out = BTreeSet::new();
    for f in scripts::repo_files(repo)
        .into_iter()
        .filter(|f| fw.is_code_file(f))
    {
        let text = std::fs::read_to_string(repo.join(&f)).unwrap();
        for site in removal::sites(fw, &f, &text) {
            if held.contains(&function_key(&f, &site.function)) {
                out.extend(site.lines.map(|l| (f.clone(), l)));
            }
        }
    }
    out
}

fn no_leak_on(name: &str) {
    let (_dir, repo) = build(name);
    let fw = Framework::detect(&repo).unwrap();
    let split = Split::make(&repo, 11, 0.25).unwrap();
    // Deterministic, and it survives its file.
    assert_eq!(split, Split::make(&repo, 11, 0.25).unwrap());
    assert_ne!(split, Split::make(&repo, 12, 0.25).unwrap());
    let file = tempfile::NamedTempFile::new().unwrap();
    split.write(file.path()).unwrap();
    assert_eq!(Split::read(file.path()).unwrap(), split);
    assert!(!split.commits.is_empty() && !split.functions.is_empty());
    assert!(split.commits_total >= 10, "{name}: {}", split.commits_total);

    let judge = SplitJudge::open(split.clone(), &repo).unwrap();
    let (mut held, mut train) = (Vec::new(), Vec::new());
    for c in candidates(&repo, fw) {
        let m = judge.judge(&[c.diff.as_str()], &c.meta).unwrap();
        if m.held_out {
            held.push((c, m));
        } else {
            train.push(c);
        }
    }
    eprintln!(
        "{name}: {} held-out functions of {}, {} held-out commits of {}; candidates: {} held out, {} training",
        split.functions.len(),
        split.functions_total,
        split.commits.len(),
        split.commits_total,
        held.len(),
        train.len()
    );
    assert!(!held.is_empty() && !train.is_empty());

    // Every line of a held-out fix: all of a held-out removal's or a held-out
    // commit's revert, and the held-out functions' share of any other held-out bug.
    let fn_lines = held_function_lines(&repo, fw, &split);
    let mut fix_lines = BTreeSet::new();
    for (c, m) in &held {
        let lines = removed_lines(&repo, &c.diff);
        if m.commit.is_some() || c.meta.strategy.as_deref() == Some("removal") {
            fix_lines.extend(lines);
        } else {
            fix_lines.extend(lines.intersection(&fn_lines).cloned());
        }
    }
    let held_commits: BTreeSet<&str> = split.commits.iter().map(|c| &c[..10]).collect();
    for t in &train {
        let leak: Vec<_> = removed_lines(&repo, &t.diff)
            .intersection(&fix_lines)
            .cloned()
            .collect();
        assert!(leak.is_empty(), "{}: {leak:?}", t.meta.candidate);
        assert!(
            !held_commits.iter().any(|c| t.meta.candidate.contains(c)),
            "{} reverts a held-out commit",
            t.meta.candidate
        );
    }

    // Whoever made it: a held-out commit's revert submitted by the model (no
    // metadata naming the commit) is held out by the lines it changes.
    let (c, _) = held
        .iter()
        .find(|(_, m)| m.commit.is_some())
        .expect("a held-out commit's revert applies");
    let model = BugMeta {
        source: Some(ssr_game::BugSource::Model),
        ..meta(None, String::new())
    };
    let m = judge.judge(&[c.diff.as_str()], &model).unwrap();
    assert!(m.held_out && m.commit.is_none(), "{m:?}");
}

#[test]
fn split_is_deterministic_and_leaks_no_held_out_fix_python() {
    no_leak_on("python-textkit");
}

#[test]
fn split_is_deterministic_and_leaks_no_held_out_fix_rust() {
    no_leak_on("rust-ledger");
}

#[test]
fn a_split_of_another_state_and_bad_files_are_typed_errors() {
    let (_dir, repo) = build("python-textkit");
    let mut split = Split::make(&repo, 1, 0.2).unwrap();
    split.head = Some("0".repeat(40));
    let e = SplitJudge::open(split, &repo).err().unwrap();
    assert!(e.to_string().contains("make a new split"), "{e}");
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "{\"functions\": 3}").unwrap();
    assert!(Split::read(f.path()).is_err());
    assert!(Split::make(&repo, 1, 1.5).is_err());
    let empty = tempfile::tempdir().unwrap();
    assert!(Split::make(empty.path(), 1, 0.2).is_err());
}
