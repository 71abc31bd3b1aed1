//! A small real Python package with pytest tests, and artifacts built against it.

use ssr_game::patch_ops::diff_of_changes;
use ssr_game::{Artifact, VerifyConfig, inject::Framework};
use ssr_sandbox::{BwrapSandbox, Environment, Sandbox};
use std::path::Path;
use std::sync::OnceLock;

/// The real sandbox every test runs in: bubblewrap over a minimal view of the host.
pub fn sandbox() -> &'static dyn Sandbox {
    static SB: OnceLock<BwrapSandbox> = OnceLock::new();
    SB.get_or_init(|| BwrapSandbox::new(Environment::default()).expect("bubblewrap is available"))
}

pub const OPS: &str = "\
\"\"\"Arithmetic helpers.\"\"\"


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    if b == 0:
        raise ZeroDivisionError(\"division by zero\")
    return a / b


def clamp(x, lo, hi):
    return max(lo, min(x, hi))
";

pub const TEXT: &str = "\
\"\"\"Text helpers.\"\"\"


def shout(s):
    return s.upper() + \"!\"


def words(s):
    return [w for w in s.split() if w]
";

pub const TEST_OPS: &str = "\
import pytest

from calc import add, sub, mul, div, clamp


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(5, 3) == 2


def test_mul():
    assert mul(4, 3) == 12


def test_div():
    assert div(6, 3) == 2
    with pytest.raises(ZeroDivisionError):
        div(1, 0)


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0
";

pub const TEST_TEXT: &str = "\
from calc import shout, words


def test_shout():
    assert shout(\"hi\") == \"HI!\"


def test_words():
    assert words(\"a  b c\") == [\"a\", \"b\", \"c\"]
";

/// Writes the calc package into `dir`.
pub fn write_calc(dir: &Path) {
    for (p, t) in [
        (
            "calc/__init__.py",
            "from .ops import add, sub, mul, div, clamp\nfrom .text import shout, words\n",
        ),
        ("calc/ops.py", OPS),
        ("calc/text.py", TEXT),
        ("tests/test_ops.py", TEST_OPS),
        ("tests/test_text.py", TEST_TEXT),
    ] {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
}

pub fn calc_repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_calc(d.path());
    d
}

/// The diff of `changes` against `repo`.
pub fn diff(repo: &Path, changes: &[(&str, Option<&str>)]) -> String {
    let ch: Vec<(String, Option<String>)> = changes
        .iter()
        .map(|(p, t)| (p.to_string(), t.map(str::to_string)))
        .collect();
    diff_of_changes(repo, &ch).unwrap()
}

/// A valid artifact: `add` is broken, `test_add` is deleted.
pub fn good_artifact(repo: &Path) -> Artifact {
    let fw = Framework::Pytest;
    let test_files = vec![
        "tests/test_ops.py".to_string(),
        "tests/test_text.py".to_string(),
    ];
    let bug = diff(
        repo,
        &[(
            "calc/ops.py",
            Some(&OPS.replace("return a + b", "return a + b + 1")),
        )],
    );
    let weak_tests = TEST_OPS.replace("def test_add():\n    assert add(2, 3) == 5\n\n\n", "");
    let weak = diff(repo, &[("tests/test_ops.py", Some(&weak_tests))]);
    Artifact {
        test_script: fw.test_script(repo, &test_files),
        test_files,
        test_parser: fw.test_parser().to_string(),
        bug_inject: bug,
        test_weaken: weak,
    }
}

/// A cargo crate `calc` in a fresh directory (`manifest`, `src/lib.rs`, `tests/ops.rs`)
/// and its artifact: the bug is `lib` with `bug.0` replaced by `bug.1`, the weakening
/// deletes `weaken` from the tests.
pub fn cargo_crate(
    manifest: &str,
    lib: &str,
    tests: &str,
    bug: (&str, &str),
    weaken: &str,
) -> (tempfile::TempDir, Artifact) {
    let d = tempfile::tempdir().unwrap();
    for (p, t) in [
        ("Cargo.toml", manifest),
        ("src/lib.rs", lib),
        ("tests/ops.rs", tests),
    ] {
        let f = d.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    let fw = Framework::Cargo;
    let bug = diff(
        d.path(),
        &[("src/lib.rs", Some(&lib.replace(bug.0, bug.1)))],
    );
    let weak = diff(
        d.path(),
        &[("tests/ops.rs", Some(&tests.replace(weaken, "")))],
    );
    let test_files = vec!["tests/ops.rs".to_string()];
    let a = Artifact {
        test_script: fw.test_script(d.path(), &test_files),
        test_files,
        test_parser: fw.test_parser().to_string(),
        bug_inject: bug,
        test_weaken: weak,
    };
    (d, a)
}

/// Settings for tests: short timeouts, scratch space inside `scratch`.
pub fn test_config(scratch: &Path) -> VerifyConfig {
    VerifyConfig {
        run_env: ssr_game::RunEnv::host_toolchains(),
        hard_timeout_secs: 20.0,
        soft_timeout_secs: 15.0,
        parser_timeout_secs: 5.0,
        scratch_dir: Some(scratch.to_path_buf()),
        ..VerifyConfig::default()
    }
}
