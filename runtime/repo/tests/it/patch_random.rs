//! Property-style check over many seeded random edits of random files: our diff, our
//! apply, `git apply` and `git diff` must all agree, and reversing must restore the original.

use crate::support::{Tree, git_apply, git_diff};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssr_repo::Patch;
use ssr_repo::patch::FileSide;

/// A small alphabet of lines, so repeated lines make ambiguous contexts.
fn random_line(rng: &mut ChaCha8Rng) -> String {
    const WORDS: [&str; 6] = ["alpha", "beta", "", "    return x", "}", "gamma delta"];
    let mut line = WORDS[rng.gen_range(0..WORDS.len())].to_owned();
    if rng.gen_bool(0.3) {
        line.push_str(&rng.gen_range(0..5).to_string());
    }
    if rng.gen_bool(0.05) {
        line.push('\r');
    }
    line
}

fn random_file(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = rng.gen_range(0..40);
    let mut text: String = (0..n).map(|_| random_line(rng) + "\n").collect();
    if n > 0 && rng.gen_bool(0.2) {
        text.pop();
    }
    text.into_bytes()
}

fn edit(rng: &mut ChaCha8Rng, content: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(content);
    let no_newline = !text.is_empty() && !text.ends_with('\n');
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..rng.gen_range(1..5) {
        let at = rng.gen_range(0..=lines.len());
        match rng.gen_range(0..3) {
            0 => lines.insert(at, random_line(rng)),
            1 if at < lines.len() => {
                lines.remove(at);
            }
            _ if at < lines.len() => lines[at] = random_line(rng),
            _ => lines.push(random_line(rng)),
        }
    }
    let mut out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let flip = rng.gen_bool(0.15);
    if !out.is_empty() && (no_newline != flip) {
        out.pop();
    }
    out.into_bytes()
}

fn random_case(rng: &mut ChaCha8Rng) -> (Tree, Tree) {
    let mut old = Tree::new();
    for i in 0..rng.gen_range(1..5) {
        let name = if rng.gen_bool(0.3) {
            format!("sub/f{i}.txt")
        } else {
            format!("f{i}.txt")
        };
        old.insert(name, random_file(rng));
    }
    let mut new = Tree::new();
    for (path, content) in &old {
        match rng.gen_range(0..10) {
            0 => {} // deleted
            1 => {
                new.insert(path.clone(), content.clone());
            }
            _ => {
                new.insert(path.clone(), edit(rng, content));
            }
        }
    }
    if rng.gen_bool(0.3) {
        new.insert("added.txt".into(), random_file(rng));
    }
    if rng.gen_bool(0.1) {
        new.insert("blob.bin".into(), vec![0, 159, 146, 150, rng.r#gen()]);
    }
    (old, new)
}

fn our_diff(old: &Tree, new: &Tree) -> Patch {
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    fn side<'a>(tree: &'a Tree, p: &'a str) -> Option<FileSide<'a>> {
        tree.get(p).map(|c| FileSide {
            path: p,
            content: c.as_slice(),
            mode: 0o100644,
        })
    }
    let files = paths
        .into_iter()
        .filter_map(|p| ssr_repo::FilePatch::from_contents(side(old, p), side(new, p)))
        .collect();
    Patch { files }
}

#[test]
fn random_edits_agree_with_git() {
    // More cases or another seed: SSR_PATCH_CASES=500 SSR_PATCH_SEED=7 cargo test ...
    let cases: usize = std::env::var("SSR_PATCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("SSR_PATCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x55_2026);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..cases {
        let (old, new) = random_case(&mut rng);
        let ours = our_diff(&old, &new);
        let text = ours.to_string();
        let ctx = || format!("case {case}\n{text}");
        // Our diff + our apply, in memory and on disk.
        let mut mem = old.clone();
        ours.apply_to_files(&mut mem)
            .unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
        assert_eq!(mem, new, "{}", ctx());
        assert_eq!(
            crate::support::our_apply_dir(&old, &ours).unwrap(),
            new,
            "{}",
            ctx()
        );
        if ours.is_empty() {
            assert_eq!(old, new);
            assert!(git_diff(&old, &new).is_empty());
            continue;
        }
        // git apply of our diff.
        assert_eq!(
            git_apply(&old, &text, &[]).unwrap_or_else(|e| panic!("{e}\n{}", ctx())),
            new
        );
        // Reverse.
        let mut back = new.clone();
        ours.reverse().apply_to_files(&mut back).unwrap();
        assert_eq!(back, old, "{}", ctx());
        // git diff parsed and applied by us.
        let git_text = git_diff(&old, &new);
        let theirs = Patch::parse(&git_text).unwrap_or_else(|e| panic!("{e}\n{git_text}"));
        let mut mem = old.clone();
        theirs
            .apply_to_files(&mut mem)
            .unwrap_or_else(|e| panic!("{e}\n{git_text}"));
        assert_eq!(mem, new, "case {case}\n{git_text}");
        // A mismatching target: both refuse, or both give the same tree.
        if let Some((path, content)) = old.iter().find(|(_, c)| !c.is_empty()) {
            let mut target = old.clone();
            target.insert(path.clone(), edit(&mut rng, content));
            let git = git_apply(&target, &git_text, &[]);
            let ours = crate::support::our_apply_dir(&target, &theirs);
            match (git, ours) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "case {case}\n{git_text}"),
                (Err(_), Err(_)) => {}
                (g, o) => {
                    let dump = std::env::temp_dir().join(format!("ssr-repo-case-{case}"));
                    crate::support::write_tree(&dump.join("target"), &target);
                    std::fs::write(dump.join("patch.diff"), &git_text).unwrap();
                    panic!(
                        "case {case} (dumped to {}): git ok: {} ours: {:?}",
                        dump.display(),
                        g.is_ok(),
                        o.map(|_| ()).map_err(|e| e.to_string())
                    )
                }
            }
        }
    }
}
