//! Git's binary patch format: `literal`/`delta` hunks, zlib-deflated and base85-encoded.
//!
//! Owns: decoding and encoding one binary hunk, and applying it to a preimage (a literal
//! replaces the content, a delta is git's copy/insert instruction stream). Does not own:
//! deciding when a file is binary (`make`) or checking preimage hashes (`apply`).

use std::fmt;
use std::io::Write as _;

use super::ParseFailure;

const BASE85: &[u8; 85] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

/// Whether a binary hunk holds the whole new content or a delta against the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryHunkKind {
    /// `literal N`: the data is the complete result.
    Literal,
    /// `delta N`: the data is a git delta (copy/insert instructions) against the preimage.
    Delta,
}

/// One `literal`/`delta` hunk of a `GIT binary patch`, with its data already inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHunk {
    /// Literal or delta.
    pub kind: BinaryHunkKind,
    /// The inflated data (the new content for a literal, the instruction stream for a delta).
    pub data: Vec<u8>,
}

impl BinaryHunk {
    /// A literal hunk holding `content`.
    pub fn literal(content: &[u8]) -> BinaryHunk {
        BinaryHunk {
            kind: BinaryHunkKind::Literal,
            data: content.to_vec(),
        }
    }

    /// Parses a hunk starting at `lines[start]` (`literal N` or `delta N`), through the
    /// empty line that ends it. Errors carry the 0-based line index.
    pub(crate) fn parse(
        lines: &[&str],
        start: usize,
    ) -> Result<(BinaryHunk, usize), (usize, ParseFailure)> {
        let bad = |at: usize, m: &str| (at, ParseFailure::BadBinary(m.to_owned()));
        let head = lines
            .get(start)
            .map(|l| l.trim_end_matches('\r'))
            .ok_or_else(|| bad(start, "missing literal/delta line"))?;
        let (kind, size) = if let Some(n) = head.strip_prefix("literal ") {
            (BinaryHunkKind::Literal, n)
        } else if let Some(n) = head.strip_prefix("delta ") {
            (BinaryHunkKind::Delta, n)
        } else {
            return Err(bad(start, "expected `literal N` or `delta N`"));
        };
        let size: usize = size.trim().parse().map_err(|_| bad(start, "bad size"))?;
        let mut compressed = Vec::new();
        let mut i = start + 1;
        loop {
            let Some(line) = lines.get(i).map(|l| l.trim_end_matches('\r')) else {
                return Err(bad(i, "binary hunk not terminated by an empty line"));
            };
            i += 1;
            if line.is_empty() {
                break;
            }
            decode_line(line, &mut compressed).map_err(|m| bad(i - 1, m))?;
        }
        let data = inflate(&compressed, size).map_err(|m| bad(start, m))?;
        Ok((BinaryHunk { kind, data }, i))
    }

    /// Applies the hunk to `preimage`, giving the new content.
    pub fn apply(&self, preimage: &[u8]) -> Result<Vec<u8>, String> {
        match self.kind {
            BinaryHunkKind::Literal => Ok(self.data.clone()),
            BinaryHunkKind::Delta => apply_delta(preimage, &self.data),
        }
    }
}

impl fmt::Display for BinaryHunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.kind {
            BinaryHunkKind::Literal => "literal",
            BinaryHunkKind::Delta => "delta",
        };
        writeln!(f, "{word} {}", self.data.len())?;
        let mut enc =
            gix::zlib::stream::deflate::Write::new(Vec::new(), gix::zlib::Compression::BEST);
        // Writing into a Vec cannot fail.
        enc.write_all(&self.data).map_err(|_| fmt::Error)?;
        enc.flush().map_err(|_| fmt::Error)?;
        let compressed = enc.into_inner();
        for chunk in compressed.chunks(52) {
            let len_char = if chunk.len() <= 26 {
                b'A' + chunk.len() as u8 - 1
            } else {
                b'a' + chunk.len() as u8 - 27
            };
            let mut line = String::with_capacity(1 + chunk.len().div_ceil(4) * 5);
            line.push(len_char as char);
            for group in chunk.chunks(4) {
                let mut acc: u32 = 0;
                for k in 0..4 {
                    acc = (acc << 8) | u32::from(group.get(k).copied().unwrap_or(0));
                }
                let mut digits = [0u8; 5];
                for d in digits.iter_mut().rev() {
                    *d = BASE85[(acc % 85) as usize];
                    acc /= 85;
                }
                line.push_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?);
            }
            writeln!(f, "{line}")?;
        }
        writeln!(f)
    }
}

fn decode_line(line: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = line.as_bytes();
    let len = match bytes[0] {
        c @ b'A'..=b'Z' => usize::from(c - b'A') + 1,
        c @ b'a'..=b'z' => usize::from(c - b'a') + 27,
        _ => return Err("bad line length character"),
    };
    let encoded = &bytes[1..];
    if encoded.len() != len.div_ceil(4) * 5 {
        return Err("line length does not match its data");
    }
    let mut decoded = Vec::with_capacity(encoded.len() / 5 * 4);
    for group in encoded.chunks(5) {
        let mut acc: u64 = 0;
        for &c in group {
            let v = BASE85
                .iter()
                .position(|&b| b == c)
                .ok_or("bad base85 character")?;
            acc = acc * 85 + v as u64;
        }
        if acc > u64::from(u32::MAX) {
            return Err("base85 group overflows");
        }
        decoded.extend_from_slice(&(acc as u32).to_be_bytes());
    }
    out.extend_from_slice(&decoded[..len]);
    Ok(())
}

fn inflate(compressed: &[u8], size: usize) -> Result<Vec<u8>, &'static str> {
    // One spare byte: a stream longer than announced is caught instead of truncated.
    let mut out = vec![0u8; size + 1];
    let mut inflater = gix::zlib::Inflate::default();
    let (status, _, written) = inflater
        .once(compressed, &mut out)
        .map_err(|_| "zlib data is corrupt")?;
    if status != gix::zlib::Status::StreamEnd || written != size {
        return Err("inflated size does not match the header");
    }
    out.truncate(size);
    Ok(out)
}

fn read_varint(data: &[u8], pos: &mut usize) -> Result<usize, String> {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let b = *data.get(*pos).ok_or("delta header truncated")?;
        *pos += 1;
        value |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        if shift > 56 {
            return Err("delta header too long".into());
        }
    }
}

/// Git's `patch_delta`: a source size, a result size, then copy and insert instructions.
fn apply_delta(src: &[u8], delta: &[u8]) -> Result<Vec<u8>, String> {
    let mut pos = 0;
    let src_size = read_varint(delta, &mut pos)?;
    if src_size != src.len() {
        return Err(format!(
            "delta expects a {src_size}-byte preimage, file has {} bytes",
            src.len()
        ));
    }
    let dst_size = read_varint(delta, &mut pos)?;
    let mut out = Vec::with_capacity(dst_size);
    while pos < delta.len() {
        let cmd = delta[pos];
        pos += 1;
        if cmd & 0x80 != 0 {
            let mut offset = 0usize;
            let mut size = 0usize;
            for (bit, shift) in [(0x01, 0), (0x02, 8), (0x04, 16), (0x08, 24)] {
                if cmd & bit != 0 {
                    offset |= usize::from(*delta.get(pos).ok_or("delta truncated")?) << shift;
                    pos += 1;
                }
            }
            for (bit, shift) in [(0x10, 0), (0x20, 8), (0x40, 16)] {
                if cmd & bit != 0 {
                    size |= usize::from(*delta.get(pos).ok_or("delta truncated")?) << shift;
                    pos += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let piece = offset
                .checked_add(size)
                .and_then(|end| src.get(offset..end))
                .ok_or("delta copies outside the preimage")?;
            out.extend_from_slice(piece);
        } else if cmd != 0 {
            let n = usize::from(cmd);
            let piece = delta.get(pos..pos + n).ok_or("delta truncated")?;
            out.extend_from_slice(piece);
            pos += n;
        } else {
            return Err("delta has a zero opcode".into());
        }
        if out.len() > dst_size {
            return Err("delta result longer than announced".into());
        }
    }
    if out.len() != dst_size {
        return Err("delta result shorter than announced".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_round_trips_through_text() {
        for data in [
            Vec::new(),
            vec![0u8, 1, 2, 255],
            (0..=255u8).cycle().take(1000).collect(),
        ] {
            let hunk = BinaryHunk::literal(&data);
            let text = hunk.to_string();
            let lines: Vec<&str> = text.split('\n').collect();
            let (back, next) = BinaryHunk::parse(&lines, 0).unwrap();
            assert_eq!(back, hunk);
            assert_eq!(lines[next], "");
        }
    }

    #[test]
    fn delta_copies_and_inserts() {
        // src "hello world" (11), dst "world hello!" (12): copy 6..11, insert " ", copy 0..5, insert "!"
        let delta = [11u8, 12, 0x91, 6, 5, 1, b' ', 0x90, 5, 1, b'!'];
        assert_eq!(
            apply_delta(b"hello world", &delta).unwrap(),
            b"world hello!"
        );
        assert!(apply_delta(b"hello", &delta).is_err());
    }
}
