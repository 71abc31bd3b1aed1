//! Parsing `git diff` and plain unified diff text into a [`Patch`].
//!
//! Owns: recognising file headers (`diff --git`, extended header lines, `---`/`+++`),
//! hunks (with counts, or with counts omitted meaning 1), `\ No newline at end of file`,
//! and `GIT binary patch` sections. Does not own: checking a patch against files (`apply`).
//!
//! Like `git apply`, text outside file patches (a commit message, a mail header) is skipped,
//! but a hunk that does not match its header counts, or a hunk outside a file, is an error:
//! a truncated or hand-damaged patch must not half-apply.

use super::binary::BinaryHunk;
use super::quote::unquote_prefix;
use super::{
    BinaryPatch, FileBody, FilePatch, Hunk, HunkLine, LineKind, ParseError, ParseFailure, Patch,
};

fn err(line_idx: usize, reason: ParseFailure) -> ParseError {
    ParseError {
        line: line_idx + 1,
        reason,
    }
}

pub(super) fn parse(text: &str) -> Result<Patch, ParseError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("diff --git ") {
            let (file, next) = parse_git_file(&lines, i)?;
            files.push(file);
            i = next;
        } else if line.starts_with("--- ")
            && lines.get(i + 1).is_some_and(|l| l.starts_with("+++ "))
        {
            let (file, next) = parse_plain_file(&lines, i)?;
            files.push(file);
            i = next;
        } else if line.starts_with("@@ ") {
            return Err(err(i, ParseFailure::HunkWithoutFile));
        } else {
            i += 1;
        }
    }
    Ok(Patch { files })
}

/// Strips git's one leading path component (`a/`, `b/`): `-p1`.
fn strip_component(path: &str) -> Option<String> {
    path.split_once('/')
        .map(|(_, rest)| rest.to_owned())
        .filter(|r| !r.is_empty())
}

/// A name from a `---`/`+++` line: `None` for `/dev/null`; timestamp after a tab dropped.
fn side_name(raw: &str, strip: bool) -> Result<Option<String>, ParseFailure> {
    let raw = raw.trim_end_matches('\r');
    let name = if raw.starts_with('"') {
        unquote_prefix(raw).ok_or(ParseFailure::MissingPath)?.0
    } else {
        raw.split('\t').next().unwrap_or("").trim_end().to_owned()
    };
    if name == "/dev/null" {
        return Ok(None);
    }
    if strip {
        return strip_component(&name)
            .map(Some)
            .ok_or(ParseFailure::MissingPath);
    }
    // Plain unified diffs: strip `a/`/`b/` when present, keep other names as written.
    let stripped = name
        .strip_prefix("a/")
        .or_else(|| name.strip_prefix("b/"))
        .unwrap_or(&name);
    if stripped.is_empty() {
        return Err(ParseFailure::MissingPath);
    }
    Ok(Some(stripped.to_owned()))
}

/// The two names of a `diff --git a/X b/Y` line (already stripped of `a/`, `b/`).
fn git_header_names(rest: &str) -> (Option<String>, Option<String>) {
    let rest = rest.trim_end_matches('\r');
    if rest.starts_with('"') {
        let Some((first, tail)) = unquote_prefix(rest) else {
            return (None, None);
        };
        let tail = tail.trim_start();
        let second = if tail.starts_with('"') {
            unquote_prefix(tail).map(|(s, _)| s)
        } else {
            Some(tail.to_owned())
        };
        return (
            strip_component(&first),
            second.as_deref().and_then(strip_component),
        );
    }
    if let Some(pos) = rest.find(" \"") {
        let second = unquote_prefix(&rest[pos + 1..]).map(|(s, _)| s);
        return (
            strip_component(&rest[..pos]),
            second.as_deref().and_then(strip_component),
        );
    }
    // Both bare: the usual case is the same name twice, which tells where to split even
    // when the name holds spaces.
    let bytes = rest.as_bytes();
    if bytes.len() % 2 == 1 {
        let mid = bytes.len() / 2;
        if bytes[mid] == b' ' {
            let (a, b) = (&rest[..mid], &rest[mid + 1..]);
            let (sa, sb) = (strip_component(a), strip_component(b));
            if sa.is_some() && sa == sb {
                return (sa, sb);
            }
        }
    }
    match rest.find(" b/") {
        Some(pos) => (
            strip_component(&rest[..pos]),
            strip_component(&rest[pos + 1..]),
        ),
        None => (None, None),
    }
}

fn parse_mode(line_idx: usize, text: &str) -> Result<u32, ParseError> {
    let text = text.trim();
    u32::from_str_radix(text, 8).map_err(|_| err(line_idx, ParseFailure::BadMode(text.to_owned())))
}

/// The extended header lines of a `diff --git` file patch (modes, creation, deletion,
/// renames, `index`), between the `diff --git` line and the body.
#[derive(Default)]
struct ExtendedHeader {
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    created: bool,
    deleted: bool,
    rename_from: Option<String>,
    rename_to: Option<String>,
    index: Option<(String, String)>,
    /// The mode on the `index` line (an unchanged mode).
    index_mode: Option<u32>,
}

/// Reads extended header lines from line `i`; returns them and the first other line.
fn parse_extended_header(
    lines: &[&str],
    mut i: usize,
) -> Result<(ExtendedHeader, usize), ParseError> {
    let mut h = ExtendedHeader::default();
    while i < lines.len() {
        let l = lines[i].trim_end_matches('\r');
        if let Some(m) = l.strip_prefix("old mode ") {
            h.old_mode = Some(parse_mode(i, m)?);
        } else if let Some(m) = l.strip_prefix("new mode ") {
            h.new_mode = Some(parse_mode(i, m)?);
        } else if let Some(m) = l.strip_prefix("deleted file mode ") {
            h.old_mode = Some(parse_mode(i, m)?);
            h.deleted = true;
        } else if let Some(m) = l.strip_prefix("new file mode ") {
            h.new_mode = Some(parse_mode(i, m)?);
            h.created = true;
        } else if let Some(p) = l
            .strip_prefix("rename from ")
            .or_else(|| l.strip_prefix("rename old "))
        {
            h.rename_from = Some(unquote_or_bare(p));
        } else if let Some(p) = l
            .strip_prefix("rename to ")
            .or_else(|| l.strip_prefix("rename new "))
        {
            h.rename_to = Some(unquote_or_bare(p));
        } else if l.starts_with("copy from ") || l.starts_with("copy to ") {
            return Err(err(i, ParseFailure::Unsupported("copy headers")));
        } else if l.starts_with("similarity index ") || l.starts_with("dissimilarity index ") {
            // Informational only.
        } else if let Some(rest) = l.strip_prefix("index ") {
            let mut parts = rest.split(' ');
            if let Some((a, b)) = parts.next().and_then(|ids| ids.split_once("..")) {
                h.index = Some((a.to_owned(), b.to_owned()));
            }
            if let Some(m) = parts.next() {
                h.index_mode = Some(parse_mode(i, m)?);
            }
        } else {
            break;
        }
        i += 1;
    }
    Ok((h, i))
}

/// The body of a file patch from line `i`: `---`/`+++` names (`Some(None)` is
/// `/dev/null`) and hunks, a `GIT binary patch`, a `Binary files … differ` line, or
/// nothing (a mode or rename change). Returns the names, the body and the next line.
#[allow(clippy::type_complexity)] // (minus, plus, body, next), used once by the caller.
fn parse_file_body(
    lines: &[&str],
    i: usize,
) -> Result<
    (
        Option<Option<String>>,
        Option<Option<String>>,
        FileBody,
        usize,
    ),
    ParseError,
> {
    let here = lines.get(i).map(|l| l.trim_end_matches('\r'));
    if let Some(l) = here
        && l.starts_with("--- ")
        && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "))
    {
        let minus = side_name(&l[4..], true).map_err(|r| err(i, r))?;
        let plus = side_name(&lines[i + 1][4..], true).map_err(|r| err(i + 1, r))?;
        let (hunks, next) = parse_hunks(lines, i + 2)?;
        Ok((Some(minus), Some(plus), FileBody::Text(hunks), next))
    } else if here == Some("GIT binary patch") {
        let (binary, next) = parse_binary(lines, i + 1)?;
        Ok((None, None, FileBody::Binary(binary), next))
    } else if here.is_some_and(|l| l.starts_with("Binary files ") && l.ends_with(" differ")) {
        Ok((None, None, FileBody::BinaryWithoutData, i + 1))
    } else {
        Ok((None, None, FileBody::Text(Vec::new()), i))
    }
}

fn parse_git_file(lines: &[&str], start: usize) -> Result<(FilePatch, usize), ParseError> {
    let (header_a, header_b) = git_header_names(&lines[start]["diff --git ".len()..]);
    let (h, i) = parse_extended_header(lines, start + 1)?;
    let (minus, plus, body, next) = parse_file_body(lines, i)?;
    // `---`/`+++` are authoritative about creation and deletion (`/dev/null`).
    let created = h.created || minus == Some(None);
    let deleted = h.deleted || plus == Some(None);
    let old_path = if created {
        None
    } else {
        h.rename_from
            .or(minus.flatten())
            .or(header_a.clone())
            .or(header_b.clone())
    };
    let new_path = if deleted {
        None
    } else {
        h.rename_to.or(plus.flatten()).or(header_b).or(header_a)
    };
    if old_path.is_none() && new_path.is_none() {
        return Err(err(start, ParseFailure::MissingPath));
    }
    let (mut old_mode, mut new_mode) = (h.old_mode, h.new_mode);
    if !created && !deleted && old_mode.is_none() && new_mode.is_none() {
        old_mode = h.index_mode;
        new_mode = h.index_mode;
    }
    Ok((
        FilePatch {
            old_path,
            new_path,
            old_mode,
            new_mode,
            index: h.index,
            body,
        },
        next,
    ))
}

fn unquote_or_bare(p: &str) -> String {
    let p = p.trim_end_matches('\r');
    if p.starts_with('"')
        && let Some((s, _)) = unquote_prefix(p)
    {
        return s;
    }
    p.to_owned()
}

fn parse_plain_file(lines: &[&str], start: usize) -> Result<(FilePatch, usize), ParseError> {
    let old = side_name(&lines[start][4..], false).map_err(|r| err(start, r))?;
    let new = side_name(&lines[start + 1][4..], false).map_err(|r| err(start + 1, r))?;
    // Plain diffs often name the old side `file.orig`: the file patched is the new name.
    let (old_path, new_path) = match (old, new) {
        (Some(_), Some(n)) => (Some(n.clone()), Some(n)),
        (o, n) => (o, n),
    };
    let (hunks, next) = parse_hunks(lines, start + 2)?;
    Ok((
        FilePatch {
            old_path,
            new_path,
            old_mode: None,
            new_mode: None,
            index: None,
            body: FileBody::Text(hunks),
        },
        next,
    ))
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_hunk_header(line: &str) -> Option<(u32, u32, u32, u32, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, rest) = rest.split_once(" @@")?;
    let (old_start, old_len) = parse_range(old)?;
    let (new_start, new_len) = parse_range(new)?;
    let section = rest
        .strip_prefix(' ')
        .unwrap_or(rest)
        .trim_end_matches('\r');
    Some((old_start, old_len, new_start, new_len, section.to_owned()))
}

fn parse_hunks(lines: &[&str], mut i: usize) -> Result<(Vec<Hunk>, usize), ParseError> {
    let mut hunks = Vec::new();
    while i < lines.len() && lines[i].starts_with("@@") {
        let (old_start, old_len, new_start, new_len, section) = parse_hunk_header(lines[i])
            .ok_or_else(|| err(i, ParseFailure::BadHunkHeader(lines[i].to_owned())))?;
        let header_idx = i;
        i += 1;
        let (mut old_rem, mut new_rem) = (old_len, new_len);
        let mut body: Vec<HunkLine> = Vec::new();
        while old_rem > 0 || new_rem > 0 {
            let Some(&l) = lines.get(i) else {
                return Err(err(
                    i.max(header_idx),
                    ParseFailure::TruncatedHunk {
                        missing_old: old_rem,
                        missing_new: new_rem,
                    },
                ));
            };
            let (kind, text) = match l.as_bytes().first() {
                // An empty line is an empty context line (GNU diff and mailers drop the space).
                None => (LineKind::Context, ""),
                Some(b' ') => (LineKind::Context, &l[1..]),
                Some(b'-') => (LineKind::Removed, &l[1..]),
                Some(b'+') => (LineKind::Added, &l[1..]),
                Some(b'\\') => {
                    if let Some(last) = body.last_mut() {
                        last.no_newline = true;
                    }
                    i += 1;
                    continue;
                }
                Some(_) => return Err(err(i, ParseFailure::UnexpectedHunkLine(l.to_owned()))),
            };
            let (takes_old, takes_new) = match kind {
                LineKind::Context => (true, true),
                LineKind::Removed => (true, false),
                LineKind::Added => (false, true),
            };
            if (takes_old && old_rem == 0) || (takes_new && new_rem == 0) {
                return Err(err(i, ParseFailure::UnexpectedHunkLine(l.to_owned())));
            }
            if takes_old {
                old_rem -= 1;
            }
            if takes_new {
                new_rem -= 1;
            }
            body.push(HunkLine {
                kind,
                text: text.to_owned(),
                no_newline: false,
            });
            i += 1;
        }
        if lines.get(i).is_some_and(|l| l.starts_with('\\')) {
            if let Some(last) = body.last_mut() {
                last.no_newline = true;
            }
            i += 1;
        }
        hunks.push(Hunk {
            old_start,
            old_len,
            new_start,
            new_len,
            section,
            lines: body,
        });
    }
    Ok((hunks, i))
}

fn parse_binary(lines: &[&str], start: usize) -> Result<(BinaryPatch, usize), ParseError> {
    let (forward, mut i) = BinaryHunk::parse(lines, start).map_err(|(at, m)| err(at, m))?;
    let mut reverse = None;
    if lines
        .get(i)
        .is_some_and(|l| l.starts_with("literal ") || l.starts_with("delta "))
    {
        let (r, next) = BinaryHunk::parse(lines, i).map_err(|(at, m)| err(at, m))?;
        reverse = Some(r);
        i = next;
    }
    Ok((BinaryPatch { forward, reverse }, i))
}
