//! Regression projects for the two failures of issue 16, built with the same traits as
//! the real projects that failed, and taken through the real pipeline (bubblewrap,
//! pytest, the injector, the verifier and the evaluator):
//! - `labelled`: a pytest suite whose parametrized ids hold spaces, ` - `, brackets,
//!   quotes, non-ASCII and a very long id, and which passes in full. The trusted parser
//!   lost the spaced ids and called the run incomplete, so "no test file passes".
//! - `tabbed`: a package indented with tabs. The removal stub was indented with
//!   spaces, so every candidate was a syntax error.

use crate::fixture::{sandbox, test_config};
use ssr_game::inject::{InjectConfig, Strategy, inject};
use ssr_game::{BugState, Evaluator, VerifyConfig, patch_ops};
use std::path::Path;

const LABELS: &str = "\
\"\"\"Formatting of labels.\"\"\"


def title(s):
    words = s.split(\" \")
    return \" \".join(w[:1].upper() + w[1:] for w in words)


def slug(s):
    out = []
    for ch in s.lower():
        out.append(ch if ch.isalnum() else \"-\")
    return \"\".join(out).strip(\"-\")


def bracket(s):
    return \"[\" + s + \"]\"
";

fn test_labels() -> String {
    let long = "very long label ".repeat(30);
    format!(
        "\
# -*- coding: utf-8 -*-
import pytest

from labelled import bracket, slug, title


@pytest.mark.parametrize(\"s,want\", [
    (\"hello world\", \"Hello World\"),
    (\"a - b\", \"A - B\"),
    (\"caf\u{e9} cr\u{e8}me\", \"Caf\u{e9} Cr\u{e8}me\"),
], ids=[\"two words\", \"with - dash\", \"caf\u{e9} cr\u{e8}me\"])
def test_title(s, want):
    assert title(s) == want


@pytest.mark.parametrize(\"s\", [\"it's here\", \"[in brackets]\", \"{long}\"])
def test_slug_has_no_spaces(s):
    assert \" \" not in slug(s)


class TestBracket:
    @pytest.mark.parametrize(\"s\", [\"x y\", \"\\\"quoted\\\" text\"])
    def test_wraps(self, s):
        assert bracket(s) == \"[\" + s + \"]\"


def test_slug_plain():
    assert slug(\"A b\") == \"a-b\"
"
    )
}

const TABBED: &str = "\
\"\"\"A stack, indented with tabs.\"\"\"


class Stack:
\tdef __init__(self):
\t\tself.items = []

\tdef push(self, x):
\t\t\"\"\"Adds x on top.\"\"\"
\t\tself.items.append(x)
\t\treturn len(self.items)

\tdef pop(self):
\t\tif not self.items:
\t\t\traise IndexError(\"empty\")
\t\treturn self.items.pop()

\t@property
\tdef top(self):
\t\treturn self.items[-1] if self.items else None


def reverse(xs):
\ts = Stack()
\tfor x in xs:
\t\ts.push(x)
\tout = []
\twhile s.top is not None:
\t\tout.append(s.pop())
\treturn out
";

const TEST_TABBED: &str = "\
from tabbed import Stack, reverse


def test_push_counts():
\ts = Stack()
\tassert s.push(1) == 1
\tassert s.push(2) == 2


def test_pop():
\ts = Stack()
\ts.push(1)
\tassert s.pop() == 1


def test_top():
\ts = Stack()
\ts.push(3)
\tassert s.top == 3


def test_reverse():
\tassert reverse([1, 2, 3]) == [3, 2, 1]


def test_pop_empty():
\timport pytest
\twith pytest.raises(IndexError):
\t\tStack().pop()
";

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
}

fn removal_config(scratch: &Path) -> InjectConfig {
    let mut verify: VerifyConfig = test_config(scratch);
    verify.min_passing_tests = 3;
    InjectConfig {
        strategy: Strategy::Removal,
        count: 1,
        seed: 1,
        max_candidates: 10,
        verify,
    }
}

/// Injects one removal bug and checks it is valid and its true fix scores +1.
fn one_valid_bug_whose_fix_scores(repo: &Path, expect_in_diff: &str) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let cfg = removal_config(scratch.path());
    let run = inject(sandbox(), repo, &cfg, &mut |_| {}).unwrap();
    let bug = run.bugs.first().expect("a valid bug");
    assert!(bug.report.valid, "{}", bug.report.summary());
    assert!(
        bug.artifact.bug_inject.contains(expect_in_diff),
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
    let e = ev.evaluate(repo, state, &fix);
    assert!(e.solved, "{}", e.summary());
    assert_eq!(e.reward, Some(1.0));
    tests
}

#[test]
fn regression_parametrized_ids_with_spaces_pass_in_full_and_make_bugs() {
    let repo = tempfile::tempdir().unwrap();
    let tests = test_labels();
    write(
        repo.path(),
        &[
            (
                "labelled/__init__.py",
                "from .fmt import bracket, slug, title\n",
            ),
            ("labelled/fmt.py", LABELS),
            ("tests/test_labels.py", &tests),
        ],
    );
    let ids = one_valid_bug_whose_fix_scores(repo.path(), "labelled/fmt.py");
    // Whichever function was stubbed, the spaced ids were read: the suite has 9 tests
    // and every one is in the bug's test set.
    assert!(ids.len() >= 9, "{ids:?}");
    assert!(ids.iter().any(|t| t.contains("[two words]")), "{ids:?}");
}

#[test]
fn regression_tab_indented_code_gets_valid_removal_bugs() {
    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        &[
            ("tabbed/__init__.py", "from .stack import Stack, reverse\n"),
            ("tabbed/stack.py", TABBED),
            ("tests/test_stack.py", TEST_TABBED),
        ],
    );
    one_valid_bug_whose_fix_scores(repo.path(), "tabbed/stack.py");
}
