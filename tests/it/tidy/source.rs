//! Reading Rust source without a parser: blanking comments and literals (so braces and
//! paths can be counted), blanking `#[cfg(test)]` modules, and finding functions with
//! their line spans and the comment lines right above them.
//!
//! Owns: the text rules the tidy checks share. Does not own: the rules themselves
//! (`modules`, `mod.rs`). Approximate on purpose: it reads the code this project writes
//! (no macros defining functions, no `{` inside a signature), and its own tests pin it.

/// `src` with comments, string, byte-string, raw-string and char literals replaced by
/// spaces (newlines kept), so offsets and line numbers stay those of `src`.
pub fn blank_comments_and_literals(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(b, i) {
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                // Past the escaped character, which may itself be a quote (`'\''`).
                b.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'\''))
                    .map(|n| i + 3 + n + 1)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(e) => {
                    blank(&mut out, i, e);
                    i = e;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    // Only ASCII bytes were replaced by ASCII spaces, and whole literals at that, so a
    // multi-byte character is either kept whole or blanked whole... except inside a
    // blanked span, where its bytes became spaces too: still valid UTF-8.
    String::from_utf8(out).expect("blanking keeps UTF-8 valid")
}

fn is_ident_byte(b: &[u8], i: usize) -> bool {
    b.get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The end of a raw string (`r"…"`, `r#"…"#`, `br#"…"#`) starting at `i`, if one does.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    if is_ident_byte(b, i.wrapping_sub(1)) {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = j + 1;
    let n = b[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + n + close.len())
}

/// `code` (already blanked by [`blank_comments_and_literals`]) with every
/// `#[cfg(test)]` module's body blanked too.
pub fn blank_test_modules(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(n) = code[from..].find("#[cfg(test)]") {
        let at = from + n;
        from = at + 1;
        let after = &code[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let Some(rest) = trimmed
            .strip_prefix("pub(crate) mod ")
            .or_else(|| trimmed.strip_prefix("mod "))
        else {
            continue;
        };
        let Some(open_rel) = rest.find(['{', ';']) else {
            continue;
        };
        if rest.as_bytes()[open_rel] == b';' {
            continue;
        }
        let open = code.len() - rest.len() + open_rel;
        if let Some(close) = matching_brace(code, open) {
            for c in &mut out[at..=close] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
            from = close;
        }
    }
    String::from_utf8(out).expect("only ASCII replaced")
}

/// The offset of the `}` closing the `{` at `open`.
pub fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code.bytes().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// One function with a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// 1-based line of `fn`.
    pub line: usize,
    /// Lines from `fn` to the closing brace, both included.
    pub lines: usize,
}

/// Every function with a body in `code` (blanked), outside blanked test modules.
pub fn functions(code: &str) -> Vec<Function> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..].find("fn ") {
        let at = from + n;
        from = at + 3;
        if is_ident_byte(b, at.wrapping_sub(1)) {
            continue;
        }
        let name: String = code[at + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(` types
        }
        // The body starts at the first `{` outside the signature's brackets; a `;`
        // first means a declaration without a body (a trait method).
        let mut depth = 0i32;
        let mut open = None;
        for (i, c) in b.iter().enumerate().skip(at) {
            match c {
                b'(' | b'[' | b'<' => depth += 1,
                b')' | b']' => depth -= 1,
                b'>' if b[i - 1] != b'-' && b[i - 1] != b'=' => depth -= 1,
                b'{' if depth <= 0 => {
                    open = Some(i);
                    break;
                }
                b';' if depth <= 0 => break,
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let Some(close) = matching_brace(code, open) else {
            continue;
        };
        let line = line_of(code, at);
        found.push(Function {
            name,
            line,
            lines: line_of(code, close) - line + 1,
        });
    }
    found
}

/// The 1-based line of byte offset `at`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

/// The lines right above line `line` (1-based) of `src` that are comments, doc
/// comments or attributes: what a reader sees attached to the item on that line.
pub fn attached_lines(src: &str, line: usize) -> Vec<&str> {
    let lines: Vec<&str> = src.lines().collect();
    let mut attached = Vec::new();
    for l in lines[..line.saturating_sub(1)].iter().rev() {
        let t = l.trim_start();
        if t.starts_with("//") || t.starts_with("#[") {
            attached.push(t);
        } else {
            break;
        }
    }
    attached
}
