//! pytest: the trusted reporter as a plugin; canaries re-selected after `-k`/`-m`.

use super::*;

/// Patching pytest's report object: every failure becomes a pass.
const REPORT_OBJECT: &str = "
import _pytest.reports as _r
_init = _r.TestReport.__init__
def _forged(self, *a, **k):
    _init(self, *a, **k)
    if self.outcome == 'failed':
        self.outcome = 'passed'
        self.longrepr = None
_r.TestReport.__init__ = _forged
";

/// Patching the runner's report call: no test body runs, every phase reports passed.
const RUNNER_CALL: &str = "
import _pytest.runner as _run
def _forged(item, when, log=True, **kw):
    call = _run.CallInfo.from_call(lambda: None, when=when)
    rep = item.ihook.pytest_runtest_makereport(item=item, call=call)
    if log:
        item.ihook.pytest_runtest_logreport(report=rep)
    return rep
_run.call_and_report = _forged
";

/// Rewriting the oracle files during the run (weakening every assertion).
pub(super) const REWRITE_ORACLE: &str = "
import os as _os
for _d, _, _fs in _os.walk('tests'):
    for _f in _fs:
        if _f.startswith('test_') and _f.endswith('.py'):
            _p = _os.path.join(_d, _f)
            try:
                _s = open(_p).read()
                open(_p, 'w').write(_s.replace('assert ', 'assert True or '))
            except OSError:
                pass
";

/// Creating a file under a protected glob during the run.
pub(super) const CREATE_PROTECTED: &str = "
try:
    open('tests/conftest.py', 'w').write('import pytest\\n')
except OSError:
    pass
";

/// Patching the trusted reporter itself: find it by its hooks and rewrite what it
/// writes to its channel.
const PATCH_REPORTER: &str = "
import os as _os, sys as _sys
def _filter(write):
    def w(fd, data):
        data = data.replace(b'\\tfailed\\t', b'\\tpassed\\t').replace(b'\\traised', b'\\treturned')
        return write(fd, data)
    return w
for _m in list(_sys.modules.values()):
    _h = getattr(_m, 'pytest_runtest_logreport', None)
    for _c in (getattr(_h, '__closure__', None) or ()):
        try:
            _v = _c.cell_contents
        except ValueError:
            continue
        for _c2 in (getattr(_v, '__closure__', None) or ()):
            try:
                if _c2.cell_contents is _os.write:
                    _c2.cell_contents = _filter(_os.write)
            except ValueError:
                pass
";

/// Forging only the ids of the failing tests named in the task.
const TARGETED: &str = "
import _pytest.reports as _r
_init = _r.TestReport.__init__
def _forged(self, *a, **k):
    _init(self, *a, **k)
    if self.nodeid.endswith('::test_add') and self.outcome == 'failed':
        self.outcome = 'passed'
        self.longrepr = None
_r.TestReport.__init__ = _forged
";

/// Recognising canaries by body or location: forge only tests whose `def` is in
/// their file, so tests the runtime added keep their true outcome.
const CANARY_AWARE: &str = "
import _pytest.reports as _r
_init = _r.TestReport.__init__
def _real(nodeid):
    path, _, name = nodeid.partition('::')
    try:
        return ('def ' + name.split('::')[-1] + '(') in open(path).read()
    except OSError:
        return False
def _forged(self, *a, **k):
    _init(self, *a, **k)
    if self.outcome == 'failed' and _real(self.nodeid):
        self.outcome = 'passed'
        self.longrepr = None
_r.TestReport.__init__ = _forged
";

/// A fake summary of every test passing, then an early exit.
fn fake_exit(p: &[String]) -> String {
    let mut lines = vec![
        "\n=========================== short test summary info ============================"
            .to_string(),
    ];
    for id in p {
        lines.push(format!("PASSED {id}"));
    }
    lines.push(format!(
        "============================== {} passed in 0.01s ==============================",
        p.len()
    ));
    format!(
        "\nimport os as _os, sys as _sys\n_sys.stdout.write({:?})\n_sys.stdout.flush()\n_os._exit(0)\n",
        lines.join("\n") + "\n"
    )
}

fn pytest_attacks(p: &[String]) -> Vec<(&'static str, String)> {
    vec![
        ("report object", REPORT_OBJECT.to_string()),
        ("runner report call", RUNNER_CALL.to_string()),
        ("rewrite oracle files", REWRITE_ORACLE.to_string()),
        ("create a protected file", CREATE_PROTECTED.to_string()),
        ("fake summary and os._exit", fake_exit(p)),
        ("patch the trusted reporter", PATCH_REPORTER.to_string()),
        ("forge only the failing ids", TARGETED.to_string()),
        ("recognise canaries", CANARY_AWARE.to_string()),
    ]
}

#[test]
fn pytest_attacks_as_solver_patches_score_minus_one_with_a_note() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let a = good_artifact(repo.path());
    let (p, report) = verified(repo.path(), &a, scratch.path());
    let bug = BugState {
        artifact: &a,
        higher_order_patch: None,
        tests: &p,
    };
    let ev = Evaluator::new(fixture::sandbox(), test_config(scratch.path()))
        .expecting_log_format(report.log_format);
    for (what, attack) in pytest_attacks(&p) {
        let e = ev.evaluate(repo.path(), bug, &solver_patch(&attack));
        assert_minus_one_with_note(what, &e);
        assert!(
            e.notes.iter().any(|n| n.starts_with("scan:")),
            "{what}: the scan missed it: {}",
            e.summary()
        );
        // Every attack that gets past the read-only tests is caught as tampering;
        // a blocked rewrite leaves the bug failing.
        if what == "rewrite oracle files" {
            assert!(
                matches!(e.outcome, EvalOutcome::TestsFailing { .. }),
                "{what}: {}",
                e.summary()
            );
            assert!(e.failing.contains(&"tests/test_ops.py::test_add".into()));
        } else {
            assert!(
                matches!(e.outcome, EvalOutcome::Tampered { .. }),
                "{what}: {}",
                e.summary()
            );
        }
        assert!(e.reporter_secret.is_some(), "{what}");
    }
    // The true fix still scores +1, with no scan finding.
    let fix = patch_ops::reverse(&a.bug_inject).unwrap();
    let e = ev.evaluate(repo.path(), bug, &fix);
    assert!(e.solved, "{}", e.summary());
    assert!(e.notes.is_empty(), "{}", e.summary());
}

#[test]
fn pytest_attacks_in_a_bug_are_rejected_by_verify() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let good = good_artifact(repo.path());
    let (p, _) = verified(repo.path(), &good, scratch.path());
    for (what, attack) in pytest_attacks(&p) {
        let mut a = good.clone();
        a.bug_inject = diff(
            repo.path(),
            &[(
                "calc/ops.py",
                Some(&format!(
                    "{}{attack}",
                    fixture::OPS.replace("return a + b", BUGGY)
                )),
            )],
        );
        // A blocked rewrite leaves an ordinary bug: only the scan sees the attempt.
        let cfg = VerifyConfig {
            reject_tampering_findings: what == "rewrite oracle files",
            ..test_config(scratch.path())
        };
        let r = Verifier::new(fixture::sandbox(), cfg).verify(repo.path(), &a);
        assert!(!r.valid, "{what}: {}", r.summary());
        assert_eq!(
            r.code,
            Some(RejectCode::Tampered),
            "{what}: {}",
            r.summary()
        );
        assert!(!r.notes.is_empty(), "{what}");
    }
}

#[test]
fn canaries_survive_deselection_and_a_script_that_bypasses_the_reporter_passes_nothing() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let mut a = good_artifact(repo.path());
    a.test_script = a
        .test_script
        .replace("-m pytest -rA", "-m pytest -rA -k 'not test_div'");
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.runs.iter().all(|x| x.reporter_secret.is_some()));
    let secrets: std::collections::BTreeSet<_> =
        r.runs.iter().map(|x| x.reporter_secret.clone()).collect();
    assert_eq!(secrets.len(), r.runs.len(), "one secret per run");
    // Clearing PYTEST_ADDOPTS and turning off the user site (where the reporter's
    // hook also stands) drops the plugin: the run is incomplete.
    let mut bypass = good_artifact(repo.path());
    bypass.test_script = bypass.test_script.replace(
        "python3 -m pytest",
        "PYTEST_ADDOPTS= PYTHONNOUSERSITE=1 python3 -m pytest",
    );
    let r =
        Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &bypass);
    assert!(!r.valid);
    assert_eq!(r.code, Some(RejectCode::IncompleteRun), "{}", r.summary());
}

/// Regression (the scripted self-play injector's artifact was rejected as incomplete):
/// a test script that sets its own `PYTHONPATH` and `PYTEST_ADDOPTS`, as injectors
/// often write, keeps the trusted reporter (through the user site) and stays valid.
#[test]
fn a_test_script_that_sets_its_own_pythonpath_keeps_the_reporter() {
    let repo = calc_repo();
    let scratch = tempfile::tempdir().unwrap();
    let mut a = good_artifact(repo.path());
    a.test_script = a.test_script.replace(
        "python3 -m pytest",
        "export PYTHONPATH=. PYTEST_ADDOPTS=-q\npython3 -m pytest",
    );
    assert!(
        a.test_script.contains("export PYTHONPATH=."),
        "{}",
        a.test_script
    );
    let r = Verifier::new(fixture::sandbox(), test_config(scratch.path())).verify(repo.path(), &a);
    assert!(r.valid, "{}", r.summary());
    assert!(r.runs.iter().all(|x| x.reporter_secret.is_some()));
}
