//! Byte-level BPE tokenizer (GPT-2 family) built from GGUF metadata, and the chat
//! template.
//!
//! Owns: the vocabulary and merges (`tokenizer.ggml.tokens`, `merges`, `token_type`),
//! special tokens matched as whole tokens, encoding of text and of arbitrary bytes,
//! lossless decoding, and the model's chat template ([`chat`]: its Jinja source from
//! `tokenizer.chat_template`, ChatML without one). Does not own: prompts or what a
//! conversation says (`ssr-agent`).
//!
//! Byte-level: every byte maps to one printable character (GPT-2's `bytes_to_unicode`),
//! so every byte sequence has an encoding and decoding is lossless, invalid UTF-8
//! included ([`Tokenizer::encode_bytes`], [`Tokenizer::decode`]).

pub mod chat;
pub mod pretokenize;

use crate::gguf::{GgufError, GgufFile};
use pretokenize::PreTokenizer;
use std::collections::{BinaryHeap, HashMap};

pub use chat::{ChatOptions, ChatPiece, ChatTemplate, Message, Role, TemplateError, ToolTurns};

/// Why a tokenizer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model {0:?} is not supported (only byte-level BPE, \"gpt2\")")]
    UnsupportedModel(String),
    #[error("pre-tokenizer {0:?} is not supported (smollm, starcoder, gpt2)")]
    UnsupportedPreTokenizer(String),
    #[error("merge #{index} {merge:?} is malformed or names a token not in the vocabulary")]
    BadMerge { index: usize, merge: String },
    #[error(
        "only {found} of the 256 byte tokens are in the vocabulary: not a byte-level vocabulary"
    )]
    NotByteLevel { found: usize },
    #[error("token list has {tokens} entries but token types have {types}")]
    TypeCountMismatch { tokens: usize, types: usize },
    #[error("special token id {id} is outside the vocabulary of {vocab}")]
    BadSpecialId { id: u64, vocab: usize },
}

/// GGUF `token_type` values (llama.cpp `llama_token_type`).
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// A byte-level BPE tokenizer.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    /// Token strings as the vocabulary spells them (byte-level characters).
    tokens: Vec<String>,
    /// What each token decodes to.
    token_bytes: Vec<Vec<u8>>,
    /// Id of each single byte; `None` for bytes the vocabulary lacks (SmolLM2 lacks 21:
    /// six control characters and bytes that never or rarely occur in UTF-8, such as
    /// 0xC0, 0xC1, 0xF5..=0xFF). Encoding drops those bytes, as HF `tokenizers` and
    /// llama.cpp do; decoding stays lossless for every id sequence.
    byte_ids: [Option<u32>; 256],
    /// `(left, right)` → `(rank, merged)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Special tokens, longest first (so a prefix never shadows a longer token).
    specials: Vec<(String, u32)>,
    is_special: Vec<bool>,
    pre: PreTokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: u32,
    /// The Jinja chat template from the file, shown by `ssr model info`.
    pub chat_template: Option<String>,
    /// What conversations are rendered with: the file's template, compiled, or ChatML
    /// when the file has none or it does not parse (`template_error` says why).
    template: ChatTemplate,
    /// Why the file's template is not used, when it is not.
    pub template_error: Option<String>,
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    map
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, TokenizerError> {
        let model = f.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let pre_name = f
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let pre = PreTokenizer::from_gguf_name(pre_name)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre_name.into()))?;
        let strings = |key: &str| -> Result<Vec<String>, GgufError> {
            f.get_array(key)?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| GgufError::WrongKeyType {
                            key: key.into(),
                            expected: "an array of strings",
                        })
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match f.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_i64().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let id = |key: &str| -> Result<Option<u64>, GgufError> {
            f.get(key).map(|_| f.get_u64(key)).transpose()
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?.unwrap_or(0);
        let mut t = Self::from_parts(tokens, &types, &merges, pre, bos, eos)?;
        if let Some(source) = f.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
            t.set_chat_template(source);
        }
        Ok(t)
    }

    /// Renders conversations with the Jinja template `source`, cut at this
    /// vocabulary's special tokens. A template that does not parse leaves ChatML in
    /// place, with the reason in `template_error` (a model stays usable; `ssr model
    /// info` shows it).
    pub fn set_chat_template(&mut self, source: &str) {
        self.chat_template = Some(source.to_string());
        let name = |id: Option<u32>| {
            id.and_then(|i| self.token_str(i))
                .unwrap_or_default()
                .to_string()
        };
        let controls = self.specials.iter().map(|(s, _)| s.clone()).collect();
        match ChatTemplate::new(
            source,
            controls,
            &name(self.bos_id),
            &name(Some(self.eos_id)),
        ) {
            Ok(t) => {
                self.template = t;
                self.template_error = None;
            }
            Err(e) => self.template_error = Some(e.to_string()),
        }
    }

    /// The template conversations are rendered with.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Builds a tokenizer from its parts (`merges` as `"left right"` strings).
    pub fn from_parts(
        tokens: Vec<String>,
        token_types: &[i64],
        merges: &[String],
        pre: PreTokenizer,
        bos_id: Option<u64>,
        eos_id: u64,
    ) -> Result<Self, TokenizerError> {
        if token_types.len() != tokens.len() {
            return Err(TokenizerError::TypeCountMismatch {
                tokens: tokens.len(),
                types: token_types.len(),
            });
        }
        let vocab = tokens.len();
        for id in bos_id.iter().chain([&eos_id]) {
            if *id as usize >= vocab {
                return Err(TokenizerError::BadSpecialId { id: *id, vocab });
            }
        }
        let b2u = bytes_to_unicode();
        let mut u2b = HashMap::with_capacity(256);
        for (b, c) in b2u.iter().enumerate() {
            u2b.insert(*c, b as u8);
        }
        let is_special: Vec<bool> = token_types
            .iter()
            .map(|&t| t == TYPE_CONTROL || t == TYPE_USER_DEFINED)
            .collect();
        let ids: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let mut byte_ids = [None; 256];
        for (b, c) in b2u.iter().enumerate() {
            byte_ids[b] = ids.get(&*c.encode_utf8(&mut [0u8; 4])).copied();
        }
        // Printable ASCII must all be there, or this is not a byte-level BPE vocabulary.
        let found = byte_ids.iter().filter(|b| b.is_some()).count();
        if byte_ids[0x21..0x7f].iter().any(Option::is_none) {
            return Err(TokenizerError::NotByteLevel { found });
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (index, m) in merges.iter().enumerate() {
            let bad = || TokenizerError::BadMerge {
                index,
                merge: m.clone(),
            };
            let (l, r) = m.split_once(' ').ok_or_else(bad)?;
            let (li, ri) = (ids.get(l).ok_or_else(bad)?, ids.get(r).ok_or_else(bad)?);
            let merged = ids.get(format!("{l}{r}").as_str()).ok_or_else(bad)?;
            merge_map
                .entry((*li, *ri))
                .or_insert((index as u32, *merged));
        }
        let token_bytes = tokens
            .iter()
            .zip(&is_special)
            .map(|(s, &special)| {
                if special {
                    s.as_bytes().to_vec()
                } else {
                    // A character outside the byte map (malformed vocab) decodes as its UTF-8.
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        match u2b.get(&c) {
                            Some(b) => out.push(*b),
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    out
                }
            })
            .collect();
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, s)| is_special[*i] && !s.is_empty())
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(Tokenizer {
            tokens,
            token_bytes,
            byte_ids,
            merges: merge_map,
            specials,
            is_special,
            pre,
            bos_id: bos_id.map(|x| x as u32),
            eos_id: eos_id as u32,
            chat_template: None,
            template: ChatTemplate::chatml(),
            template_error: None,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary spelling of a token.
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token spelled exactly `s` in the vocabulary.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == s).map(|i| i as u32)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text, turning special-token strings (`<|im_start|>`, ...) into their ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // Earliest special occurrence; ties go to the longest (specials are sorted so).
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match hit {
                Some((at, len, id)) => {
                    self.encode_ordinary_into(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_ordinary_into(rest, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// Encodes text as plain text: special-token strings get no special meaning. Use it
    /// for content the model did not write control over (tool output, files).
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_ordinary_into(text, &mut out);
        out
    }

    /// Encodes any bytes: valid UTF-8 runs as [`Tokenizer::encode_ordinary`], each
    /// invalid byte as its byte token. `decode(encode_bytes(b)) == b` for every `b`
    /// made of bytes the vocabulary has ([`Tokenizer::has_byte`]); others are dropped.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        for chunk in bytes.utf8_chunks() {
            self.encode_ordinary_into(chunk.valid(), &mut out);
            out.extend(
                chunk
                    .invalid()
                    .iter()
                    .filter_map(|b| self.byte_ids[*b as usize]),
            );
        }
        out
    }

    /// Whether byte `b` has a token (else encoding drops it).
    pub fn has_byte(&self, b: u8) -> bool {
        self.byte_ids[b as usize].is_some()
    }

    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) {
        for word in self.pre.split(text) {
            self.bpe(word.as_bytes(), out);
        }
    }

    /// Merges the bytes of one word, lowest merge rank first (a heap over adjacent
    /// pairs with a linked list of symbols: O(n log n) even for long runs).
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = word
            .iter()
            .filter_map(|b| self.byte_ids[*b as usize])
            .collect();
        let n = ids.len();
        if n <= 1 {
            out.extend(ids);
            return;
        }
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        // Min-heap on (rank, position) via Reverse.
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, ids: &[u32], i: usize, j: usize| {
            if let Some(&(rank, merged)) = self.merges.get(&(ids[i], ids[j])) {
                heap.push(std::cmp::Reverse((rank, i, j, ids[i], ids[j], merged)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, &ids, i, i + 1);
        }
        while let Some(std::cmp::Reverse((_, i, j, li, ri, merged))) = heap.pop() {
            // Stale entry: one side was merged away or changed since it was pushed.
            if !alive[i] || !alive[j] || next[i] != j || ids[i] != li || ids[j] != ri {
                continue;
            }
            ids[i] = merged;
            alive[j] = false;
            next[i] = next[j];
            if next[j] < n {
                prev[next[j]] = i;
            }
            if prev[i] < n {
                push(&mut heap, &ids, prev[i], i);
            }
            if next[i] < n {
                push(&mut heap, &ids, i, next[i]);
            }
        }
        let mut i = 0;
        while i < n {
            out.push(ids[i]);
            i = next[i];
        }
    }

    /// The bytes the ids stand for (special tokens as their text). Lossless: the
    /// inverse of [`Tokenizer::encode_bytes`]. Unknown ids decode to nothing.
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if let Some(b) = self.token_bytes.get(id as usize) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// [`Tokenizer::decode`] as text, with invalid UTF-8 replaced by U+FFFD.
    pub fn decode_lossy(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode(ids)).into_owned()
    }

    /// The bytes of one token.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// A byte-level tokenizer with no merges: the 256 byte tokens, then `specials`
    /// (ids 256..). Test models and the smallest valid vocabulary.
    pub fn bytes_only(specials: &[&str]) -> Self {
        let b2u = bytes_to_unicode();
        let mut tokens: Vec<String> = b2u.iter().map(|c| c.to_string()).collect();
        let mut types = vec![1i64; 256];
        for s in specials {
            tokens.push(s.to_string());
            types.push(TYPE_CONTROL);
        }
        let eos = if specials.is_empty() { 0 } else { 256 };
        Self::from_parts(tokens, &types, &[], PreTokenizer::SmolLm, None, eos)
            .expect("byte vocabulary is complete")
    }
}
