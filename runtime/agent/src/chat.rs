//! Chat messages, the ChatML template that turns them into model text, and the
//! [`TextCodec`] seam through which the agent reaches a tokenizer.
//!
//! Owns: how a conversation is rendered to text (the same rendering for the embedded
//! engine, the `openai` completions client and the server), and where each assistant
//! message begins and ends. Does not own: tokenization itself (the trainer's tokenizer
//! implements [`TextCodec`]).

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// Text to token ids and back. The trainer's tokenizer implements it; the agent uses it
/// to keep the exact token sequence of a conversation.
pub trait TextCodec: Send + Sync {
    /// Encodes content as plain text: special-token strings inside it (from a file or
    /// a tool's output) get no control meaning.
    fn encode_text(&self, text: &str) -> Vec<u32>;
    /// The id of a control token of the template (`<|im_start|>`, `<|im_end|>`), or its
    /// plain-text encoding when the vocabulary lacks it.
    fn encode_control(&self, control: &str) -> Vec<u32>;
    /// Decodes ids, rendering special tokens as their text.
    fn decode(&self, ids: &[u32]) -> String;
    /// The id that ends an assistant message (`<|im_end|>` for ChatML models).
    fn end_of_message(&self) -> Option<u32>;
}

/// A piece of rendered template text: control tokens are encoded as specials, content
/// as plain text (so content can never forge a turn boundary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Control(&'static str),
    Text(String),
}

/// Encodes pieces and returns (text, ids).
pub fn encode_pieces(codec: Option<&dyn TextCodec>, pieces: &[Piece]) -> (String, Vec<u32>) {
    let mut text = String::new();
    let mut ids = Vec::new();
    for p in pieces {
        match p {
            Piece::Control(c) => {
                text.push_str(c);
                if let Some(codec) = codec {
                    ids.extend(codec.encode_control(c));
                }
            }
            Piece::Text(t) => {
                text.push_str(t);
                if let Some(codec) = codec {
                    ids.extend(codec.encode_text(t));
                }
            }
        }
    }
    (text, ids)
}

/// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`), the template of
/// SmolLM2-Instruct and of most open chat models served by vLLM and llama.cpp.
///
/// Why our own rendering rather than the server's: token ids and logprobs used for
/// training must be those of the exact text the model saw, so the client renders and
/// sends a completion prompt instead of trusting a server-side template.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatMl;

impl ChatMl {
    pub const START: &'static str = "<|im_start|>";
    pub const END: &'static str = "<|im_end|>";

    /// The pieces of one whole message.
    pub fn message(&self, m: &Message) -> Vec<Piece> {
        vec![
            Piece::Control(Self::START),
            Piece::Text(format!("{}\n{}", m.role.as_str(), m.content)),
            Piece::Control(Self::END),
            Piece::Text("\n".into()),
        ]
    }

    /// The pieces that open an assistant turn (the generation prompt).
    pub fn assistant_open(&self) -> Vec<Piece> {
        vec![
            Piece::Control(Self::START),
            Piece::Text("assistant\n".into()),
        ]
    }

    /// The pieces that close an assistant turn; a generation that already ended with
    /// [`ChatMl::END`] only needs the newline.
    pub fn assistant_close(&self, ended_with_end_token: bool) -> Vec<Piece> {
        if ended_with_end_token {
            vec![Piece::Text("\n".into())]
        } else {
            vec![Piece::Control(Self::END), Piece::Text("\n".into())]
        }
    }

    /// The pieces of a conversation, optionally followed by the generation prompt.
    pub fn pieces(&self, messages: &[Message], add_generation_prompt: bool) -> Vec<Piece> {
        let mut out: Vec<Piece> = messages.iter().flat_map(|m| self.message(m)).collect();
        if add_generation_prompt {
            out.extend(self.assistant_open());
        }
        out
    }

    /// A whole conversation as text.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        encode_pieces(None, &self.pieces(messages, add_generation_prompt)).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml() {
        let t = ChatMl;
        let msgs = [
            Message::new(Role::System, "sys"),
            Message::new(Role::User, "hi"),
        ];
        assert_eq!(
            t.render(&msgs, true),
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
