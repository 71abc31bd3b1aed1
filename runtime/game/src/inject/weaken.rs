//! Weakening by deletion: given the ids of the tests a bug breaks, delete those whole
//! test functions from the oracle files (never comment them out), for pytest and
//! `cargo test` ids.
//!
//! Text-based on purpose: it only needs to find where a named test function starts
//! and ends, which indentation (Python) or brace matching (Rust) answers without a
//! parser for either language. A test it cannot find is reported, not guessed.
//!
//! Does not own: deciding which tests to delete (the injector pipeline).

use super::scripts::Framework;
use std::collections::BTreeMap;

/// Where a test id points: file, enclosing class/module path and function name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLocation {
    pub file: String,
    pub class: Option<String>,
    pub name: String,
}

/// Reads a test id in the scheme of the generated parsers.
pub fn locate(framework: Framework, id: &str) -> Option<TestLocation> {
    let (file, rest) = id.split_once("::")?;
    match framework {
        Framework::Pytest => {
            // Parameters (`[...]`) can hold anything, `::` included: drop them first.
            let path = rest.split('[').next()?;
            let parts: Vec<&str> = path.split("::").collect();
            let name = parts.last()?.to_string();
            let class = (parts.len() >= 2).then(|| parts[parts.len() - 2].to_string());
            Some(TestLocation {
                file: file.to_string(),
                class,
                name,
            })
        }
        Framework::Cargo => {
            // `tests/parse.rs::module::test_name`; only integration-test files are
            // oracle files, so unit tests inside `src/` are not located.
            if !file.starts_with("tests/") {
                return None;
            }
            let name = rest.rsplit("::").next()?.to_string();
            Some(TestLocation {
                file: file.to_string(),
                class: None,
                name,
            })
        }
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Deletes the Python function `name` (in class `class` when given) with its
/// decorators; returns the new text, or `None` when it is not found.
pub fn delete_python_test(text: &str, class: Option<&str>, name: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let (lo, hi, min_indent) = match class {
        Some(c) => {
            let start = lines.iter().position(|l| {
                let t = l.trim_start();
                indent_of(l) == 0
                    && (t.starts_with(&format!("class {c}("))
                        || t.starts_with(&format!("class {c}:")))
            })?;
            let end = block_end(&lines, start);
            (start + 1, end, 1)
        }
        None => (0, lines.len(), 0),
    };
    let def_a = format!("def {name}(");
    let def_b = format!("async def {name}(");
    let def = (lo..hi).find(|&i| {
        let t = lines[i].trim_start();
        (t.starts_with(&def_a) || t.starts_with(&def_b))
            && (indent_of(lines[i]) >= min_indent)
            && (class.is_some() || indent_of(lines[i]) == 0)
    })?;
    let mut start = def;
    while start > lo && lines[start - 1].trim_start().starts_with('@') {
        start -= 1;
    }
    let mut end = block_end(&lines, def);
    // Take the blank lines after the function too, so no double gap is left.
    while end < hi && lines[end].trim().is_empty() {
        end += 1;
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    out.extend_from_slice(&lines[..start]);
    if let Some(c) = class {
        // A class emptied of its last method still needs a body.
        let cls = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("class {c}")))?;
        let body_left = lines[cls + 1..start]
            .iter()
            .chain(&lines[end..block_end(&lines, cls).max(end)])
            .any(|l| !l.trim().is_empty());
        if !body_left {
            out.push("    pass\n\n\n");
        }
    }
    out.extend_from_slice(&lines[end..]);
    Some(out.concat())
}

/// The index after the block opened by the line at `start` (first later non-blank
/// line indented no deeper than it, skipping the header's continuation lines).
fn block_end(lines: &[&str], start: usize) -> usize {
    let base = indent_of(lines[start]);
    let mut i = start + 1;
    // Skip a signature continued over several lines (until a line ending with `:`).
    if !lines[start].trim_end().ends_with(':') {
        while i < lines.len() && !lines[i - 1].trim_end().ends_with(':') {
            i += 1;
        }
    }
    while i < lines.len() {
        let l = lines[i];
        if !l.trim().is_empty() && indent_of(l) <= base && !l.trim_start().starts_with('#') {
            break;
        }
        i += 1;
    }
    // Trailing blank lines belong to what follows.
    while i > start + 1 && lines[i - 1].trim().is_empty() {
        i -= 1;
    }
    i
}

/// Finds the byte index of the `}` matching the `{` at `open`, skipping strings,
/// chars and comments.
pub(crate) fn match_brace(src: &str, open: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                // Raw strings r"..." / r#"..."# are handled by their closing quote.
                let hashes = count_raw_hashes(b, i);
                i += 1;
                while i < b.len() {
                    if hashes.is_none() && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'"' {
                        let n = hashes.unwrap_or(0);
                        if b[i + 1..].iter().take(n).filter(|c| **c == b'#').count() == n {
                            i += n;
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 2;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn count_raw_hashes(b: &[u8], quote: usize) -> Option<usize> {
    let mut j = quote;
    let mut n = 0;
    while j > 0 && b[j - 1] == b'#' {
        j -= 1;
        n += 1;
    }
    (j > 0 && b[j - 1] == b'r').then_some(n)
}

/// Deletes the Rust function `name` with its attributes and doc comments.
pub fn delete_rust_test(text: &str, name: &str) -> Option<String> {
    let re = regex::Regex::new(&format!(
        r"(?m)^[ \t]*(?:pub\s+)?(?:async\s+)?fn\s+{}\s*\(",
        regex::escape(name)
    ))
    .ok()?;
    let m = re.find(text)?;
    let open = m.end() + text[m.end()..].find('{')?;
    let close = match_brace(text, open)?;
    // Extend upwards over attributes and comments directly above.
    let mut start = m.start();
    while start > 0 {
        let prev_end = start - 1;
        let prev_start = text[..prev_end].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let prev = text[prev_start..prev_end].trim();
        if prev.starts_with("#[") || prev.starts_with("//") {
            start = prev_start;
        } else {
            break;
        }
    }
    let mut end = close + 1;
    if text[end..].starts_with('\n') {
        end += 1;
    }
    // Drop one blank line that separated it from the next item.
    if text[end..].starts_with('\n') && start > 0 && text[..start].ends_with("\n\n") {
        end += 1;
    }
    Some(format!("{}{}", &text[..start], &text[end..]))
}

/// Deletes every test in `ids` from the files in `files` (path → content). Returns
/// the changed files and the ids that could not be found.
pub fn delete_tests(
    framework: Framework,
    files: &BTreeMap<String, String>,
    ids: &[String],
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut changed: BTreeMap<String, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for id in ids {
        let Some(loc) = locate(framework, id) else {
            missing.push(id.clone());
            continue;
        };
        let Some(current) = changed.get(&loc.file).or_else(|| files.get(&loc.file)) else {
            missing.push(id.clone());
            continue;
        };
        let new = match framework {
            Framework::Pytest => delete_python_test(current, loc.class.as_deref(), &loc.name),
            Framework::Cargo => delete_rust_test(current, &loc.name),
        };
        match new {
            Some(t) => {
                changed.insert(loc.file, t);
            }
            // Parametrised cases of one function are deleted together: the second
            // id of the same function finds nothing left, which is fine when the
            // file was already changed for it.
            None if changed.contains_key(&loc.file) => {}
            None => missing.push(id.clone()),
        }
    }
    (changed, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_function_and_method_deletion() {
        let src = "import x\n\n\n@dec\ndef test_a():\n    assert 1\n\n    assert 2\n\n\ndef test_b():\n    pass\n\n\nclass TestC:\n    def test_m(self):\n        assert 1\n\n    def test_n(self):\n        assert 2\n";
        let out = delete_python_test(src, None, "test_a").unwrap();
        assert_eq!(
            out,
            "import x\n\n\ndef test_b():\n    pass\n\n\nclass TestC:\n    def test_m(self):\n        assert 1\n\n    def test_n(self):\n        assert 2\n"
        );
        let out = delete_python_test(src, Some("TestC"), "test_m").unwrap();
        assert!(out.contains("def test_n") && !out.contains("test_m"));
        let out2 = delete_python_test(&out, Some("TestC"), "test_n").unwrap();
        assert!(out2.contains("class TestC:\n    pass"), "{out2}");
        assert!(delete_python_test(src, None, "test_zzz").is_none());
    }

    #[test]
    fn rust_test_deletion_with_attributes_and_braces_in_strings() {
        let src = "use x::y;\n\n#[test]\nfn keeps() {\n    assert!(true);\n}\n\n/// doc\n#[test]\n#[should_panic]\nfn goes() {\n    let s = \"}{\";\n    let c = '}';\n    assert_eq!(s, \"x\");\n}\n\n#[test]\nfn after() {}\n";
        let out = delete_rust_test(src, "goes").unwrap();
        assert_eq!(
            out,
            "use x::y;\n\n#[test]\nfn keeps() {\n    assert!(true);\n}\n\n#[test]\nfn after() {}\n"
        );
    }

    #[test]
    fn ids_are_located() {
        assert_eq!(
            locate(Framework::Pytest, "tests/t.py::TestC::test_x[1-2]"),
            Some(TestLocation {
                file: "tests/t.py".into(),
                class: Some("TestC".into()),
                name: "test_x".into()
            })
        );
        // Parameters holding `::` and spaces do not move the name.
        assert_eq!(
            locate(Framework::Pytest, "tests/t.py::test_x[a::b c]"),
            Some(TestLocation {
                file: "tests/t.py".into(),
                class: None,
                name: "test_x".into()
            })
        );
        assert_eq!(locate(Framework::Cargo, "src/lib.rs::tests::a"), None);
        assert_eq!(
            locate(Framework::Cargo, "tests/p.rs::m::a").unwrap().name,
            "a"
        );
    }
}
