//! Rust removal sites: every `fn` with a body outside `#[cfg(test)]` items, its body
//! replaced by `panic!("removed")`. The body's braces are matched on the text
//! (strings, chars and comments skipped, generics and `where` clauses passed over).
//!
//! Does not own: the site type or the choice of language (`removal`).

use super::super::weaken::match_brace;
use super::{RemovalSite, indent_str};
use regex::Regex;
use std::sync::LazyLock;

static RS_FN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^([ \t]*)(?:pub(?:\([^)]*\))?\s+)?(?:default\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+"[^"]*"\s+)?fn\s+(\w+)"#).unwrap()
});

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

/// The byte just after the generic parameter list that opens at `open` (a `<`), or
/// `None` when it does not close. `->` inside (`F: Fn() -> u8`) is not a closer.
fn skip_generics(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0i32;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'>') => i += 1,
            b'<' => depth += 1,
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'{' | b';' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// After a parameter list: the offset (in `tail`) of the body's `{`, or `None` for a
/// declaration ending in `;`. Brackets are tracked because a return type can hold a
/// `;` (`-> [u8; 4]`).
fn body_open(tail: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (k, ch) in tail.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '{' if depth <= 0 => return Some(k),
            ';' if depth <= 0 => return None,
            _ => {}
        }
    }
    None
}

/// Every removable function of a Rust file: generics (closures and `->` in bounds
/// included), `where` clauses and array return types are read through.
///
/// Skipped, besides test modules and declarations: functions returning `impl Trait`.
/// Why: `panic!()` has type `!`, which does not implement the trait (`()` is what the
/// compiler tries), so the stub would not compile and the candidate would only ever
/// "break every test".
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
        let mut at = m.end();
        let after_name = text[at..].trim_start();
        if after_name.starts_with('<') {
            let lt = text.len() - after_name.len();
            let Some(past) = skip_generics(text, lt) else {
                continue;
            };
            at = past;
        }
        let after = &text[at..];
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
                        params_end = Some(at + paren + k + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(pe) = params_end else { continue };
        let tail = &text[pe..];
        let Some(brace) = body_open(tail) else {
            continue;
        };
        let signature_rest = &tail[..brace];
        let returns = signature_rest
            .split_once("->")
            .map(|(_, r)| r.split(" where").next().unwrap_or(r));
        if returns.is_some_and(|r| r.contains("impl ")) {
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
        // The body's own indentation when it has lines; else one level more than the
        // `fn`, in the file's kind of whitespace.
        let body_indent = text[open + 1..close]
            .lines()
            .skip(1)
            .find(|l| !l.trim().is_empty())
            .map(indent_str)
            .filter(|b| b.len() > indent.len())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let unit = if indent.contains('\t') || text.contains("\n\t") {
                    "\t"
                } else {
                    "    "
                };
                format!("{indent}{unit}")
            });
        let stubbed = format!(
            "{}{{\n{body_indent}panic!(\"removed\")\n{indent}}}{}",
            &text[..open],
            &text[close + 1..]
        );
        out.push(RemovalSite {
            file: file.to_string(),
            function: name,
            lines: line_of(text, m.start())..line_of(text, close) + 1,
            stubbed,
        });
    }
    out
}

/// The 0-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::super::site_names as names;
    use super::*;

    #[test]
    fn rust_generics_impl_trait_and_where_clauses() {
        let src = "pub fn pick<T: Clone, F: Fn(&T) -> bool>(xs: &[T], f: F) -> Option<T> {\n    xs.iter().find(|x| f(x)).cloned()\n}\n\npub fn evens(n: u32) -> impl Iterator<Item = u32> {\n    (0..n).filter(|x| x % 2 == 0)\n}\n\npub fn sum<I>(xs: I) -> u64\nwhere\n    I: IntoIterator<Item = u64>,\n{\n    xs.into_iter().sum()\n}\n\npub(crate) fn bytes() -> [u8; 4] { [1, 2, 3, 4] }\n\npub struct W;\nimpl W {\n\tpub fn get(&self) -> u8 {\n\t\t7\n\t}\n}\n";
        let s = rust_sites("src/lib.rs", src);
        assert_eq!(names(&s), vec!["pick", "sum", "bytes", "get"]);
        let by = |n: &str| s.iter().find(|x| x.function == n).unwrap().stubbed.clone();
        assert!(by("pick").starts_with("pub fn pick<T: Clone, F: Fn(&T) -> bool>(xs: &[T], f: F) -> Option<T> {\n    panic!(\"removed\")\n}\n"));
        assert!(
            by("sum").contains("I: IntoIterator<Item = u64>,\n{\n    panic!(\"removed\")\n}\n")
        );
        assert!(by("get").contains("\tpub fn get(&self) -> u8 {\n\t\tpanic!(\"removed\")\n\t}\n"));
        // Every stub compiles (rustc, no cargo): the real check of "keeps the signature".
        let dir = tempfile::tempdir().unwrap();
        for site in &s {
            let f = dir.path().join(format!("{}.rs", site.function));
            std::fs::write(
                &f,
                format!("#![allow(unused, unreachable_code)]\n{}", site.stubbed),
            )
            .unwrap();
            let out = std::process::Command::new("rustc")
                .args([
                    "--edition",
                    "2021",
                    "--crate-type",
                    "lib",
                    "--emit",
                    "metadata",
                    "-o",
                ])
                .arg(dir.path().join(format!("{}.rmeta", site.function)))
                .arg(&f)
                .output()
                .expect("rustc runs");
            assert!(
                out.status.success(),
                "{}:\n{}",
                site.stubbed,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn rust_body_is_stubbed_outside_test_modules() {
        let src = "pub fn add(a: i32, b: i32) -> i32 {\n    let s = \"{\";\n    a + b\n}\n\ntrait T {\n    fn decl(&self) -> u8;\n}\n\n#[cfg(test)]\nmod tests {\n    fn helper() -> u8 { 1 }\n}\n";
        let s = rust_sites("src/lib.rs", src);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].function, "add");
        assert_eq!(s[0].lines, 0..4);
        assert!(s[0].stubbed.starts_with(
            "pub fn add(a: i32, b: i32) -> i32 {\n    panic!(\"removed\")\n}\n\ntrait T"
        ));
    }
}
