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

/// Reads pytest's `-rA` short summary; ERROR counts as failed, skips are left out.
pub const PYTEST_PARSER: &str = r#"#!/usr/bin/env python3
"""Reads a pytest -rA log on stdin; prints {"<node id>": "passed"|"failed"}."""
import json
import re
import sys

results = {}
in_summary = False
for line in sys.stdin:
    line = line.rstrip("\n")
    if re.match(r"^=+ short test summary info =+$", line):
        in_summary = True
        continue
    if not in_summary:
        continue
    m = re.match(r"^(PASSED|FAILED|ERROR|XPASS) (\S+?)(?: - .*)?$", line)
    if m:
        status = "passed" if m.group(1) in ("PASSED", "XPASS") else "failed"
        if results.get(m.group(2)) != "failed":
            results[m.group(2)] = status
print(json.dumps(results, sort_keys=True))
"#;

/// Reads `cargo test` output; ids are `<target>::<test>` as in the trusted parser.
pub const CARGO_PARSER: &str = r#"#!/usr/bin/env python3
"""Reads a cargo test log on stdin; prints {"<target>::<test>": "passed"|"failed"}."""
import json
import re
import sys

results = {}
target = "unknown"
for line in sys.stdin:
    line = line.rstrip("\n")
    m = re.match(r"^\s*Doc-tests (\S+)", line)
    if m:
        target = "doc:" + m.group(1)
        continue
    m = re.match(r"^\s*Running (?:unittests )?(\S+)", line)
    if m:
        target = m.group(1)
        continue
    m = re.match(r"^test (.+?) \.\.\. (ok|FAILED)(?:,.*)?$", line)
    if m:
        key = target + "::" + m.group(1)
        status = "passed" if m.group(2) == "ok" else "failed"
        if results.get(key) != "failed":
            results[key] = status
print(json.dumps(results, sort_keys=True))
"#;
