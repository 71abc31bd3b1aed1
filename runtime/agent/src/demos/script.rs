//! The model turns of a demonstration, written from a verified bug's patches: what a
//! policy that knows the answer would say, one tool call per turn, in the run's
//! tool-call syntax.
//!
//! Solver: view the broken region of each file the fix touches, replace it back one
//! hunk at a time (the editor's `str_replace`, `insert` where the bug only deleted
//! lines), run the bug's tests, submit. Injector: view the code to break, edit it and
//! the tests hunk by hunk, write the two diffs with `git diff` and the other three
//! artifact files with the editor, submit the artifact directory.
//!
//! Owns: choosing the calls and their arguments from a [`Patch`]. Does not own: running
//! them (the agent loop over the real tools, [`super::replay`]), or rendering (the
//! loop's chat template).

use crate::toolcall::{ToolCall, ToolCallSyntax, ToolShape};
use serde_json::{Value, json};
use ssr_game::Artifact;
use ssr_repo::patch::{FileBody, FilePatch, Hunk, LineKind, Patch};

// Where the injector writes its artifact (the prompt names it; `submit` checks it).
use crate::selfplay::game_arena::ARTIFACT_DIR;

/// Why a bug's patches give no script.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{which} is not a patch: {reason}")]
    Parse { which: &'static str, reason: String },
    #[error("{which} changes nothing")]
    Empty { which: &'static str },
    /// A file the editor cannot change hunk by hunk (created, deleted, renamed, binary).
    #[error("{path}: {what}, which the editor cannot replay")]
    Unsupported { path: String, what: &'static str },
    /// A call whose text would not parse back to it (a value holding the closing tag).
    #[error("a {tool} call cannot be written in this syntax")]
    Unwritable { tool: String },
}

/// One edit of one file: the text before and after (`before` empty: an insertion after
/// line `at`).
struct Edit {
    path: String,
    before: String,
    after: String,
    at: u32,
}

/// The lines of one side of a hunk, as file text.
fn side(h: &Hunk, keep: LineKind) -> String {
    let mut out = String::new();
    for l in h
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Context || l.kind == keep)
    {
        out.push_str(&l.text);
        if !l.no_newline {
            out.push('\n');
        }
    }
    out
}

/// The file's modified path, or why the editor cannot replay it.
fn modified_path(f: &FilePatch) -> Result<(&str, &[Hunk]), ScriptError> {
    let shown = f.display_path().to_string();
    let unsupported = |what| ScriptError::Unsupported {
        path: shown.clone(),
        what,
    };
    let hunks = match &f.body {
        FileBody::Text(h) => h,
        _ => return Err(unsupported("a binary change")),
    };
    match (&f.old_path, &f.new_path) {
        (None, _) => Err(unsupported("a created file")),
        (_, None) => Err(unsupported("a deleted file")),
        (Some(a), Some(b)) if a != b => Err(unsupported("a renamed file")),
        (Some(a), Some(_)) if hunks.is_empty() => Err(ScriptError::Unsupported {
            path: a.clone(),
            what: "a mode change",
        }),
        (Some(a), Some(_)) => Ok((a, hunks)),
    }
}

/// The edits that turn the old side of `patch` into its new side, file by file.
fn edits(patch: &Patch) -> Result<Vec<Edit>, ScriptError> {
    let mut out = Vec::new();
    for f in &patch.files {
        let (path, hunks) = modified_path(f)?;
        for h in hunks {
            out.push(Edit {
                path: path.to_string(),
                before: side(h, LineKind::Removed),
                after: side(h, LineKind::Added),
                at: h.old_start,
            });
        }
    }
    Ok(out)
}

/// A view of the old-side region every hunk of each file covers.
fn views(patch: &Patch) -> Vec<Value> {
    patch
        .files
        .iter()
        .filter_map(|f| {
            let FileBody::Text(hunks) = &f.body else {
                return None;
            };
            let first = hunks.iter().map(|h| h.old_start.max(1)).min()?;
            let last = hunks
                .iter()
                .map(|h| {
                    (h.old_start + h.old_len)
                        .saturating_sub(1)
                        .max(h.old_start.max(1))
                })
                .max()?;
            Some(json!({
                "command": "view",
                "path": f.display_path(),
                "view_range": [first, last],
            }))
        })
        .collect()
}

fn editor_call(e: &Edit) -> Value {
    if e.before.is_empty() {
        json!({"command": "insert", "path": e.path, "insert_line": e.at, "new_str": e.after})
    } else {
        json!({"command": "str_replace", "path": e.path, "old_str": e.before, "new_str": e.after})
    }
}

fn parse(which: &'static str, diff: &str) -> Result<Patch, ScriptError> {
    let p = Patch::parse(diff).map_err(|e| ScriptError::Parse {
        which,
        reason: e.to_string(),
    })?;
    if p.is_empty() {
        return Err(ScriptError::Empty { which });
    }
    Ok(p)
}

/// The fix of a bug: its bug patch reversed (the old side is the buggy code).
pub fn fix_of(artifact: &Artifact) -> Result<Patch, ScriptError> {
    Ok(parse("bug_inject.diff", &artifact.bug_inject)?.reverse())
}

/// The edits of a fix, for checking them against the buggy workspace before playing:
/// (path, text the fix replaces). An insertion replaces nothing and is left out.
pub fn fix_targets(fix: &Patch) -> Result<Vec<(String, String)>, ScriptError> {
    Ok(edits(fix)?
        .into_iter()
        .filter(|e| !e.before.is_empty())
        .map(|e| (e.path, e.before))
        .collect())
}

/// Writes calls in `syntax`; `tools` are the episode's tool shapes.
fn write_all(
    calls: Vec<(&str, Value)>,
    syntax: ToolCallSyntax,
    tools: &[ToolShape],
) -> Result<Vec<String>, ScriptError> {
    calls
        .into_iter()
        .map(|(name, arguments)| {
            let call = ToolCall {
                name: name.into(),
                arguments,
            };
            call.write(syntax, tools)
                .ok_or_else(|| ScriptError::Unwritable { tool: name.into() })
        })
        .collect()
}

/// The solver's turns for `fix` (from [`fix_of`]) of a bug whose tests `test_script`
/// runs.
pub fn solver_turns(
    fix: &Patch,
    test_script: &str,
    syntax: ToolCallSyntax,
    tools: &[ToolShape],
) -> Result<Vec<String>, ScriptError> {
    let mut calls: Vec<(&str, Value)> = views(fix).into_iter().map(|v| ("editor", v)).collect();
    calls.extend(edits(fix)?.iter().map(|e| ("editor", editor_call(e))));
    calls.push(("bash", json!({"command": test_command(test_script)})));
    calls.push(("submit", json!({})));
    write_all(calls, syntax, tools)
}

/// The injector's turns that make `artifact` in a copy of the original repository.
pub fn injector_turns(
    artifact: &Artifact,
    syntax: ToolCallSyntax,
    tools: &[ToolShape],
) -> Result<Vec<String>, ScriptError> {
    let bug = parse("bug_inject.diff", &artifact.bug_inject)?;
    let weaken = parse("test_weaken.diff", &artifact.test_weaken)?;
    let mut calls: Vec<(&str, Value)> = views(&bug).into_iter().map(|v| ("editor", v)).collect();
    for e in edits(&bug)?.iter().chain(edits(&weaken)?.iter()) {
        calls.push(("editor", editor_call(e)));
    }
    let paths = |p: &Patch| {
        p.files
            .iter()
            .flat_map(FilePatch::paths)
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ")
    };
    calls.push((
        "bash",
        json!({"command": format!(
            "mkdir -p {ARTIFACT_DIR} && git diff -- {} > {ARTIFACT_DIR}/bug_inject.diff && git diff -- {} > {ARTIFACT_DIR}/test_weaken.diff",
            paths(&bug),
            paths(&weaken)
        )}),
    ));
    let files = [
        ("test_script.sh", artifact.test_script.clone()),
        (
            "test_files.txt",
            format!("{}\n", artifact.test_files.join("\n")),
        ),
        ("test_parser.py", artifact.test_parser.clone()),
    ];
    for (name, text) in files {
        calls.push((
            "editor",
            json!({"command": "create", "path": format!("{ARTIFACT_DIR}/{name}"), "file_text": text}),
        ));
    }
    calls.push(("submit", json!({"directory": ARTIFACT_DIR})));
    write_all(calls, syntax, tools)
}

/// The commands of a test script, without its shebang and comments (what a solver
/// would type to run the same tests).
fn test_command(script: &str) -> String {
    script
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A path as one shell word (single-quoted unless plainly safe).
fn shell_word(p: &str) -> String {
    if p.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolShape> {
        ["bash", "editor", "submit"]
            .into_iter()
            .map(|n| ToolShape {
                name: n.into(),
                primary_arg: (n != "submit").then(|| "command".into()),
            })
            .collect()
    }

    const BUG: &str = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n def f():\n-    return 1\n+    return 2\n x = 0\n";

    #[test]
    fn a_solver_script_views_replaces_the_bug_back_tests_and_submits() {
        let artifact = Artifact {
            test_script: "#!/bin/bash\n# runs the tests\npython -m pytest -rA tests/t.py\n".into(),
            test_files: vec!["tests/t.py".into()],
            test_parser: String::new(),
            bug_inject: BUG.into(),
            test_weaken: String::new(),
        };
        let fix = fix_of(&artifact).unwrap();
        assert_eq!(
            fix_targets(&fix).unwrap(),
            [(
                "m.py".to_string(),
                "def f():\n    return 2\nx = 0\n".to_string()
            )]
        );
        let turns =
            solver_turns(&fix, &artifact.test_script, ToolCallSyntax::Cwm, &tools()).unwrap();
        assert_eq!(turns.len(), 4);
        assert!(turns[0].contains("\"view_range\":[1,3]"), "{}", turns[0]);
        assert!(turns[1].contains("\"new_str\":\"def f():\\n    return 1\\nx = 0\\n\""));
        assert_eq!(
            turns[2],
            "<tool: bash>\npython -m pytest -rA tests/t.py\n</tool>"
        );
        assert_eq!(turns[3], "<tool: submit>\n</tool>");
    }

    #[test]
    fn files_the_editor_cannot_replay_and_non_patches_are_typed() {
        let created = "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1 @@\n+x\n";
        let fix = Patch::parse(created).unwrap();
        assert!(matches!(
            solver_turns(&fix, "t", ToolCallSyntax::Cwm, &tools()),
            Err(ScriptError::Unsupported {
                what: "a created file",
                ..
            })
        ));
        let a = Artifact {
            test_script: String::new(),
            test_files: Vec::new(),
            test_parser: String::new(),
            bug_inject: "not a diff at all".into(),
            test_weaken: String::new(),
        };
        assert!(matches!(
            fix_of(&a),
            Err(ScriptError::Parse { .. } | ScriptError::Empty { .. })
        ));
    }
}
