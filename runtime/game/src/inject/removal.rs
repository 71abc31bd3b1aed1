//! Removal candidates: replace one function's body with a stub that keeps the module
//! importable and the signature (and Python docstring) intact, so the solver must
//! re-implement the behaviour.
//! - Python: the body after the docstring becomes `raise NotImplementedError`.
//! - Rust: the body becomes `panic!("removed")`, which type-checks for every return
//!   type (`Default::default()` would not).
//!
//! Functions inside `#[cfg(test)]` modules, trait declarations without a body and
//! bodies that are already stubs are skipped.
//!
//! Does not own: weakening or verification (the pipeline in `inject`).

use super::scripts::Framework;
use super::weaken::match_brace;
use regex::Regex;
use std::sync::LazyLock;

/// One function whose body can be removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalSite {
    pub file: String,
    pub function: String,
    /// The file's text with the body replaced.
    pub stubbed: String,
}

static PY_DEF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(").unwrap());
static RS_FN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^([ \t]*)(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)").unwrap()
});

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Every removable function of a Python file.
pub fn python_sites(file: &str, text: &str) -> Vec<RemovalSite> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = PY_DEF.captures(line) else {
            continue;
        };
        let indent = c[1].len();
        let name = c[2].to_string();
        // The header ends at the first line ending with `:` outside brackets.
        let mut j = i;
        let mut depth: i32 = 0;
        loop {
            for ch in lines[j].chars() {
                match ch {
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' => depth -= 1,
                    _ => {}
                }
            }
            if depth <= 0 && lines[j].trim_end().ends_with(':') {
                break;
            }
            j += 1;
            if j >= lines.len() {
                break;
            }
        }
        if j >= lines.len() {
            continue;
        }
        let body_start = j + 1;
        let mut end = body_start;
        while end < lines.len() {
            let l = lines[end];
            if !l.trim().is_empty() && indent_of(l) <= indent {
                break;
            }
            end += 1;
        }
        while end > body_start && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        if end <= body_start {
            continue;
        }
        let body_indent = indent_of(lines[body_start]);
        // Keep a docstring.
        let mut keep = body_start;
        let first = lines[body_start].trim_start();
        for q in ["\"\"\"", "'''"] {
            if let Some(rest) = first.strip_prefix(q) {
                if rest.contains(q) {
                    keep = body_start + 1;
                } else {
                    let close = (body_start + 1..end).find(|&k| lines[k].contains(q));
                    keep = close.map(|k| k + 1).unwrap_or(body_start);
                }
            }
        }
        let rest: Vec<&str> = lines[keep..end]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let trivial = rest.is_empty()
            || (rest.len() == 1
                && (rest[0] == "pass"
                    || rest[0] == "..."
                    || rest[0].starts_with("raise NotImplementedError")));
        if trivial {
            continue;
        }
        let stub = format!("{}raise NotImplementedError\n", " ".repeat(body_indent));
        let mut new = String::with_capacity(text.len());
        new.extend(lines[..keep].iter().copied());
        new.push_str(&stub);
        new.extend(lines[end..].iter().copied());
        if !lines[..end].concat().ends_with('\n') && end == lines.len() {
            // The file did not end with a newline; keep it that way.
            new.pop();
        }
        out.push(RemovalSite {
            file: file.to_string(),
            function: name,
            stubbed: new,
        });
    }
    out
}

/// Byte ranges of `#[cfg(test)]` items (usually `mod tests { ... }`).
fn test_regions(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].find("#[cfg(test)]") {
        let at = from + p;
        match text[at..]
            .find('{')
            .and_then(|o| match_brace(text, at + o).map(|c| (at, c)))
        {
            Some(r) => {
                out.push(r);
                from = r.1;
            }
            None => break,
        }
    }
    out
}

/// Every removable function of a Rust file.
pub fn rust_sites(file: &str, text: &str) -> Vec<RemovalSite> {
    let regions = test_regions(text);
    let mut out = Vec::new();
    for c in RS_FN.captures_iter(text) {
        let m = c.get(0).expect("whole match");
        if regions
            .iter()
            .any(|(a, b)| m.start() >= *a && m.start() <= *b)
        {
            continue;
        }
        let name = c[2].to_string();
        // The body opens at the first `{` after the parameter list closes; a `;`
        // first means a declaration without a body.
        let after = &text[m.end()..];
        let Some(paren) = after.find('(') else {
            continue;
        };
        let mut depth = 0i32;
        let mut params_end = None;
        for (k, ch) in after[paren..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        params_end = Some(m.end() + paren + k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(pe) = params_end else { continue };
        let tail = &text[pe..];
        let (Some(brace), semi) = (tail.find('{'), tail.find(';')) else {
            continue;
        };
        if semi.is_some_and(|s| s < brace) {
            continue;
        }
        let open = pe + brace;
        let Some(close) = match_brace(text, open) else {
            continue;
        };
        let body = text[open + 1..close].trim();
        if body.is_empty() || body.starts_with("panic!(\"removed\")") {
            continue;
        }
        let indent = &c[1];
        let stubbed = format!(
            "{}{{\n{indent}    panic!(\"removed\")\n{indent}}}{}",
            &text[..open],
            &text[close + 1..]
        );
        out.push(RemovalSite {
            file: file.to_string(),
            function: name,
            stubbed,
        });
    }
    out
}

/// Removal sites of a code file for the framework.
pub fn sites(framework: Framework, file: &str, text: &str) -> Vec<RemovalSite> {
    match framework {
        Framework::Pytest => python_sites(file, text),
        Framework::Cargo => rust_sites(file, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_body_is_stubbed_keeping_signature_and_docstring() {
        let src = "class A:\n    def f(self,\n          x):\n        \"\"\"Doc.\n\n        More.\"\"\"\n        y = x + 1\n        return y\n\n    def g(self):\n        pass\n\n\ndef h():\n    return 1\n";
        let s = python_sites("m.py", src);
        let names: Vec<&str> = s.iter().map(|x| x.function.as_str()).collect();
        assert_eq!(names, vec!["f", "h"]);
        assert_eq!(
            s[0].stubbed,
            "class A:\n    def f(self,\n          x):\n        \"\"\"Doc.\n\n        More.\"\"\"\n        raise NotImplementedError\n\n    def g(self):\n        pass\n\n\ndef h():\n    return 1\n"
        );
        assert!(
            s[1].stubbed
                .ends_with("def h():\n    raise NotImplementedError\n")
        );
    }

    #[test]
    fn rust_body_is_stubbed_outside_test_modules() {
        let src = "pub fn add(a: i32, b: i32) -> i32 {\n    let s = \"{\";\n    a + b\n}\n\ntrait T {\n    fn decl(&self) -> u8;\n}\n\n#[cfg(test)]\nmod tests {\n    fn helper() -> u8 { 1 }\n}\n";
        let s = rust_sites("src/lib.rs", src);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].function, "add");
        assert!(s[0].stubbed.starts_with(
            "pub fn add(a: i32, b: i32) -> i32 {\n    panic!(\"removed\")\n}\n\ntrait T"
        ));
    }
}
