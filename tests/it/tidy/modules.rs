//! The module graph of one crate, from its `crate::`, `super::` and `self::` paths, and
//! the cycles in it.
//!
//! An edge A → B means module A names module B (or an item in it). A module naming its
//! own descendant is not an edge: a parent declares, re-exports and calls its children,
//! which is the tree, not a tangle. What is left to be a cycle is siblings or cousins
//! importing each other, the thing a leaf module (`probe`, `shell`) fixes.
//!
//! Owns: file → module path, path resolution, cycle search. Does not own: reading the
//! source (`source`).

use super::source::{blank_comments_and_literals, blank_test_modules};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path inside its crate: `[]` is the crate root, `["patch", "parse"]` is
/// `crate::patch::parse`.
pub type ModPath = Vec<String>;

/// The module a file under `src/` defines: `lib.rs`/`main.rs` the root, `a/mod.rs` and
/// `a.rs` module `a`, `a/b.rs` module `a::b`.
pub fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The modules `text` (the source of module `at`) names, resolved against the crate's
/// `known` modules. Paths naming an item resolve to the module holding it.
pub fn named_modules(at: &ModPath, text: &str, known: &BTreeSet<ModPath>) -> BTreeSet<ModPath> {
    let code = blank_test_modules(&blank_comments_and_literals(text));
    let b = code.as_bytes();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("::") {
        // Find the path's first segment: the identifier just before this `::`, which
        // must not itself follow another `::` (only path starts are resolved).
        let start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |n| n + 1);
        if start >= 2 && &code[start - 2..start] == "::" {
            continue;
        }
        let base = match &code[start..i] {
            "crate" => Vec::new(),
            "super" | "self" => at.clone(),
            _ => continue,
        };
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        let mut base = base;
        if &code[start..i] == "super" {
            base.pop();
        }
        for path in expand_tree(&code[i + 2..]) {
            let mut full = base.clone();
            for seg in path {
                match seg.as_str() {
                    "super" => {
                        full.pop();
                    }
                    "self" => {}
                    _ => full.push(seg),
                }
            }
            // The longest prefix that is a module.
            while !full.is_empty() && !known.contains(&full) {
                full.pop();
            }
            out.insert(full);
        }
    }
    out
}

/// The paths of a use tree that starts right after a `::`: `a::b` → `[[a, b]]`,
/// `{a, b::{c, d}}` → `[[a], [b, c], [b, d]]`, `a::b(x)` → `[[a, b]]`.
fn expand_tree(text: &str) -> Vec<Vec<String>> {
    let mut pos = 0;
    tree(text.as_bytes(), &mut pos)
}

fn tree(b: &[u8], pos: &mut usize) -> Vec<Vec<String>> {
    skip_space(b, pos);
    if b.get(*pos) == Some(&b'{') {
        *pos += 1;
        let mut all = Vec::new();
        loop {
            skip_space(b, pos);
            match b.get(*pos) {
                Some(b'}') => {
                    *pos += 1;
                    return all;
                }
                Some(b',') => *pos += 1,
                None => return all,
                _ => {
                    let before = *pos;
                    all.extend(tree(b, pos));
                    if *pos == before {
                        *pos += 1; // `*` or anything unexpected
                    }
                }
            }
        }
    }
    let start = *pos;
    while b
        .get(*pos)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        *pos += 1;
    }
    let seg = String::from_utf8_lossy(&b[start..*pos]).into_owned();
    if seg.is_empty() {
        return vec![Vec::new()];
    }
    let mut p = *pos;
    skip_space(b, &mut p);
    if b[p..].starts_with(b"::") {
        *pos = p + 2;
        return tree(b, pos)
            .into_iter()
            .map(|mut rest| {
                rest.insert(0, seg.clone());
                rest
            })
            .collect();
    }
    // `as name` renames do not change what is named.
    vec![vec![seg]]
}

fn skip_space(b: &[u8], pos: &mut usize) {
    while b.get(*pos).is_some_and(u8::is_ascii_whitespace) {
        *pos += 1;
    }
}

/// The crate's edges with a module's own descendants left out (see the module doc).
pub fn graph(files: &BTreeMap<ModPath, String>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let known: BTreeSet<ModPath> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(m, text)| {
            let to = named_modules(m, text, &known)
                .into_iter()
                .filter(|t| !t.starts_with(m))
                .collect();
            (m.clone(), to)
        })
        .collect()
}

/// Every cycle of the graph, one per strongly connected component with more than one
/// module, printed as `a → b → a`.
pub fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let name = |m: &ModPath| {
        if m.is_empty() {
            "crate".to_owned()
        } else {
            m.join("::")
        }
    };
    let mut reported: BTreeSet<ModPath> = BTreeSet::new();
    let mut found = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // Shortest path from `start` back to itself (breadth first).
        let mut prev: BTreeMap<ModPath, ModPath> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut closed = None;
        while let Some(m) = queue.pop_front() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == start {
                    closed = Some(m.clone());
                    break;
                }
                if !prev.contains_key(next) {
                    prev.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut at) = closed else { continue };
        let mut path = vec![start.clone()];
        while &at != start {
            path.push(at.clone());
            at = prev[&at].clone();
        }
        path.push(start.clone());
        let last = path.len() - 1;
        path[1..last].reverse();
        reported.extend(path.iter().cloned());
        found.push(path.iter().map(name).collect::<Vec<_>>().join(" → "));
    }
    found
}
