//! `{n:6}\t{line}` numbering of a file's lines: what `editor view` returns, in one pass.
//!
//! Does not own line splitting's definition: it matches [`crate::lines`] exactly.

use crate::next_newline;

/// Lines `first..=last` of `text` (1-based; `last` `None`: to the end), each as
/// `{n:6}\t{line}\n`, split exactly as [`lines`] splits them. What `editor view` returns.
///
/// Why not a loop over [`lines`] pushing each piece: that was most of viewing a file
/// (a newline search, a number formatted with divisions, and a `memory.copy` per line,
/// which wasmtime runs as a call out of the guest). This is one pass over the text a
/// vector at a time (16 bytes with wasm SIMD, 8 elsewhere): each vector is stored into
/// the output as it is searched for a newline, and the line number is a decimal counter
/// incremented in place.
pub fn number_lines(text: &str, first: usize, last: Option<usize>) -> String {
    let (out, _) = number_bytes(text.as_bytes(), first, last);
    // SAFETY: the text was UTF-8 and was cut only before ASCII newlines and `\r`s, with
    // ASCII added.
    unsafe { String::from_utf8_unchecked(out) }
}

/// [`number_lines`] of a whole file read as bytes, checking in the same pass that they
/// are text: `Err` gives the bytes back when they are not UTF-8. Saves the separate
/// pass of [`into_text`] over the file.
pub fn number_all_lines(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    let (out, ascii) = number_bytes(&bytes, 1, None);
    if !ascii && std::str::from_utf8(&bytes).is_err() {
        return Err(bytes);
    }
    // SAFETY: the bytes are UTF-8 (ASCII, or checked above), cut only before ASCII
    // newlines and `\r`s, with ASCII added.
    Ok(unsafe { String::from_utf8_unchecked(out) })
}

/// The vector step of [`number_bytes`] with wasm SIMD: copies 16 bytes, folds them into
/// the non-ASCII accumulator, and says where the first newline among them is.
#[cfg(target_arch = "wasm32")]
mod wide {
    use core::arch::wasm32::{
        u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_load, v128_or, v128_store,
    };

    pub const WIDTH: usize = 16;
    pub type Acc = v128;

    #[inline(always)]
    pub fn zero() -> Acc {
        u8x16_splat(0)
    }

    /// # Safety
    /// `src` readable and `dst` writable for 16 bytes.
    #[inline(always)]
    pub unsafe fn step(src: *const u8, dst: *mut u8, acc: &mut Acc) -> Option<usize> {
        // SAFETY: the caller's; wasm loads and stores need no alignment.
        let v = unsafe { v128_load(src.cast::<v128>()) };
        unsafe { v128_store(dst.cast::<v128>(), v) };
        *acc = v128_or(*acc, v);
        let newlines = u8x16_bitmask(u8x16_eq(v, u8x16_splat(b'\n')));
        (newlines != 0).then(|| newlines.trailing_zeros() as usize)
    }

    #[inline(always)]
    pub fn any_high(acc: Acc) -> bool {
        u8x16_bitmask(acc) != 0
    }
}

/// The same step eight bytes at a time in a 64-bit word, for other targets (the tests).
#[cfg(not(target_arch = "wasm32"))]
mod wide {
    pub const WIDTH: usize = 8;
    pub type Acc = u64;

    #[inline(always)]
    pub fn zero() -> Acc {
        0
    }

    /// # Safety
    /// `src` readable and `dst` writable for 8 bytes.
    #[inline(always)]
    pub unsafe fn step(src: *const u8, dst: *mut u8, acc: &mut Acc) -> Option<usize> {
        // SAFETY: the caller's.
        let w = unsafe { src.cast::<u64>().read_unaligned() };
        unsafe { dst.cast::<u64>().write_unaligned(w) };
        *acc |= w;
        let x = u64::from_le(w) ^ 0x0a0a_0a0a_0a0a_0a0a;
        // A zero byte of `x` is a newline; the lowest flag is the first one (flags above
        // a true zero byte can be false, never below it).
        let found = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
        (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
    }

    #[inline(always)]
    pub fn any_high(acc: Acc) -> bool {
        acc & 0x8080_8080_8080_8080 != 0
    }
}

/// The numbered lines `first..=last` of `bytes`, and whether every byte scanned was
/// ASCII (all of them when `first` is 1 and `last` is `None`).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn number_bytes(bytes: &[u8], first: usize, last: Option<usize>) -> (Vec<u8>, bool) {
    use wide::WIDTH;
    let first = first.max(1);
    let mut at = 0;
    let mut n = 1;
    while n < first {
        match next_newline(bytes, at) {
            Some(nl) => {
                at = nl + 1;
                n += 1;
            }
            None => return (Vec::new(), true),
        }
    }
    let mut counter = LineCounter::new(n);
    // Room for the text plus a 7-byte prefix per 32 bytes of it; grown when the lines
    // are shorter. The copy stores whole vectors, so keep spare room past the end.
    let rest = bytes.len() - at;
    let mut out: Vec<u8> = Vec::with_capacity(rest + rest / 4 + 64);
    let mut len = 0usize;
    let mut acc = wide::zero();
    let mut tail_high = 0u8;
    let src = bytes.as_ptr();
    while at < bytes.len() && last.is_none_or(|l| n <= l) {
        if out.capacity() - len < 64 {
            // SAFETY: `len` bytes were written (all initialised).
            unsafe { out.set_len(len) };
            out.reserve(out.capacity().max(64));
        }
        len = counter.write(&mut out, len);
        let mut newline = false;
        loop {
            if out.capacity() - len < 2 * WIDTH {
                // SAFETY: as above.
                unsafe { out.set_len(len) };
                out.reserve(out.capacity().max(64));
            }
            if at + WIDTH <= bytes.len() {
                // SAFETY: `WIDTH` bytes are readable at `at` and at least `2 * WIDTH`
                // are free past `len`.
                let found = unsafe { wide::step(src.add(at), out.as_mut_ptr().add(len), &mut acc) };
                match found {
                    Some(k) => {
                        len += k;
                        at += k + 1;
                        newline = true;
                        break;
                    }
                    None => {
                        len += WIDTH;
                        at += WIDTH;
                    }
                }
            } else {
                // The last few bytes, one at a time.
                while at < bytes.len() {
                    let b = bytes[at];
                    at += 1;
                    tail_high |= b;
                    if b == b'\n' {
                        newline = true;
                        break;
                    }
                    // SAFETY: fewer than `WIDTH` bytes are written here; `2 * WIDTH` were free.
                    unsafe { out.as_mut_ptr().add(len).write(b) };
                    len += 1;
                }
                break;
            }
        }
        // `str::lines` drops a `\r` before a newline (not a lone one at the very end).
        // SAFETY: the byte at `len - 1` was written (the prefix at least).
        if newline && unsafe { *out.as_ptr().add(len - 1) } == b'\r' {
            len -= 1;
        }
        // SAFETY: room remains (at least `WIDTH` bytes free after the copy).
        unsafe { out.as_mut_ptr().add(len).write(b'\n') };
        len += 1;
        n += 1;
        counter.increment();
    }
    // SAFETY: every byte below `len` was written.
    unsafe { out.set_len(len) };
    let ascii = !wide::any_high(acc) && tail_high < 0x80;
    (out, ascii)
}

/// A line number kept as right-aligned ASCII digits, incremented in place.
struct LineCounter {
    digits: [u8; 24],
    /// Index of the first digit in `digits` (the number ends at index 23).
    start: usize,
}

impl LineCounter {
    fn new(mut n: usize) -> Self {
        let mut digits = [b' '; 24];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        LineCounter { digits, start }
    }

    fn increment(&mut self) {
        let mut i = self.digits.len() - 1;
        loop {
            match self.digits[i] {
                b'9' => {
                    self.digits[i] = b'0';
                    i -= 1;
                }
                b' ' => {
                    self.digits[i] = b'1';
                    self.start = i;
                    return;
                }
                d => {
                    self.digits[i] = d + 1;
                    return;
                }
            }
        }
    }

    /// Writes `{n:6}\t` at `len` (at least 32 bytes of capacity past it) and returns the
    /// new length.
    fn write(&self, out: &mut Vec<u8>, len: usize) -> usize {
        let from = self.start.min(self.digits.len() - 6);
        let width = self.digits.len() - from;
        if width == 6 {
            let d = &self.digits[18..];
            let word = [d[0], d[1], d[2], d[3], d[4], d[5], b'\t', 0];
            // SAFETY: the caller keeps 32 bytes of capacity past `len`.
            unsafe {
                out.as_mut_ptr()
                    .add(len)
                    .cast::<[u8; 8]>()
                    .write_unaligned(word)
            };
            return len + 7;
        }
        // SAFETY: as above; `width` is at most 20 (a 64-bit number's digits).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.digits[from..].as_ptr(),
                out.as_mut_ptr().add(len),
                width,
            );
            out.as_mut_ptr().add(len + width).write(b'\t');
        }
        len + width + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `number_lines` must produce: the obvious loop over `str::lines`.
    fn number_lines_naive(text: &str, first: usize, last: Option<usize>) -> String {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(n, _)| *n >= first && last.is_none_or(|l| *n <= l))
            .map(|(n, l)| format!("{n:6}\t{l}\n"))
            .collect()
    }

    #[test]
    fn number_lines_matches_the_obvious_loop() {
        let long: String = (0..2_000)
            .map(|i| format!("line {i} with some text é ✓\r\n{}", "x".repeat(i % 37)))
            .collect();
        let cases = [
            "",
            "a",
            "a\n",
            "\n\n\n",
            "one\ntwo\nthree",
            "crlf\r\nlone cr at end\r",
            "\r\n\r",
            "exactly8\nexactly8\n",
            "1234567\n12345678\n123456789\n",
            "multi ✓ byte ✓ text\nnext ✓\n",
            long.as_str(),
        ];
        for text in cases {
            for (first, last) in [
                (1, None),
                (2, None),
                (1, Some(1)),
                (3, Some(5)),
                (1000, None),
            ] {
                assert_eq!(
                    number_lines(text, first, last),
                    number_lines_naive(text, first, last),
                    "{text:?} {first} {last:?}"
                );
            }
        }
    }

    #[test]
    fn number_all_lines_checks_utf8_in_the_same_pass() {
        let text = "one ✓\r\ntwo\nthree";
        assert_eq!(
            number_all_lines(text.as_bytes().to_vec()).unwrap(),
            number_lines_naive(text, 1, None)
        );
        let ascii = "a\nb\n".repeat(50);
        assert_eq!(
            number_all_lines(ascii.as_bytes().to_vec()).unwrap(),
            number_lines_naive(&ascii, 1, None)
        );
        // Invalid UTF-8 inside a vector, and in the tail.
        let mut bad = "x".repeat(40).into_bytes();
        bad[20] = 0xff;
        assert!(number_all_lines(bad).is_err());
        let mut bad_tail = "y\n".repeat(20).into_bytes();
        bad_tail.push(0xc3);
        assert!(number_all_lines(bad_tail).is_err());
    }

    #[test]
    fn line_numbers_widen_past_six_digits() {
        let mut c = LineCounter::new(999_998);
        let mut out = Vec::with_capacity(64);
        let mut len = c.write(&mut out, 0);
        c.increment();
        len = c.write(&mut out, len);
        c.increment();
        len = c.write(&mut out, len);
        unsafe { out.set_len(len) };
        assert_eq!(out, b"999998\t999999\t1000000\t");
    }
}
