//! The host's own processes: every function of non-test code that starts one
//! (`Command::new`, std's or tokio's) is listed in `tests/tidy_host_processes.txt` with
//! a reason. ARCHITECTURE.md's invariant is that the host runs a repository's code only
//! through `Sandbox::exec` and itself runs only `git`, the sandbox's machinery and
//! probes of its own toolchains; a new host-side run fails here until someone writes
//! down why it is none of a repository's code.
//!
//! Owns: finding process starts in source and the allow-list's rules. Does not own:
//! reading source (`source`). Approximate on purpose, as the other tidy rules: it sees
//! `Command::new` in code (not in comments, literals or test modules), and refuses a
//! renamed `process::Command` import, which would hide later starts from it.

use super::source::{blank_comments_and_literals, blank_test_modules, functions};
use super::{CODE_ROOTS, allowlist, root, rust_files, test_module_files};
use std::collections::BTreeSet;

/// A place in non-test code that starts a host process, or hides one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawn {
    /// `path::function` (the innermost function around it), or `path::(top level)`.
    pub id: String,
    /// 1-based line.
    pub line: usize,
    /// A renamed `process::Command` import: always refused.
    pub renamed: bool,
}

/// The process starts of one file (`rel` is its path relative to the workspace root).
pub fn spawns(rel: &str, text: &str) -> Vec<Spawn> {
    let code = blank_test_modules(&blank_comments_and_literals(text));
    let fns = functions(&code);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let around = |line: usize| {
        fns.iter()
            .filter(|f| f.line <= line && line < f.line + f.lines)
            .max_by_key(|f| f.line)
            .map_or_else(|| "(top level)".to_string(), |f| f.name.clone())
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("Command::new") {
        let line = line_of(at);
        out.push(Spawn {
            id: format!("{rel}::{}", around(line)),
            line,
            renamed: false,
        });
    }
    for (at, _) in code.match_indices("process::Command as ") {
        let line = line_of(at);
        out.push(Spawn {
            id: format!("{rel}::{}", around(line)),
            line,
            renamed: true,
        });
    }
    out
}

#[test]
fn every_host_process_is_listed_with_a_reason() {
    let root = root();
    let mut files = Vec::new();
    for r in CODE_ROOTS {
        rust_files(&root.join(r), &mut files);
    }
    let tests = test_module_files(&files);
    let listed_text = std::fs::read_to_string(root.join("tests/tidy_host_processes.txt"))
        .expect("tests/tidy_host_processes.txt");
    let listed = allowlist(&listed_text);
    let (mut unlisted, mut renamed, mut seen) = (Vec::new(), Vec::new(), BTreeSet::new());
    for f in files.iter().filter(|f| !tests.contains(*f)) {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        for s in spawns(&rel, &text) {
            let at = format!("{} (line {})", s.id, s.line);
            if s.renamed {
                renamed.push(at);
            } else if !listed.contains_key(&s.id) {
                unlisted.push(at);
            }
            seen.insert(s.id);
        }
    }
    assert!(
        renamed.is_empty(),
        "a renamed process::Command import hides the processes it starts; use the name \
         `Command`:\n{}",
        renamed.join("\n")
    );
    assert!(
        unlisted.is_empty(),
        "the host starts a process here: a repository's code runs only through \
         Sandbox::exec. If this runs none (git, the sandbox's machinery, a probe of the \
         host's own toolchain), add `path::function — reason` to \
         tests/tidy_host_processes.txt:\n{}",
        unlisted.join("\n")
    );
    let stale: Vec<&String> = listed.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        stale.is_empty(),
        "tests/tidy_host_processes.txt lists functions that start no process (or are \
         gone): remove these lines:\n{stale:#?}"
    );
}

#[test]
fn a_process_start_is_found_in_its_function_and_nowhere_else() {
    let text = "use std::process::Command;\n\
                /// Command::new in a doc comment starts nothing.\n\
                pub fn outer() {\n\
                \x20   let s = \"Command::new\";\n\
                \x20   let run = |p: &str| tokio::process::Command::new(p);\n\
                \x20   fn inner() {\n\
                \x20       let _ = std::process::Command::new(\"git\");\n\
                \x20   }\n\
                }\n\
                static X: Lazy = Lazy::new(|| Command::new(\"sh\"));\n\
                #[cfg(test)]\n\
                mod tests {\n\
                \x20   fn t() { std::process::Command::new(\"python3\"); }\n\
                }\n";
    let got: Vec<(String, usize)> = spawns("a.rs", text)
        .into_iter()
        .map(|s| (s.id, s.line))
        .collect();
    assert_eq!(
        got,
        [
            ("a.rs::outer".to_string(), 5),
            ("a.rs::inner".to_string(), 7),
            ("a.rs::(top level)".to_string(), 10),
        ]
    );
}

#[test]
fn a_renamed_command_import_is_refused() {
    let s = spawns(
        "b.rs",
        "use tokio::process::Command as Cmd;\nfn f() { Cmd::new(\"x\"); }\n",
    );
    assert_eq!(s.len(), 1);
    assert!(s[0].renamed);
    assert_eq!(s[0].id, "b.rs::(top level)");
}
