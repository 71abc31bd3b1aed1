//! The ChatML chat template (SmolLM2's), rendered to text and to token ids.
//!
//! Each turn is `<|im_start|>{role}\n{content}<|im_end|>\n`; when the first message is
//! not a system message, SmolLM2's default system prompt is inserted first (as its
//! Jinja template in the GGUF does); `add_generation_prompt` appends
//! `<|im_start|>assistant\n`.
//!
//! Tool observations: SmolLM2's template has no tool role and the model was not
//! trained with one, so by default ([`ToolTurns::AsUser`]) a [`Role::Tool`] message is
//! rendered as a `user` turn; [`ToolTurns::AsToolRole`] renders it as a `tool` turn
//! (what ChatML models trained with tools expect).
//!
//! Token ids: the control tokens are inserted as ids and every piece of text is
//! encoded as *ordinary* text, so a file or tool output that contains the string
//! `<|im_end|>` cannot end a turn. For content without such strings the ids equal
//! those of encoding the rendered text with special tokens recognised (HF behaviour).

use super::Tokenizer;
use serde::{Deserialize, Serialize};

/// SmolLM2's default system prompt (from its chat template).
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

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

/// How tool observations are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolTurns {
    #[default]
    AsUser,
    AsToolRole,
}

/// Rendering options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatOptions {
    pub tool_turns: ToolTurns,
    /// Append `<|im_start|>assistant\n` so the model writes the next assistant turn.
    pub add_generation_prompt: bool,
    /// Skip inserting the default system prompt.
    pub no_default_system: bool,
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

fn role_name(role: Role, opts: &ChatOptions) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => match opts.tool_turns {
            ToolTurns::AsUser => "user",
            ToolTurns::AsToolRole => "tool",
        },
    }
}

/// Calls `piece(is_control, text)` for each piece of the rendered conversation.
fn pieces(messages: &[Message], opts: &ChatOptions, mut piece: impl FnMut(bool, &str)) {
    if !opts.no_default_system && messages.first().is_none_or(|m| m.role != Role::System) {
        piece(true, IM_START);
        piece(false, &format!("system\n{DEFAULT_SYSTEM_PROMPT}"));
        piece(true, IM_END);
        piece(false, "\n");
    }
    for m in messages {
        piece(true, IM_START);
        piece(
            false,
            &format!("{}\n{}", role_name(m.role, opts), m.content),
        );
        piece(true, IM_END);
        piece(false, "\n");
    }
    if opts.add_generation_prompt {
        piece(true, IM_START);
        piece(false, "assistant\n");
    }
}

/// The conversation as text.
pub fn render(messages: &[Message], opts: &ChatOptions) -> String {
    let mut s = String::new();
    pieces(messages, opts, |_, p| s.push_str(p));
    s
}

impl Tokenizer {
    /// The conversation as token ids (see the module doc for how content is encoded).
    /// Falls back to encoding the control strings as text when the vocabulary has no
    /// `<|im_start|>`/`<|im_end|>` tokens.
    pub fn encode_chat(&self, messages: &[Message], opts: &ChatOptions) -> Vec<u32> {
        let mut ids = Vec::new();
        let start = self.token_id(IM_START);
        let end = self.token_id(IM_END);
        pieces(messages, opts, |control, p| {
            let special = match (control, p) {
                (true, IM_START) => start,
                (true, _) => end,
                _ => None,
            };
            match special {
                Some(id) => ids.push(id),
                None => ids.extend(self.encode_ordinary(p)),
            }
        });
        ids
    }

    /// The id that ends an assistant turn (`<|im_end|>`), if the vocabulary has it.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.token_id(IM_END)
    }
}
