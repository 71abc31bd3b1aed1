//! Git's C-style path quoting (`"a/caf\303\251 \"x\""`), both ways.
//!
//! Owns: quoting a path for a patch header and unquoting one. Does not own: deciding
//! whether a path is safe to write (that is `apply`).

/// Quotes `prefix + path` the way git does when the path holds a control character, a
/// quote, a backslash or a non-ASCII byte; returns it bare otherwise.
pub(crate) fn quote_path(prefix: &str, path: &str) -> String {
    let full = format!("{prefix}{path}");
    let needs = full
        .bytes()
        .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f);
    if !needs {
        return full;
    }
    let mut out = String::with_capacity(full.len() + 2);
    out.push('"');
    for b in full.bytes() {
        match b {
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if !(0x20..0x7f).contains(&b) => out.push_str(&format!("\\{b:03o}")),
            b => out.push(b as char),
        }
    }
    out.push('"');
    out
}

/// Reads one C-quoted string at the start of `s` (which must start with `"`); returns the
/// unquoted text and the rest of `s` after the closing quote, or `None` if malformed.
pub(crate) fn unquote_prefix(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let text = String::from_utf8(out).ok()?;
                return Some((text, &s[i + 1..]));
            }
            b'\\' => {
                let c = *bytes.get(i + 1)?;
                i += 2;
                match c {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'v' => out.push(0x0b),
                    b'f' => out.push(0x0c),
                    b'r' => out.push(b'\r'),
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'0'..=b'7' => {
                        let digits = bytes.get(i - 1..i + 2)?;
                        let mut v: u32 = 0;
                        for d in digits {
                            if !(b'0'..=b'7').contains(d) {
                                return None;
                            }
                            v = v * 8 + u32::from(d - b'0');
                        }
                        out.push(u8::try_from(v).ok()?);
                        i += 2;
                    }
                    _ => return None,
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_special_names() {
        for name in [
            "plain.txt",
            "with space",
            "tab\there",
            "quo\"te",
            "café",
            "back\\slash",
        ] {
            let quoted = quote_path("a/", name);
            let back = if quoted.starts_with('"') {
                unquote_prefix(&quoted).unwrap().0
            } else {
                quoted.clone()
            };
            assert_eq!(back, format!("a/{name}"), "{quoted}");
        }
        assert_eq!(quote_path("a/", "café"), "\"a/caf\\303\\251\"");
    }
}
