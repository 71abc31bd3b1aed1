//! Pre-tokenization: splitting text into the words BPE merges within.
//!
//! Owns the GPT-2 byte-level split (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
//! ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`) and SmolLM's rule of isolating every digit
//! first (HF `Digits(individual_digits=true)`, llama.cpp pre-tokenizer `smollm`).
//!
//! The `regex` crate has no look-ahead, so `\s+(?!\S)` is emulated: a whitespace
//! run followed by a non-space character gives back its last character, which then
//! starts the next word (`"  x"` → `" "`, `" x"`). This reproduces the GPT-2 regex
//! exactly: with a run of length L before a non-space, the original matches L-1 chars
//! by the look-ahead branch and the last char joins the next word (or stands alone
//! via the final `\s+` branch when it is not a plain space).

use regex::Regex;
use std::sync::LazyLock;

static GPT2: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+")
        .expect("valid pattern")
});

/// How words are split before BPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex only.
    Gpt2,
    /// Every numeric character alone, then GPT-2's regex (SmolLM, StarCoder).
    SmolLm,
}

impl PreTokenizer {
    /// Maps `tokenizer.ggml.pre`.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "smollm" | "starcoder" | "refact" | "codeshell" => Some(Self::SmolLm),
            "gpt2" | "default" => Some(Self::Gpt2),
            _ => None,
        }
    }

    /// Splits `text` into words (slices of `text`, in order, covering it exactly).
    pub fn split(self, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        match self {
            Self::Gpt2 => gpt2_split(text, &mut out),
            Self::SmolLm => {
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        gpt2_split(&text[start..i], &mut out);
                        out.push(&text[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                gpt2_split(&text[start..], &mut out);
            }
        }
        out
    }
}

fn gpt2_split<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let mut pos = 0;
    while pos < text.len() {
        let m = GPT2
            .find_at(text, pos)
            .expect("the last branch matches any whitespace; others cover the rest");
        debug_assert_eq!(m.start(), pos, "the pattern covers every character");
        let mut end = m.end();
        let word = m.as_str();
        if word.chars().all(char::is_whitespace) && end < text.len() {
            // Followed by a non-space (a longer run would have matched): give the
            // last whitespace character back when the run has more than one.
            let last = word.chars().next_back().expect("non-empty match");
            if word.len() > last.len_utf8() {
                end -= last.len_utf8();
            }
        }
        out.push(&text[pos..end]);
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pre: PreTokenizer, text: &str, want: &[&str]) {
        assert_eq!(pre.split(text), want, "splitting {text:?}");
    }

    #[test]
    fn gpt2_rules() {
        let p = PreTokenizer::Gpt2;
        check(p, "Hello world", &["Hello", " world"]);
        check(p, "it's  a\n\nb", &["it", "'s", " ", " a", "\n", "\n", "b"]);
        check(p, "x   ", &["x", "   "]);
        check(p, "a\n b", &["a", "\n", " b"]);
        check(p, "fn(x) {}", &["fn", "(", "x", ")", " {}"]);
        check(p, "café 123", &["café", " 123"]);
    }

    #[test]
    fn smollm_isolates_digits() {
        let p = PreTokenizer::SmolLm;
        check(p, "x = 123;", &["x", " =", " ", "1", "2", "3", ";"]);
        check(p, "v2", &["v", "2"]);
    }
}
