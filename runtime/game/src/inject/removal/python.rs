//! Python removal sites: every `def` (top level, in a class or nested) whose body
//! does something, its body after the docstring replaced by `raise
//! NotImplementedError` at the body's own indentation (tabs kept). Bodies are found
//! by a line scan that knows strings, brackets and continuations, not by indentation
//! alone. `@overload` signatures and abstract methods are skipped (nothing to remove).
//!
//! Does not own: the site type or the choice of language (`removal`).

use super::{RemovalSite, indent_str};
use regex::Regex;
use std::sync::LazyLock;

static PY_DEF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(").unwrap());
/// Decorators whose functions have no behaviour of their own to remove: an
/// `@overload` signature is never called, an abstract method is always overridden.
static PY_NO_BEHAVIOUR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^@(?:\w+\.)*(?:overload|abstractmethod|abstractproperty|abstractclassmethod|abstractstaticmethod)\b").unwrap()
});

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A Python source split into lines, with what a tokenizer knows about each line
/// start. Why a scan rather than "a line indented less ends the body": a multi-line
/// string or bracket at column 0 inside a body (`textwrap.dedent("""\n...""")`, a
/// long call) is not a statement, and cutting the body there leaves a syntax error.
struct PyLines<'a> {
    lines: Vec<&'a str>,
    /// Whether the line begins a new logical line: not inside a string or brackets
    /// and not after a backslash continuation.
    logical: Vec<bool>,
    /// Byte offset of each line in the text.
    offsets: Vec<usize>,
}

impl<'a> PyLines<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut offsets = Vec::with_capacity(lines.len());
        let mut logical = Vec::with_capacity(lines.len());
        let mut at = 0;
        let mut state = PyState::default();
        for line in &lines {
            offsets.push(at);
            logical.push(state.at_statement_start());
            state.feed(line);
            at += line.len();
        }
        PyLines {
            lines,
            logical,
            offsets,
        }
    }

    /// A line that is a statement of its own: a logical start, neither blank nor only
    /// a comment.
    fn is_statement(&self, i: usize) -> bool {
        let t = self.lines[i].trim();
        self.logical[i] && !t.is_empty() && !t.starts_with('#')
    }
}

/// Tokenizer state carried across lines: open string (quote byte, triple?), bracket
/// depth, and whether the last line ended with a backslash continuation.
#[derive(Default)]
struct PyState {
    string: Option<(u8, bool)>,
    depth: i32,
    continued: bool,
}

impl PyState {
    fn at_statement_start(&self) -> bool {
        self.string.is_none() && self.depth <= 0 && !self.continued
    }

    /// Advances over one line (with its newline); calls `code` with the byte offset
    /// (in `line`) and depth before each code byte outside strings and comments.
    fn feed_with(&mut self, line: &str, mut code: impl FnMut(usize, u8, i32) -> bool) {
        let b = line.as_bytes();
        let mut i = 0;
        self.continued = false;
        while i < b.len() {
            if let Some((q, triple)) = self.string {
                match b[i] {
                    b'\\' => i += 1,
                    c if c == q && !triple => self.string = None,
                    c if c == q && triple && b[i..].starts_with(&[q, q, q]) => {
                        self.string = None;
                        i += 2;
                    }
                    b'\n' if !triple => self.string = None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            match b[i] {
                b'#' => break,
                b'\\' if b[i + 1..].iter().all(|c| *c == b'\n' || *c == b'\r') => {
                    self.continued = true;
                    break;
                }
                q @ (b'"' | b'\'') => {
                    let triple = b[i..].starts_with(&[q, q, q]);
                    self.string = Some((q, triple));
                    i += if triple { 3 } else { 1 };
                    continue;
                }
                c => {
                    if !code(i, c, self.depth) {
                        return;
                    }
                    match c {
                        b'(' | b'[' | b'{' => self.depth += 1,
                        b')' | b']' | b'}' => self.depth -= 1,
                        _ => {}
                    }
                }
            }
            i += 1;
        }
    }

    fn feed(&mut self, line: &str) {
        self.feed_with(line, |_, _, _| true);
    }
}

/// Where a `def`'s header ends: the line holding the `:` at bracket depth 0 and the
/// byte offset just after that colon in the text, or `None` for a cut file.
fn header_end(py: &PyLines, def_line: usize) -> Option<(usize, usize)> {
    let mut state = PyState::default();
    for j in def_line..py.lines.len() {
        let mut colon = None;
        state.feed_with(py.lines[j], |k, c, depth| {
            if c == b':' && depth == 0 {
                colon = Some(k);
                return false;
            }
            true
        });
        if let Some(k) = colon {
            return Some((j, py.offsets[j] + k + 1));
        }
    }
    None
}

/// True for a statement that already does nothing: `pass`, `...` or a
/// `raise NotImplementedError`.
fn is_trivial(statements: &str) -> bool {
    let rest: Vec<&str> = statements
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    rest.is_empty()
        || (rest.len() == 1
            && (rest[0] == "pass"
                || rest[0] == "..."
                || rest[0].starts_with("raise NotImplementedError")))
}

/// True when the statement (its lines joined) is only a string literal: a docstring.
fn is_docstring(statement: &str) -> bool {
    let t = statement.trim();
    let body = t.trim_start_matches(['r', 'R', 'u', 'U']);
    (body.starts_with('"') || body.starts_with('\'')) && (t.ends_with('"') || t.ends_with('\''))
}

/// Every removable function of a Python file, in any indentation the file uses (the
/// stub copies the body's own leading whitespace, tabs included).
///
/// Skipped: bodies that already do nothing (`pass`, `...`, a docstring alone, a
/// `raise NotImplementedError`) and functions under `@overload` or an abstract-method
/// decorator (no behaviour a test can miss).
pub fn python_sites(file: &str, text: &str) -> Vec<RemovalSite> {
    let py = PyLines::new(text);
    let lines = &py.lines;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !py.logical[i] {
            continue;
        }
        let Some(c) = PY_DEF.captures(line) else {
            continue;
        };
        let indent = c[1].len();
        let name = c[2].to_string();
        // Decorators: the statements right above at the same indentation.
        let mut k = i;
        let mut no_behaviour = false;
        while k > 0 && py.is_statement(k - 1) && lines[k - 1].trim_start().starts_with('@') {
            k -= 1;
            no_behaviour |= PY_NO_BEHAVIOUR.is_match(lines[k].trim_start());
        }
        if no_behaviour {
            continue;
        }
        let Some((header_line, after_colon)) = header_end(&py, i) else {
            continue;
        };
        let line_end = py.offsets[header_line] + lines[header_line].len();
        let same_line = text[after_colon..line_end].trim();
        if !same_line.is_empty() && !same_line.starts_with('#') {
            // A one-line body (`def f(x): return x`): it runs to the next logical line.
            let next = (header_line + 1..lines.len())
                .find(|&j| py.logical[j])
                .unwrap_or(lines.len());
            let body_end = py.offsets.get(next).copied().unwrap_or(text.len());
            if is_trivial(&text[after_colon..body_end]) || is_docstring(same_line) {
                continue;
            }
            let newline = if text[..body_end].ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let stubbed = format!(
                "{} raise NotImplementedError{newline}{}",
                &text[..after_colon],
                &text[body_end..]
            );
            out.push(RemovalSite::new(file, name, k..next, stubbed));
            continue;
        }
        let body_start = header_line + 1;
        let mut end = body_start;
        while end < lines.len() {
            if py.is_statement(end) && indent_of(lines[end]) <= indent {
                break;
            }
            end += 1;
        }
        // Blank and comment lines after the last statement belong to what follows.
        while end > body_start && !py.is_statement(end - 1) && py.logical[end - 1] {
            end -= 1;
        }
        let Some(first) = (body_start..end).find(|&j| py.is_statement(j)) else {
            continue;
        };
        let body_indent = indent_str(lines[first]);
        // Keep a docstring: the first statement when it is a string alone.
        let mut first_end = first + 1;
        while first_end < end && !py.logical[first_end] {
            first_end += 1;
        }
        let keep = if is_docstring(&lines[first..first_end].concat()) {
            first_end
        } else {
            first
        };
        if is_trivial(&lines[keep..end].concat()) {
            continue;
        }
        let stub = format!("{body_indent}raise NotImplementedError\n");
        let mut new = String::with_capacity(text.len());
        new.extend(lines[..keep].iter().copied());
        new.push_str(&stub);
        new.extend(lines[end..].iter().copied());
        if !text.ends_with('\n') && end == lines.len() {
            // The file did not end with a newline; keep it that way.
            new.pop();
        }
        out.push(RemovalSite::new(file, name, k..end, new));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::site_names as names;
    use super::*;

    #[test]
    fn python_body_is_stubbed_keeping_signature_and_docstring() {
        let src = "class A:\n    def f(self,\n          x):\n        \"\"\"Doc.\n\n        More.\"\"\"\n        y = x + 1\n        return y\n\n    def g(self):\n        pass\n\n\ndef h():\n    return 1\n";
        let s = python_sites("m.py", src);
        let names: Vec<&str> = s.iter().map(|x| x.function.as_str()).collect();
        assert_eq!(names, vec!["f", "h"]);
        assert_eq!((s[0].lines.clone(), s[1].lines.clone()), (1..8, 13..15));
        assert_eq!(
            s[0].stubbed,
            "class A:\n    def f(self,\n          x):\n        \"\"\"Doc.\n\n        More.\"\"\"\n        raise NotImplementedError\n\n    def g(self):\n        pass\n\n\ndef h():\n    return 1\n"
        );
        assert!(
            s[1].stubbed
                .ends_with("def h():\n    raise NotImplementedError\n")
        );
    }

    /// Parses every stub with the real Python parser: a stub that does not parse is a
    /// candidate that can only "break every test".
    fn assert_python_parses(sites: &[RemovalSite]) {
        use std::io::Write;
        for s in sites {
            let mut child = std::process::Command::new("python3")
                .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(s.stubbed.as_bytes())
                .unwrap();
            assert!(
                child.wait().unwrap().success(),
                "stub of {} does not parse:\n{}",
                s.function,
                s.stubbed
            );
        }
    }

    /// Regression (issue 16): on a tab-indented file the stub was indented with spaces,
    /// so every candidate was a syntax error.
    #[test]
    fn tab_indented_bodies_get_a_tab_indented_stub() {
        let src = "class Box:\n\tdef get(self, k):\n\t\t\"\"\"Doc.\"\"\"\n\t\tv = self.d[k]\n\t\treturn v\n\n\ndef top(x):\n\tif x:\n\t\treturn 1\n\treturn 2\n";
        let s = python_sites("m.py", src);
        assert_eq!(names(&s), vec!["get", "top"]);
        assert_eq!(
            s[0].stubbed,
            "class Box:\n\tdef get(self, k):\n\t\t\"\"\"Doc.\"\"\"\n\t\traise NotImplementedError\n\n\ndef top(x):\n\tif x:\n\t\treturn 1\n\treturn 2\n"
        );
        assert!(
            s[1].stubbed
                .ends_with("def top(x):\n\traise NotImplementedError\n")
        );
        assert_python_parses(&s);
        // Two-space and mixed indentation too.
        let two = "def f(x):\n  y = x\n  return y\n\nclass C:\n  def m(self):\n    return 3\n";
        let s = python_sites("m.py", two);
        assert_eq!(names(&s), vec!["f", "m"]);
        assert!(
            s[1].stubbed
                .contains("  def m(self):\n    raise NotImplementedError\n")
        );
        assert_python_parses(&s);
    }

    #[test]
    fn python_shapes_are_stubbed_or_skipped_as_documented() {
        let src = r#"import abc
import functools
from typing import overload


def deco(f):
    @functools.wraps(f)
    def inner(*a, **k):
        return f(*a, **k)
    return inner


@deco
@functools.lru_cache(maxsize=None)
def decorated(x):
    return x * 2


def multi(
    a: int,
    b: dict[str, int] = {"k": 1},
    c=lambda: 0,
) -> tuple[int, int]:
    return a, b["k"]


async def fetch(n):
    total = 0
    for i in range(n):
        total += i
    return total


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self):
        return 0

    @property
    def name(self):
        return type(self).__name__

    @overload
    def scale(self, k: int) -> int: ...
    @overload
    def scale(self, k: float) -> float: ...
    def scale(self, k):
        return k


def one_line(x): return x + 1
def one_line_pass(x): pass
def docstring_only():
    """Nothing else."""


def outer(x):
    def nested(y):
        return y + x
    return nested(1)


def with_text():
    s = """
first
second"""
# a comment at column 0 inside the body
    return s
"#;
        let s = python_sites("m.py", src);
        assert_eq!(
            names(&s),
            vec![
                "deco",
                "inner",
                "decorated",
                "multi",
                "fetch",
                "name",
                "scale",
                "one_line",
                "outer",
                "nested",
                "with_text"
            ]
        );
        assert_python_parses(&s);
        let by = |n: &str| s.iter().find(|x| x.function == n).unwrap().stubbed.clone();
        assert!(
            by("one_line")
                .contains("def one_line(x): raise NotImplementedError\ndef one_line_pass")
        );
        assert!(by("multi").contains(") -> tuple[int, int]:\n    raise NotImplementedError\n"));
        assert!(
            by("fetch").contains("async def fetch(n):\n    raise NotImplementedError\n\n\nclass")
        );
        assert!(by("with_text").ends_with("def with_text():\n    raise NotImplementedError\n"));
        assert!(by("nested").contains(
            "    def nested(y):\n        raise NotImplementedError\n    return nested(1)"
        ));
        // The abstract method and the overload signatures keep their bodies everywhere.
        assert!(by("name").contains("    def area(self):\n        return 0\n"));
    }
}
