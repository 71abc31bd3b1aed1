//! The harness a procedural injector writes for a repository: which test framework it
//! uses, its oracle test files, a `test_script.sh` that runs them verbosely and a
//! `test_parser.py` that reads the log (the Python twin of the trusted parser of
//! the same format, so the verifier's cross-check agrees with it by construction).
//!
//! Does not own: the trusted parsers themselves (`trusted`), or choosing bugs.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A test framework the procedural injectors know how to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framework {
    /// pytest, run with `-rA`.
    Pytest,
    /// `cargo test --no-fail-fast`; oracle tests are the integration tests in `tests/`.
    Cargo,
}

/// Directories never searched for tests or code.
pub(crate) fn skipped_dir(name: &str) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "target" | "build" | "dist" | "node_modules" | "__pycache__" | "venv" | "env"
        )
        || name.ends_with(".egg-info")
}

/// All files under `root` (relative, `/`-separated, sorted), hidden and build
/// directories excluded, symlinks not followed.
pub fn repo_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !skipped_dir(&name) {
                    walk(root, &e.path(), out);
                }
            } else if ft.is_file()
                && let Ok(rel) = e.path().strip_prefix(root)
            {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// True for a pytest test module name (`test_*.py`, `*_test.py`).
pub fn is_python_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
}

/// True for a Rust integration-test file (`tests/**/*.rs` at the crate root).
pub fn is_rust_test_file(rel: &str) -> bool {
    rel.starts_with("tests/") && rel.ends_with(".rs")
}

impl Framework {
    /// Detects the framework: a root `Cargo.toml` means cargo, Python test modules
    /// mean pytest.
    pub fn detect(root: &Path) -> Option<Framework> {
        if root.join("Cargo.toml").is_file() {
            return Some(Framework::Cargo);
        }
        repo_files(root)
            .iter()
            .any(|f| is_python_test_file(f))
            .then_some(Framework::Pytest)
    }

    /// The oracle test files of the repository for this framework.
    pub fn test_files(self, root: &Path) -> Vec<String> {
        let files = repo_files(root);
        match self {
            Framework::Pytest => files
                .into_iter()
                .filter(|f| is_python_test_file(f))
                .collect(),
            Framework::Cargo => files.into_iter().filter(|f| is_rust_test_file(f)).collect(),
        }
    }

    /// True when `rel` is a code file the injectors may break.
    pub fn is_code_file(self, rel: &str) -> bool {
        match self {
            Framework::Pytest => {
                rel.ends_with(".py")
                    && !is_python_test_file(rel)
                    && !rel
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n == "conftest.py" || n == "setup.py")
                    && !rel
                        .split('/')
                        .any(|c| c == "tests" || c == "test" || c == "testing")
            }
            Framework::Cargo => rel.ends_with(".rs") && rel.starts_with("src/"),
        }
    }

    /// The `test_script.sh` running `test_files` (run with the repository as cwd).
    pub fn test_script(self, root: &Path, test_files: &[String]) -> String {
        match self {
            Framework::Pytest => {
                let src = if root.join("src").is_dir() {
                    "src:"
                } else {
                    ""
                };
                let files: Vec<String> = test_files.iter().map(|f| shell_quote(f)).collect();
                format!(
                    "#!/bin/bash\n\
                     # Runs the repository's pytest tests verbosely (written by ssr's procedural injector).\n\
                     export PYTHONDONTWRITEBYTECODE=1\n\
                     export PYTHONPATH=\"{src}.${{PYTHONPATH:+:$PYTHONPATH}}\"\n\
                     python3 -m pytest -rA --tb=short -p no:cacheprovider {}\n",
                    files.join(" ")
                )
            }
            Framework::Cargo => "#!/bin/bash\n\
                 # Runs the crate's tests verbosely (written by ssr's procedural injector).\n\
                 export CARGO_TERM_COLOR=never\n\
                 cargo test --offline --no-fail-fast 2>&1\n"
                .to_string(),
        }
    }

    /// The `test_parser.py` for this framework's log.
    pub fn test_parser(self) -> &'static str {
        match self {
            Framework::Pytest => PYTEST_PARSER,
            Framework::Cargo => CARGO_PARSER,
        }
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Reads pytest's `-rA` log as the trusted parser does: statuses only from the final
/// `short test summary info` section, a failing status anywhere wins, conflicting
/// duplicates fail, and without pytest's final line or with counts that do not match
/// the section every test is failed. ERROR counts as failed, skips are left out.
pub const PYTEST_PARSER: &str = r#"#!/usr/bin/env python3
"""Reads a pytest -rA log on stdin; prints {"<node id>": "passed"|"failed"}."""
import json
import re
import sys

HEADER = re.compile(r"^=+ short test summary info =+$")
FINAL = re.compile(r"^(?:=+ )?((?:\d+ \w+)(?:, \d+ \w+)*|no tests ran) in [\d.]+s(?: \([^)]*\))?(?: =+)?$")
LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$")
FAIL_ANYWHERE = re.compile(r"^(?:(\S+::[^\s\[]+(?:\[.*\])?) (?:FAILED|ERROR)\b|(?:\[gw\d+\] \[\s*\d+%\] )?(?:FAILED|ERROR) (\S+::.+)$)")
WORD = {"PASSED": "passed", "XPASS": "xpassed", "FAILED": "failed", "ERROR": "error"}


def node_id(rest):
    """The node id at the start of `<id>` or `<id> - <message>`: parameters in
    brackets may hold spaces, and end at a `]` that ends the line or precedes ` - `."""
    message = rest.find(" - ")
    cut = rest if message < 0 else rest[:message]
    open_ = rest.find("[")
    if open_ < 0 or (0 <= message < open_):
        return cut
    end = rest.find("]", open_)
    while end >= 0:
        tail = rest[end + 1:]
        if tail == "" or tail.startswith(" - "):
            return rest[:end + 1]
        end = rest.find("]", end + 1)
    return cut


lines = [line.rstrip() for line in sys.stdin]
results = {}
starts = [i for i, line in enumerate(lines) if HEADER.match(line)]
complete = bool(starts)
if starts:
    start = starts[-1]
    end = next((i for i in range(start + 1, len(lines)) if FINAL.match(lines[i])), None)
    seen = {}
    for line in lines[start + 1:len(lines) if end is None else end]:
        m = LINE.match(line)
        if not m:
            continue
        word = WORD.get(m.group(1))
        if word:
            seen[word] = seen.get(word, 0) + 1
        if m.group(1) in ("SKIPPED", "XFAIL"):
            status = "other"
        else:
            status = "passed" if m.group(1) in ("PASSED", "XPASS") else "failed"
        test = node_id(m.group(2))
        old = results.get(test)
        results[test] = status if old in (None, status) else "failed"
    if end is None:
        complete = False
    else:
        said = {}
        for n, word in re.findall(r"(\d+) (\w+)", lines[end]):
            word = {"errors": "error", "warnings": "warning"}.get(word, word)
            said[word] = said.get(word, 0) + int(n)
        for word in ("passed", "failed", "error", "xpassed"):
            if said.get(word, 0) != seen.get(word, 0):
                complete = False
for line in lines:
    m = FAIL_ANYWHERE.match(line)
    if m:
        results[m.group(1) or node_id(m.group(2))] = "failed"
out = {k: (v if complete else "failed") for k, v in results.items() if v != "other"}
print(json.dumps(out, sort_keys=True))
"#;

/// Reads `cargo test` output as the trusted parser does (ids `<target>::<test>`): a
/// failing or conflicting status fails the test, and when a `running N tests` block
/// has no `test result:` line or its counts do not match, every test is failed.
pub const CARGO_PARSER: &str = r#"#!/usr/bin/env python3
"""Reads a cargo test log on stdin; prints {"<target>::<test>": "passed"|"failed"}."""
import json
import re
import sys

results = {}
target = "unknown"
complete = True
block = None
declared = 0
for line in sys.stdin:
    line = line.rstrip()
    m = re.match(r"^\s*Doc-tests (\S+)", line)
    if m:
        target = "doc:" + m.group(1)
        continue
    m = re.match(r"^\s*Running (?:unittests )?(\S+)", line)
    if m:
        target = m.group(1)
        continue
    m = re.match(r"^running (\d+) tests?$", line)
    if m:
        if block is not None:
            complete = False
        declared = int(m.group(1))
        block = [0, 0, 0, 0]
        continue
    m = re.match(r"^test (.+?) \.\.\. (ok|FAILED|ignored)(?:,.*)?$", line)
    if m:
        kind = {"ok": 0, "FAILED": 1, "ignored": 2}[m.group(2)]
        if block is None:
            complete = False
        else:
            block[kind] += 1
            block[3] += 1
        key = target + "::" + m.group(1)
        status = ["passed", "failed", "other"][kind]
        old = results.get(key)
        results[key] = status if old in (None, status) else "failed"
        continue
    m = re.match(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;", line)
    if m:
        if block is None:
            complete = False
            continue
        said = [int(m.group(k)) for k in (1, 2, 3)]
        if said != block[:3] or block[3] != declared:
            complete = False
        block = None
if block is not None:
    complete = False
out = {k: (v if complete else "failed") for k, v in results.items() if v != "other"}
print(json.dumps(out, sort_keys=True))
"#;
