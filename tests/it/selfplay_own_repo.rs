//! `ssr selfplay` as a new user runs it on their own project: a `src/` package with
//! `unittest` tests that need an environment variable, copied without its git
//! history. Every procedural bug must still be made (the history strategy has no
//! candidates there, so the other strategy is tried), with the variable passed by
//! `--test-env`.

use crate::{embedded_model_or_skip, json, ssr};
use serde_json::json;
use std::path::Path;

const CODE: &str = "\
import os


def _scale():
    return float(os.environ[\"TEMPS_SCALE\"])


def c_to_f(c):
    return c * 9 / 5 * _scale() + 32


def f_to_c(f):
    return (f - 32) * 5 / 9 / _scale()


def warmest(readings):
    if not readings:
        raise ValueError(\"no readings\")
    best = readings[0]
    for r in readings[1:]:
        if r > best:
            best = r
    return best
";

const TESTS: &str = "\
import unittest

from temps.convert import c_to_f, f_to_c, warmest


class ConvertTest(unittest.TestCase):
    def test_freezing(self):
        self.assertEqual(c_to_f(0), 32)

    def test_boiling(self):
        self.assertEqual(c_to_f(100), 212)

    def test_back(self):
        self.assertEqual(f_to_c(212), 100)

    def test_warmest(self):
        self.assertEqual(warmest([3, 9, 4]), 9)

    def test_warmest_empty(self):
        with self.assertRaises(ValueError):
            warmest([])
";

fn write_project(dir: &Path) {
    for (p, t) in [
        ("src/temps/__init__.py", ""),
        ("src/temps/convert.py", CODE),
        ("tests/__init__.py", ""),
        ("tests/test_convert.py", TESTS),
    ] {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
}

/// Regression: the procedural strategy alternated by seed, so on a repository with
/// no history every other procedural bug was `procedural_none` (seed 1 puts history
/// first for one of the two bugs).
#[test]
fn selfplay_on_a_project_without_history_whose_tests_need_a_variable() {
    let Some(model) = embedded_model_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("temps");
    write_project(&repo);
    let submit = json!("<tool: submit>\n</tool>");
    let script = tmp.path().join("script.json");
    let turns = json!({"injector": [], "solver": [[submit], [submit]]});
    std::fs::write(&script, turns.to_string()).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "seed = 1\nrounds = 1\ninjector_rollouts = 0\nprocedural_per_round = 2\n\
         attempts_per_bug = 1\nmax_higher_order_per_round = 0\nmin_passing_tests = 3\n",
    )
    .unwrap();
    let out = ssr()
        .args(["selfplay", "--policy", "scripted", "--json"])
        .arg("--repo")
        .arg(&repo)
        .arg("--script")
        .arg(&script)
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .args(["--test-env", "TEMPS_SCALE=1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json(&out);
    assert_eq!(summary["summary"]["procedural_valid"], 2, "{summary}");
}
