//! Chat messages, the chat template that turns them into model text, and the
//! [`TextCodec`] seam through which the agent reaches a tokenizer.
//!
//! Owns: the agent's view of a conversation ([`Message`]) and of its rendering
//! ([`Template`]: the whole conversation, what a new message appends, how an
//! assistant turn closes), the same for the embedded engine, the `openai`
//! completions client and the server. Does not own: the renderer itself (the
//! trainer's [`ChatTemplate`]: the model's own Jinja template, ChatML without one)
//! or tokenization (the trainer's tokenizer implements [`TextCodec`]).

use serde::{Deserialize, Serialize};
use ssr_trainer::tokenizer::chat::{self as trainer_chat, ChatOptions};
pub use ssr_trainer::tokenizer::chat::{ChatPiece as Piece, ChatTemplate, TemplateError};

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
    /// The template conversations are rendered with: the model's own when the codec
    /// knows it, ChatML otherwise.
    fn template(&self) -> Template {
        Template::default()
    }
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

/// A conversation's template as the agent uses it (over its own [`Message`]s; tool
/// observations are user turns, as SmolLM2 was trained).
#[derive(Clone, Debug, Default)]
pub struct Template(ChatTemplate);

impl From<ChatTemplate> for Template {
    fn from(t: ChatTemplate) -> Self {
        Template(t)
    }
}

fn options(add_generation_prompt: bool) -> ChatOptions {
    ChatOptions {
        add_generation_prompt,
        ..ChatOptions::default()
    }
}

fn trainer_messages(messages: &[Message]) -> Vec<trainer_chat::Message> {
    messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => trainer_chat::Role::System,
                Role::User => trainer_chat::Role::User,
                Role::Assistant => trainer_chat::Role::Assistant,
            };
            trainer_chat::Message::new(role, m.content.clone())
        })
        .collect()
}

impl Template {
    /// The model's template underneath.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.0
    }

    /// The pieces of a conversation, optionally followed by the generation prompt.
    pub fn pieces(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<Piece>, TemplateError> {
        self.0
            .pieces(&trainer_messages(messages), &options(add_generation_prompt))
    }

    /// A whole conversation as text.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        Ok(encode_pieces(None, &self.pieces(messages, add_generation_prompt)?).0)
    }

    /// What `messages[..before]` (a closed conversation) appends when it grows to
    /// `messages`, with the generation prompt when asked: the agent appends these
    /// pieces' ids, never re-encoding what the model already read.
    pub fn extension(
        &self,
        messages: &[Message],
        before: usize,
        add_generation_prompt: bool,
    ) -> Result<Vec<Piece>, TemplateError> {
        self.0.extension(
            &trainer_messages(messages),
            before,
            &options(add_generation_prompt),
        )
    }

    /// The pieces that close the assistant turn that ends `messages` (its content as
    /// sampled after the generation prompt). `sampled_end`: the end-of-message string
    /// when the sampled ids already end with it, which the close then leaves out.
    pub fn assistant_close(
        &self,
        messages: &[Message],
        sampled_end: Option<&str>,
    ) -> Result<Vec<Piece>, TemplateError> {
        let n = messages.len();
        let not_incremental = || TemplateError::NotIncremental {
            before: n.saturating_sub(1),
            after: n,
        };
        let (last, before) = messages.split_last().ok_or_else(not_incremental)?;
        let opened = self.render(before, true)?;
        let full = self.pieces(messages, false)?;
        let full_text = encode_pieces(None, &full).0;
        let close_len = full_text
            .strip_prefix(&opened)
            .and_then(|rest| rest.strip_prefix(&last.content))
            .ok_or_else(not_incremental)?
            .len();
        let mut close = tail(&full, close_len);
        if let (Some(end), Some(Piece::Control(first))) = (sampled_end, close.first())
            && first == end
        {
            close.remove(0);
        }
        Ok(close)
    }
}

/// The last `len` bytes of the pieces' text, as pieces (a text piece cut if need be).
fn tail(pieces: &[Piece], mut len: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    for p in pieces.iter().rev() {
        if len == 0 {
            break;
        }
        let t = p.text();
        if t.len() <= len {
            len -= t.len();
            out.push(p.clone());
        } else {
            // Only text is cut: content (where the cut falls) is never a control.
            out.push(Piece::Text(t[t.len() - len..].to_string()));
            len = 0;
        }
    }
    out.reverse();
    out
}

/// ChatML (`<|im_start|>role\ncontent<|im_end|>\n`), the template of SmolLM2-Instruct
/// and of most open chat models served by vLLM and llama.cpp, and what a model with
/// no template of its own gets: the default [`Template`].
///
/// Why the client renders rather than the server: token ids and logprobs used for
/// training must be those of the exact text the model saw, so the client renders and
/// sends a completion prompt instead of trusting a server-side template.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatMl;

impl ChatMl {
    pub const START: &'static str = trainer_chat::IM_START;
    pub const END: &'static str = trainer_chat::IM_END;

    /// The pieces of a conversation, optionally followed by the generation prompt.
    pub fn pieces(&self, messages: &[Message], add_generation_prompt: bool) -> Vec<Piece> {
        // ChatML renders every conversation: it has no condition that can fail.
        Template::default()
            .pieces(messages, add_generation_prompt)
            .unwrap_or_default()
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

    #[test]
    fn an_assistant_turn_closes_with_what_the_template_writes_after_it() {
        let t = Template::default();
        let msgs = [
            Message::new(Role::System, "sys"),
            Message::new(Role::User, "hi"),
            Message::new(Role::Assistant, "<tool: submit>\n</tool>"),
        ];
        let c = |s: &str| Piece::Control(s.into());
        let x = |s: &str| Piece::Text(s.into());
        assert_eq!(
            t.assistant_close(&msgs, None).unwrap(),
            [c(ChatMl::END), x("\n")]
        );
        assert_eq!(
            t.assistant_close(&msgs, Some(ChatMl::END)).unwrap(),
            [x("\n")]
        );
        // What an observation appends after the close: its turn and the next prompt.
        let mut more = msgs.to_vec();
        more.push(Message::new(Role::User, "out"));
        assert_eq!(
            t.extension(&more, 3, true).unwrap(),
            [
                c(ChatMl::START),
                x("user\nout"),
                c(ChatMl::END),
                x("\n"),
                c(ChatMl::START),
                x("assistant\n")
            ]
        );
        // Opening, sampling and closing gives the whole conversation's text.
        let opened = t.render(&msgs[..2], true).unwrap();
        let closed = encode_pieces(None, &t.assistant_close(&msgs, None).unwrap()).0;
        assert_eq!(
            format!("{opened}{}{closed}", msgs[2].content),
            t.render(&msgs, false).unwrap()
        );
        assert!(matches!(
            t.assistant_close(&[], None),
            Err(TemplateError::NotIncremental { .. })
        ));
    }
}
