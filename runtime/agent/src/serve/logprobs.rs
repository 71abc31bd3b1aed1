//! The `logprobs` of the server's answers, in both OpenAI shapes: completions (a map of
//! the most likely tokens per position) and chat (a list per token), from the
//! engine's sampled log-probabilities and its per-step top-k
//! (`Generation::top_logprobs`).
//!
//! Owns: the two shapes and the bound on alternatives asked for. Does not own: the
//! distribution (the trainer's sampler) or the rest of the wire format (`serve`).

use super::error;
use crate::chat::TextCodec;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use ssr_trainer::infer::Generation as EngineGeneration;

/// The most alternatives per position a request may ask for (vLLM's default cap;
/// OpenAI's is lower).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// `top_logprobs` asked for, checked: at most [`MAX_TOP_LOGPROBS`].
pub(super) fn top_count(n: u32, param: &str) -> Result<usize, Box<Response>> {
    if n > MAX_TOP_LOGPROBS {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{param} must be at most {MAX_TOP_LOGPROBS}, got {n}"),
        )));
    }
    Ok(n as usize)
}

/// The completions shape of `logprobs`: per sampled token its text (or
/// `token_id:N`), its log-probability, its offset in the text and, when asked, a map
/// of the most likely tokens to theirs (with the sampled token in it, as vLLM does).
pub(super) fn completion_logprobs(
    codec: &dyn TextCodec,
    g: &EngineGeneration,
    as_ids: bool,
    top: usize,
) -> Value {
    let name = |id: u32| {
        if as_ids {
            format!("token_id:{id}")
        } else {
            codec.decode(&[id])
        }
    };
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for id in &g.token_ids {
        offsets.push(offset);
        offset += codec.decode(&[*id]).len();
    }
    let tokens: Vec<String> = g.token_ids.iter().map(|&id| name(id)).collect();
    let top_logprobs = (top > 0).then(|| {
        g.token_ids
            .iter()
            .zip(&g.logprobs)
            .enumerate()
            .map(|(i, (&id, &lp))| {
                // A completer that gives no alternatives still names the sampled token.
                let alts = g.top_logprobs.get(i).map_or(&[][..], Vec::as_slice);
                let mut m = serde_json::Map::new();
                for &(alt, alp) in alts.iter().take(top) {
                    m.entry(name(alt)).or_insert(json!(alp));
                }
                m.entry(name(id)).or_insert(json!(lp));
                Value::Object(m)
            })
            .collect::<Vec<_>>()
    });
    json!({"tokens": tokens, "token_logprobs": g.logprobs, "top_logprobs": top_logprobs, "text_offset": offsets})
}

/// The chat shape of `logprobs`: per sampled token its text, bytes, log-probability
/// and its `top` most likely alternatives (each with text, bytes and log-probability).
pub(super) fn chat_logprobs(codec: &dyn TextCodec, g: &EngineGeneration, top: usize) -> Value {
    let entry = |id: u32, lp: f32| {
        let piece = codec.decode(&[id]);
        json!({"token": piece, "logprob": lp, "bytes": piece.as_bytes()})
    };
    let content: Vec<Value> = g
        .token_ids
        .iter()
        .zip(&g.logprobs)
        .enumerate()
        .map(|(i, (&id, &lp))| {
            let alts: Vec<Value> = g
                .top_logprobs
                .get(i)
                .map(|a| a.iter().take(top).map(|&(t, l)| entry(t, l)).collect())
                .unwrap_or_default();
            let mut e = entry(id, lp);
            e["top_logprobs"] = json!(alts);
            e
        })
        .collect();
    json!({"content": content})
}
