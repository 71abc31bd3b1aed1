//! Tidy checks over the project's own source, run as ordinary tests (as
//! rust-analyzer's `tidy`): no module cycle inside the crates whose layering is
//! settled, no non-test function over [`MAX_FUNCTION_LINES`] lines without a
//! written reason, and no host process started without a written reason (`processes`).
//!
//! A reason lives with the function, as a comment among the lines right above it:
//! `// tidy: long-function: <why>`; a function split below the limit loses it with
//! the split. Functions in crates whose owners are reworking them are listed in
//! `tests/tidy_long_functions.txt` (`path::function — reason`) until they are split or
//! given their own comment; an entry that no longer matches a long function fails, so
//! the list only shrinks.
//!
//! Owns: the two rules and their scopes. Does not own: reading source (`source`) or
//! the module graph (`modules`). Each rule shows its own correctness on inline
//! examples below before it is applied to the tree.

mod modules;
mod processes;
mod source;

use source::{attached_lines, blank_comments_and_literals, blank_test_modules, functions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a non-test function may be without a written reason.
const MAX_FUNCTION_LINES: usize = 100;

/// The marker of a written reason.
const REASON: &str = "// tidy: long-function:";

/// Crates whose module graph must stay acyclic.
const ACYCLIC_CRATES: &[&str] = &["runtime/sandbox", "runtime/repo", "runtime/toolhost"];

/// Where non-test Rust code lives (relative to the workspace root). `tests/` and
/// `target/` directories below them are skipped, and so is the top-level `examples/`
/// (example repositories: data, not this project's code).
const CODE_ROOTS: &[&str] = &["src", "runtime", "trainer", "tools-wasm"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, skipping `tests`, `target` and hidden directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        if p.is_dir() {
            if !(name == "tests" || name == "target" || name.starts_with('.')) {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Files that are test code although under `src/`: declared `#[cfg(test)] mod x;`.
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let code = blank_comments_and_literals(&text);
        for (i, _) in code.match_indices("#[cfg(test)]") {
            let rest = code[i + "#[cfg(test)]".len()..].trim_start();
            let Some(decl) = rest.strip_prefix("mod ") else {
                continue;
            };
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !decl[name.len()..].trim_start().starts_with(';') {
                continue;
            }
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
            let dir = match stem.as_deref() {
                Some("mod" | "lib" | "main") => f.parent().map(Path::to_path_buf),
                Some(s) => f.parent().map(|p| p.join(s)),
                None => None,
            };
            if let Some(dir) = dir {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(&name).join("mod.rs"));
            }
        }
    }
    out
}

/// A function over the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LongFunction {
    /// `path::name`, the path relative to the workspace root.
    id: String,
    lines: usize,
    /// The written reason, when there is one.
    reason: Option<String>,
}

/// The functions of one file over `limit` lines, outside test modules.
fn long_functions(rel: &str, text: &str, limit: usize) -> Vec<LongFunction> {
    let code = blank_test_modules(&blank_comments_and_literals(text));
    functions(&code)
        .into_iter()
        .filter(|f| f.lines > limit)
        .map(|f| LongFunction {
            id: format!("{rel}::{}", f.name),
            lines: f.lines,
            reason: attached_lines(text, f.line).iter().find_map(|l| {
                l.strip_prefix(REASON)
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
            }),
        })
        .collect()
}

/// `path::function — reason` lines of the allowlist (blank lines and `#` comments
/// skipped), by id.
fn allowlist(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (id, reason) = l.split_once(" — ")?;
            Some((id.trim().to_owned(), reason.trim().to_owned()))
        })
        .collect()
}

/// The module files of the crate at `dir` (its `src/`), by module path.
fn crate_modules(dir: &Path) -> BTreeMap<modules::ModPath, String> {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tests = test_module_files(&files);
    files
        .into_iter()
        .filter(|f| !tests.contains(f) && !f.starts_with(src.join("bin")))
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?.to_path_buf();
            Some((modules::module_of(&rel), std::fs::read_to_string(&f).ok()?))
        })
        .collect()
}

#[test]
fn no_module_cycle_inside_the_layered_crates() {
    let mut failures = Vec::new();
    for krate in ACYCLIC_CRATES {
        let files = crate_modules(&root().join(krate));
        assert!(files.len() > 3, "{krate}: no modules found");
        for cycle in modules::cycles(&modules::graph(&files)) {
            failures.push(format!("{krate}: {cycle}"));
        }
    }
    assert!(
        failures.is_empty(),
        "module cycles (move the shared part into a leaf module):\n{}",
        failures.join("\n")
    );
}

#[test]
fn no_long_function_without_a_written_reason() {
    let root = root();
    let mut files = Vec::new();
    for r in CODE_ROOTS {
        rust_files(&root.join(r), &mut files);
    }
    let tests = test_module_files(&files);
    let listed_text = std::fs::read_to_string(root.join("tests/tidy_long_functions.txt"))
        .expect("tests/tidy_long_functions.txt");
    let listed = allowlist(&listed_text);
    let mut unexplained = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files.iter().filter(|f| !tests.contains(*f)) {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        for long in long_functions(&rel, &text, MAX_FUNCTION_LINES) {
            seen.insert(long.id.clone());
            if long.reason.is_none() && !listed.contains_key(&long.id) {
                unexplained.push(format!("{} ({} lines)", long.id, long.lines));
            }
        }
    }
    let stale: Vec<&String> = listed.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        unexplained.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines without a reason: split them by concept, \
         or write `{REASON} <why>` right above:\n{}",
        unexplained.join("\n")
    );
    assert!(
        stale.is_empty(),
        "tests/tidy_long_functions.txt lists functions that are no longer long (or gone): \
         remove these lines:\n{stale:#?}"
    );
}

// The rules on small inline examples: each must catch what it is for and pass what it
// is not for.

fn crate_of(files: &[(&str, &str)]) -> BTreeMap<modules::ModPath, String> {
    files
        .iter()
        .map(|(p, t)| (modules::module_of(Path::new(p)), (*t).to_owned()))
        .collect()
}

#[test]
fn a_cycle_between_sibling_modules_is_found() {
    let files = crate_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
        ("a.rs", "use crate::b::helper;\npub struct A;\n"),
        (
            "b.rs",
            "use crate::{c::{self, C}, x};\npub fn helper() {}\n",
        ),
        ("c.rs", "pub struct C(crate::a::A);\n"),
    ]);
    let cycles = modules::cycles(&modules::graph(&files));
    assert_eq!(cycles, ["a → b → c → a"]);
}

#[test]
fn a_parent_using_its_children_and_a_leaf_are_not_cycles() {
    let files = crate_of(&[
        ("lib.rs", "mod patch;\nmod probe;\npub use patch::Patch;\n"),
        (
            "patch/mod.rs",
            "mod parse;\nmod binary;\npub struct Patch;\npub enum ParseFailure {}\n\
             fn f() { parse::parse(); }\n",
        ),
        (
            "patch/parse.rs",
            "use super::binary::Hunk;\nuse super::{Patch, ParseFailure};\n",
        ),
        (
            "patch/binary.rs",
            "use super::ParseFailure;\nuse crate::probe;\n\
             // use super::parse::Nothing; (a comment names nothing)\n\
             const S: &str = \"crate::patch::parse\";\n\
             #[cfg(test)]\nmod tests {\n    use super::super::parse::*;\n}\n",
        ),
        ("probe.rs", "pub fn find() {}\n"),
    ]);
    assert_eq!(
        modules::cycles(&modules::graph(&files)),
        Vec::<String>::new()
    );
}

#[test]
fn a_child_and_its_sibling_through_super_form_a_cycle() {
    let files = crate_of(&[
        ("lib.rs", "mod patch;\n"),
        ("patch/mod.rs", "mod parse;\nmod binary;\n"),
        ("patch/parse.rs", "use super::binary::Hunk;\n"),
        ("patch/binary.rs", "use super::parse::ParseFailure;\n"),
    ]);
    assert_eq!(
        modules::cycles(&modules::graph(&files)),
        ["patch::binary → patch::parse → patch::binary"]
    );
}

/// A function of `body_lines` lines of body, with `above` right above it.
fn example_fn(above: &str, body_lines: usize) -> String {
    let body = "    let x = \"}\"; // {\n".repeat(body_lines);
    format!("{above}\npub fn big() {{\n{body}}}\n")
}

#[test]
fn a_long_function_needs_a_written_reason() {
    // 99 lines of body + `fn` + `}` = 101 lines.
    let without = example_fn("/// Docs are not a reason.", 99);
    let long = long_functions("x.rs", &without, MAX_FUNCTION_LINES);
    assert_eq!(
        long,
        [LongFunction {
            id: "x.rs::big".into(),
            lines: 101,
            reason: None
        }]
    );
    let with = example_fn(
        &format!("{REASON} one table of cases, read top to bottom\n#[inline]"),
        99,
    );
    let long = long_functions("x.rs", &with, MAX_FUNCTION_LINES);
    assert_eq!(
        long[0].reason.as_deref(),
        Some("one table of cases, read top to bottom")
    );
    // An empty reason is no reason; exactly at the limit is not long.
    let empty = example_fn(REASON, 99);
    assert_eq!(
        long_functions("x.rs", &empty, MAX_FUNCTION_LINES)[0].reason,
        None
    );
    assert!(long_functions("x.rs", &example_fn("", 98), MAX_FUNCTION_LINES).is_empty());
}

#[test]
fn test_modules_and_declarations_are_not_long_functions() {
    let test_module = format!(
        "pub trait T {{\n    fn declared(&self);\n}}\n#[cfg(test)]\nmod tests {{\n{}}}\n",
        example_fn("#[test]", 150)
    );
    assert!(long_functions("x.rs", &test_module, MAX_FUNCTION_LINES).is_empty());
    let raw = format!(
        "fn small() {{\n    let s = r#\"{{ {{ {{\"#;\n    let c = ('{{', '\\'', b'}}');\n}}\n{}",
        example_fn("", 10)
    );
    let code = blank_comments_and_literals(&raw);
    let fns = functions(&code);
    assert_eq!(
        fns.iter()
            .map(|f| (f.name.as_str(), f.lines))
            .collect::<Vec<_>>(),
        [("small", 4), ("big", 12)]
    );
}

#[test]
fn the_allowlist_reads_path_function_and_reason() {
    let l = allowlist("# comment\n\nruntime/a.rs::run — one loop, many arms\n");
    assert_eq!(l["runtime/a.rs::run"], "one loop, many arms");
    assert_eq!(l.len(), 1);
}
