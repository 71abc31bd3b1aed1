//! Repository layouts the bundled examples do not have: a `src/` package tested with
//! `unittest` classes whose tests need an environment variable. The procedural
//! injector must find the package, say why nothing passes when the variable is
//! missing, and make a valid bug once the operator sets it.

use crate::fixture::{sandbox, test_config};
use ssr_game::inject::{InjectConfig, InjectError, Strategy, inject};
use ssr_game::{BugState, Evaluator, VerifyConfig, patch_ops};
use std::path::Path;

const OPS: &str = "\
import os


def _places():
    return int(os.environ[\"UNITCALC_PLACES\"])


def add(a, b):
    return round(a + b, _places())


def mean(xs):
    if not xs:
        raise ValueError(\"empty\")
    total = 0
    for x in xs:
        total += x
    return round(total / len(xs), _places())


def clamp(x, lo, hi):
    if lo > hi:
        raise ValueError(\"lo > hi\")
    return max(lo, min(hi, x))
";

const TESTS: &str = "\
import unittest

from unitcalc.ops import add, clamp, mean


class OpsTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(0.1, 0.2), 0.3)

    def test_mean(self):
        self.assertEqual(mean([1, 2, 4]), 2.33)

    def test_mean_empty(self):
        with self.assertRaises(ValueError):
            mean([])

    def test_clamp(self):
        self.assertEqual(clamp(5, 0, 3), 3)
        self.assertEqual(clamp(-1, 0, 3), 0)

    def test_clamp_bad(self):
        with self.assertRaises(ValueError):
            clamp(1, 3, 0)


if __name__ == \"__main__\":
    unittest.main()
";

fn src_layout_repo(dir: &Path) {
    for (p, t) in [
        (
            "pyproject.toml",
            "[project]\nname = \"unitcalc\"\nversion = \"0.1\"\n",
        ),
        ("src/unitcalc/__init__.py", ""),
        ("src/unitcalc/ops.py", OPS),
        ("tests/__init__.py", ""),
        ("tests/test_ops.py", TESTS),
    ] {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
}

fn config(scratch: &Path, places: Option<&str>) -> InjectConfig {
    let mut verify: VerifyConfig = test_config(scratch);
    verify.min_passing_tests = 3;
    if let Some(p) = places {
        verify
            .run_env
            .env
            .insert("UNITCALC_PLACES".into(), p.into());
    }
    InjectConfig {
        strategy: Strategy::Removal,
        count: 1,
        seed: 3,
        max_candidates: 10,
        verify,
    }
}

#[test]
fn a_src_layout_unittest_repo_whose_tests_need_a_variable() {
    let repo = tempfile::tempdir().unwrap();
    src_layout_repo(repo.path());
    let scratch = tempfile::tempdir().unwrap();

    // Without the variable: a typed error that shows why (the test log's KeyError).
    match inject(
        sandbox(),
        repo.path(),
        &config(scratch.path(), None),
        &mut |_| {},
    ) {
        Err(InjectError::NothingPasses { log_tail, .. }) => {
            assert!(log_tail.contains("UNITCALC_PLACES"), "{log_tail}")
        }
        other => panic!("expected NothingPasses, got {other:?}"),
    }

    // With it: a valid bug in the `src/` package, whose true fix solves it.
    let cfg = config(scratch.path(), Some("2"));
    let run = inject(sandbox(), repo.path(), &cfg, &mut |_| {}).unwrap();
    let bug = run.bugs.first().expect("a valid bug");
    assert!(bug.report.valid, "{}", bug.report.summary());
    assert!(
        bug.artifact.bug_inject.contains("src/unitcalc/ops.py"),
        "{}",
        bug.artifact.bug_inject
    );
    let ev = Evaluator::new(sandbox(), cfg.verify.clone());
    let tests = bug.report.all_tests();
    let state = BugState {
        artifact: &bug.artifact,
        higher_order_patch: None,
        tests: &tests,
    };
    let fix = patch_ops::reverse(&bug.artifact.bug_inject).unwrap();
    let e = ev.evaluate(repo.path(), state, &fix);
    assert!(e.solved, "{}", e.summary());
    assert_eq!(e.reward, Some(1.0));
}
