//! unittest (`python3 -m unittest -v`): the trusted reporter as `sitecustomize`.

use super::*;

use super::pytest_attacks::{CHANNEL_HELPERS, CREATE_PROTECTED, REWRITE_ORACLE};

const UNITTEST_TESTS: &str = "\
import unittest

from calc import add, sub, mul, div, clamp


class OpsTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_sub(self):
        self.assertEqual(sub(5, 3), 2)

    def test_mul(self):
        self.assertEqual(mul(4, 3), 12)

    def test_div(self):
        self.assertEqual(div(6, 3), 2)

    def test_clamp(self):
        self.assertEqual(clamp(5, 0, 3), 3)
";

/// An injector's parser of `unittest -v` logs: `name (mod.Class.name) ... ok`.
const UNITTEST_PARSER: &str = r#"import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"^(\w+) \(([\w.]+)\) \.\.\. (ok|FAIL|ERROR)\s*$", line)
    if m:
        name, qual, st = m.groups()
        tid = qual if qual.endswith("." + name) else qual + "." + name
        out[tid] = "passed" if st == "ok" else "failed"
print(json.dumps(out))
"#;

fn unittest_repo() -> (tempfile::TempDir, Artifact) {
    let d = tempfile::tempdir().unwrap();
    fixture::write_calc(d.path());
    std::fs::remove_file(d.path().join("tests/test_text.py")).unwrap();
    std::fs::write(d.path().join("tests/__init__.py"), "").unwrap();
    std::fs::write(d.path().join("tests/test_ops.py"), UNITTEST_TESTS).unwrap();
    let bug = diff(
        d.path(),
        &[(
            "calc/ops.py",
            Some(&fixture::OPS.replace("return a + b", BUGGY)),
        )],
    );
    let weak = diff(
        d.path(),
        &[(
            "tests/test_ops.py",
            Some(&UNITTEST_TESTS.replace("self.assertEqual(add(2, 3), 5)", "pass")),
        )],
    );
    let a = Artifact {
        test_files: vec!["tests/test_ops.py".into()],
        test_script: "#!/bin/bash\nexport PYTHONDONTWRITEBYTECODE=1\npython3 -m unittest -v tests.test_ops 2>&1\n".into(),
        test_parser: UNITTEST_PARSER.into(),
        bug_inject: bug,
        test_weaken: weak,
    };
    (d, a)
}

const UNITTEST_REPORT_OBJECT: &str = "
import unittest.result as _r
_r.TestResult.addFailure = lambda self, test, err: self.addSuccess(test)
";

const UNITTEST_RUNNER_CALL: &str = "
import unittest.case as _c
def _run(self, result=None):
    result.startTest(self)
    result.addSuccess(self)
    result.stopTest(self)
_c.TestCase.run = _run
";

const UNITTEST_TARGETED: &str = "
import unittest.result as _r
_fail = _r.TestResult.addFailure
def _forged(self, test, err):
    if test.id().endswith('.test_add'):
        return self.addSuccess(test)
    return _fail(self, test, err)
_r.TestResult.addFailure = _forged
";

/// The pytest reporter attack, aimed at the unittest hook's wrapped result calls.
const UNITTEST_PATCH_REPORTER: &str = "
import os as _os, unittest.result as _r
def _filter(write):
    def w(fd, data):
        data = data.replace(b'\\tfailed\\t', b'\\tpassed\\t').replace(b'\\traised', b'\\treturned')
        return write(fd, data)
    return w
for _c in (_r.TestResult.addFailure.__closure__ or ()):
    _v = _c.cell_contents
    for _c2 in (getattr(_v, '__closure__', None) or ()):
        try:
            if _c2.cell_contents is _os.write:
                _c2.cell_contents = _filter(_os.write)
        except ValueError:
            pass
";

/// Forge only tests whose method is defined in their module's file.
const UNITTEST_CANARY_AWARE: &str = "
import sys as _sys, unittest.result as _r
_fail = _r.TestResult.addFailure
def _forged(self, test, err):
    name = test.id().rsplit('.', 1)[-1]
    src = open(_sys.modules[type(test).__module__].__file__).read()
    if ('def ' + name + '(') in src:
        return self.addSuccess(test)
    return _fail(self, test, err)
_r.TestResult.addFailure = _forged
";

/// Rewriting the reporter's channel at exit: the text runner's failure call forges
/// the module's own tests (canaries keep theirs), and at exit their events are
/// turned into passes (`CHANNEL_HELPERS`).
fn unittest_rewrite_channel() -> String {
    CHANNEL_HELPERS.to_string()
        + "
import sys as _sys, unittest.runner as _ru
_fail = _ru.TextTestResult.addFailure
def _forged(self, test, err):
    name = test.id().rsplit('.', 1)[-1]
    with open(_sys.modules[type(test).__module__].__file__) as fh:
        src = fh.read()
    if ('def ' + name + '(') in src:
        _forged_ids.append(test.id())
        return self.addSuccess(test)
    return _fail(self, test, err)
_ru.TextTestResult.addFailure = _forged
"
}

fn unittest_fake_exit() -> String {
    let mut lines = Vec::new();
    for t in ["add", "sub", "mul", "div", "clamp"] {
        lines.push(format!("test_{t} (tests.test_ops.OpsTest.test_{t}) ... ok"));
    }
    lines.push("\n----------------------------------------------------------------------".into());
    lines.push("Ran 5 tests in 0.001s\n\nOK".into());
    format!(
        "\nimport os as _os, sys as _sys\n_sys.stderr.write({:?})\n_sys.stderr.flush()\n_os._exit(0)\n",
        lines.join("\n") + "\n"
    )
}

#[test]
fn unittest_attacks_score_minus_one_and_are_rejected() {
    let (repo, a) = unittest_repo();
    let buggy = fixture::OPS.replace("return a + b", BUGGY);
    let attacks: Vec<(&str, String)> = [
        ("report object", UNITTEST_REPORT_OBJECT.to_string()),
        ("runner report call", UNITTEST_RUNNER_CALL.to_string()),
        ("rewrite oracle files", REWRITE_ORACLE.to_string()),
        ("create a protected file", CREATE_PROTECTED.to_string()),
        ("fake summary and os._exit", unittest_fake_exit()),
        (
            "patch the trusted reporter",
            UNITTEST_PATCH_REPORTER.to_string(),
        ),
        ("forge only the failing ids", UNITTEST_TARGETED.to_string()),
        ("recognise canaries", UNITTEST_CANARY_AWARE.to_string()),
        ("rewrite the channel at exit", unittest_rewrite_channel()),
    ]
    .into_iter()
    .map(|(w, at)| (w, format!("{buggy}{at}")))
    .collect();
    attack_both_ways(repo.path(), &a, "calc/ops.py", &buggy, &attacks, false);
}

/// A script that starts Python without its site hooks (`-S`: no `sitecustomize`;
/// `-I`: no `PYTHONPATH`, no user site) bypasses the unittest reporter: the run is
/// incomplete and no test of it passes; the scan notes the flag.
#[test]
fn a_unittest_script_that_bypasses_the_reporter_passes_nothing() {
    let (repo, good) = unittest_repo();
    let scratch = tempfile::tempdir().unwrap();
    // `-I` also drops the working directory from `sys.path`: the script puts it back
    // so the tests still import, as a bypass that works would.
    let isolated = "python3 -I -c \"import sys; sys.path.insert(0, '.'); import unittest; \
                    unittest.main(module=None, argv=['unittest', '-v', 'tests.test_ops'])\"";
    for (flag, command) in [
        ("-S", "python3 -S -m unittest -v tests.test_ops"),
        ("-I", isolated),
    ] {
        let mut a = good.clone();
        a.test_script = a
            .test_script
            .replace("python3 -m unittest -v tests.test_ops", command);
        assert!(a.test_script.contains(flag), "{}", a.test_script);
        let r =
            Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
        assert!(!r.valid, "{flag}: {}", r.summary());
        assert_eq!(
            r.code,
            Some(RejectCode::IncompleteRun),
            "{flag}: {}",
            r.summary()
        );
        assert!(
            r.notes.iter().any(|n| n.contains("test_script.sh")),
            "{flag}: {:?}",
            r.notes
        );
    }
}
