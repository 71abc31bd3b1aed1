//! `ssr doctor` on a playable repository (the calc package with a history holding a
//! fix) and on two unplayable ones (tests that need a setting; no tests at all): the
//! report must say yes with a valid sample bug, or name the cause and the flag.

use crate::fixture::{OPS, sandbox, test_config, write_calc};
use ssr_game::doctor::{Origin, doctor};
use ssr_game::inject::{Framework, Strategy};
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn doctor_says_a_calc_repository_with_history_is_playable() {
    let repo = tempfile::tempdir().unwrap();
    write_calc(repo.path());
    let buggy = OPS.replace("return max(lo, min(x, hi))", "return min(x, hi)");
    std::fs::write(repo.path().join("calc/ops.py"), buggy).unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "calc"]);
    std::fs::write(repo.path().join("calc/ops.py"), OPS).unwrap();
    git(
        repo.path(),
        &["commit", "-q", "-am", "fix: clamp ignored the lower bound"],
    );

    let scratch = tempfile::tempdir().unwrap();
    let mut cfg = test_config(scratch.path());
    cfg.min_passing_tests = 3;
    let r = doctor(sandbox(), Origin::Host, repo.path(), &cfg, 3);
    assert_eq!(r.framework, Some(Framework::Pytest));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.playable());
    assert!(r.tests_passing >= 5, "{r:?}");
    assert_eq!(r.runner_count, Some(r.trusted_read), "{r:?}");
    assert!(r.lost_by_trusted.is_empty());
    assert!(r.test_command.as_deref().unwrap().contains("pytest"));
    for s in &r.strategies {
        assert!(s.candidates > 0, "{s:?}");
        assert!(s.sample.as_ref().is_some_and(|b| b.valid), "{s:?}");
    }
    assert_eq!(
        r.strategies.iter().map(|s| s.strategy).collect::<Vec<_>>(),
        vec![Strategy::History, Strategy::Removal]
    );
}

#[test]
fn doctor_names_the_missing_setting_and_the_flag() {
    let repo = tempfile::tempdir().unwrap();
    for (p, t) in [
        (
            "knob/__init__.py",
            "import os\n\n\ndef level():\n    return int(os.environ[\"KNOB_LEVEL\"])\n",
        ),
        (
            "tests/test_knob.py",
            "from knob import level\n\n\ndef test_a():\n    assert level() > 0\n\n\ndef test_b():\n    assert level() < 9\n",
        ),
    ] {
        let f = repo.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let cfg = test_config(scratch.path());
    let r = doctor(sandbox(), Origin::Host, repo.path(), &cfg, 2);
    assert!(!r.playable());
    let p = &r.problems[0];
    assert!(p.cause.contains("KNOB_LEVEL"), "{p:?}");
    assert!(p.fix.contains("--test-env"), "{p:?}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("m.py"), "x = 1\n").unwrap();
    let r = doctor(sandbox(), Origin::Host, empty.path(), &cfg, 2);
    assert_eq!(r.framework, None);
    assert!(r.problems[0].cause.contains("no test framework"), "{r:?}");
}
