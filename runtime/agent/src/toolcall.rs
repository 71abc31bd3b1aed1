//! Tool-call syntax: finding the one tool call in a model turn and turning it into a
//! name plus JSON arguments.
//!
//! Owns: the two syntaxes (CWM-style `<tool: NAME>…</tool>` blocks and
//! `<tool_call>{"name": …, "arguments": …}</tool_call>`), the rule "one call per turn",
//! and the typed reasons a call is malformed. Does not own: what a tool does or which
//! tools exist (the [`crate::tools::Tools`] implementation describes them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the model writes a tool call. A run setting; the prompts describe the chosen one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallSyntax {
    /// `<tool: bash>\nls -la\n</tool>`: the body is either a JSON object of arguments or
    /// the raw value of the tool's primary (first required string) argument.
    #[default]
    Cwm,
    /// `<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>`.
    Json,
}

impl ToolCallSyntax {
    /// Strings at which generation stops: the closing tag of a call, so a model cannot
    /// write a call and then hallucinate its result in the same turn.
    pub fn stop_sequences(self) -> Vec<String> {
        match self {
            ToolCallSyntax::Cwm => vec!["</tool>".into()],
            ToolCallSyntax::Json => vec!["</tool_call>".into()],
        }
    }

    /// The closing tag (used to accept a call whose closing tag was eaten by a stop).
    fn close_tag(self) -> &'static str {
        match self {
            ToolCallSyntax::Cwm => "</tool>",
            ToolCallSyntax::Json => "</tool_call>",
        }
    }

    /// One example call in this syntax, for the prompts.
    pub fn example(self, tool: &str, primary_arg: &str, value: &str) -> String {
        match self {
            ToolCallSyntax::Cwm => format!("<tool: {tool}>\n{value}\n</tool>"),
            ToolCallSyntax::Json => {
                let args = serde_json::json!({ primary_arg: value });
                format!(
                    "<tool_call>{}</tool_call>",
                    serde_json::json!({"name": tool, "arguments": args})
                )
            }
        }
    }
}

/// A parsed tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// Always a JSON object.
    pub arguments: Value,
}

impl ToolCall {
    /// The call written in `syntax`, as a model that makes it would write it: in the
    /// CWM syntax a call whose only argument is the tool's primary one (`shape`) is
    /// that text itself, any other a JSON object; a call without arguments an empty
    /// block. `None` when the text would not parse back to this call (a value holding
    /// the closing tag, say): demonstrations are built only from calls that round-trip.
    pub fn write(&self, syntax: ToolCallSyntax, shapes: &[ToolShape]) -> Option<String> {
        let args = self.arguments.as_object()?;
        let candidates = match syntax {
            ToolCallSyntax::Cwm => {
                let primary = shapes
                    .iter()
                    .find(|s| s.name == self.name)
                    .and_then(|s| s.primary_arg.as_deref());
                let block = |body: String| format!("<tool: {}>\n{body}</tool>", self.name);
                let mut c = Vec::new();
                match (args.len(), primary.and_then(|p| args.get(p))) {
                    (0, _) => c.push(block(String::new())),
                    (1, Some(Value::String(v))) => c.push(block(format!("{v}\n"))),
                    _ => {}
                }
                // A primary value that reads as JSON (`{...}`) needs the object form.
                c.push(block(format!("{}\n", self.arguments)));
                c
            }
            ToolCallSyntax::Json => vec![format!(
                "<tool_call>{}</tool_call>",
                serde_json::json!({"name": self.name, "arguments": self.arguments})
            )],
        };
        // Generation stops at the first closing tag: it must be the call's own.
        candidates.into_iter().find(|text| {
            text.matches(syntax.close_tag()).count() == 1
                && parse_tool_call(syntax, text, shapes, false).is_ok_and(|back| back == *self)
        })
    }
}

/// Why a turn's tool call could not be used. Shown to the model as an error
/// observation and counted in the episode's statistics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolCallError {
    #[error("no tool call found in the turn; write exactly one call in the {syntax} syntax")]
    Missing { syntax: String },
    #[error("{count} tool calls found; write exactly one tool call per turn")]
    Several { count: usize },
    #[error("the tool call is not closed with `{close}`")]
    Unclosed { close: String },
    #[error("the tool call has no tool name")]
    NoName,
    #[error("the tool call's JSON is invalid: {reason}")]
    BadJson { reason: String },
    #[error("the tool call's arguments must be a JSON object")]
    ArgumentsNotObject,
    #[error("unknown tool `{name}`; available tools: {available}")]
    UnknownTool { name: String, available: String },
}

/// What the parser needs to know about a tool: its name and the argument that a raw
/// (non-JSON) CWM block body fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolShape {
    pub name: String,
    /// The argument a plain-text body becomes, e.g. `command` for bash.
    pub primary_arg: Option<String>,
}

/// Parses the single tool call of a model turn.
///
/// `stopped_at_close` says generation ended on the syntax's stop sequence and the
/// server dropped it from the text: a final unclosed call is then complete.
pub fn parse_tool_call(
    syntax: ToolCallSyntax,
    text: &str,
    tools: &[ToolShape],
    stopped_at_close: bool,
) -> Result<ToolCall, ToolCallError> {
    let completed;
    let text = if stopped_at_close && !text.trim_end().ends_with(syntax.close_tag()) {
        completed = format!("{text}{}", syntax.close_tag());
        completed.as_str()
    } else {
        text
    };
    let bodies = match syntax {
        ToolCallSyntax::Cwm => split_blocks(text, "<tool:", "</tool>")?,
        ToolCallSyntax::Json => split_blocks(text, "<tool_call>", "</tool_call>")?,
    };
    let body = match bodies.len() {
        0 => {
            return Err(ToolCallError::Missing {
                syntax: match syntax {
                    ToolCallSyntax::Cwm => "`<tool: NAME>…</tool>`".into(),
                    ToolCallSyntax::Json => {
                        "`<tool_call>{\"name\": …, \"arguments\": …}</tool_call>`".into()
                    }
                },
            });
        }
        1 => bodies[0],
        count => return Err(ToolCallError::Several { count }),
    };
    let call = match syntax {
        ToolCallSyntax::Cwm => parse_cwm_body(body, tools)?,
        ToolCallSyntax::Json => parse_json_body(body)?,
    };
    if !tools.iter().any(|t| t.name == call.name) {
        return Err(unknown(call.name, tools));
    }
    Ok(call)
}

fn unknown(name: String, tools: &[ToolShape]) -> ToolCallError {
    ToolCallError::UnknownTool {
        name,
        available: tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The bodies between every `open` and its following `close`. An `open` without a
/// `close` is an error: the call was cut off (by the token budget, typically).
fn split_blocks<'a>(text: &'a str, open: &str, close: &str) -> Result<Vec<&'a str>, ToolCallError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        match after.find(close) {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + close.len()..];
            }
            None => {
                return Err(ToolCallError::Unclosed {
                    close: close.into(),
                });
            }
        }
    }
    Ok(out)
}

/// `<tool: NAME>` was consumed up to the colon; the body is ` NAME>\nBODY\n`.
fn parse_cwm_body(body: &str, tools: &[ToolShape]) -> Result<ToolCall, ToolCallError> {
    let Some(gt) = body.find('>') else {
        return Err(ToolCallError::NoName);
    };
    let name = body[..gt].trim().to_string();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(ToolCallError::NoName);
    }
    if !tools.iter().any(|t| t.name == name) {
        return Err(unknown(name, tools));
    }
    let raw = &body[gt + 1..];
    // One leading and one trailing newline belong to the block's layout, not the value.
    let raw = raw.strip_prefix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    let trimmed = raw.trim();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
    {
        return Ok(ToolCall {
            name,
            arguments: Value::Object(map),
        });
    }
    let primary = tools
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.primary_arg.clone());
    let mut map = Map::new();
    match primary {
        Some(arg) => {
            map.insert(arg, Value::String(raw.to_string()));
        }
        // A tool without a primary argument (for example `submit`) takes an empty body.
        None if trimmed.is_empty() => {}
        None => {
            return Err(ToolCallError::BadJson {
                reason: format!("tool `{name}` takes a JSON object of arguments as its body"),
            });
        }
    }
    Ok(ToolCall {
        name,
        arguments: Value::Object(map),
    })
}

fn parse_json_body(body: &str) -> Result<ToolCall, ToolCallError> {
    let value: Value = serde_json::from_str(body.trim()).map_err(|e| ToolCallError::BadJson {
        reason: e.to_string(),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ToolCallError::BadJson {
            reason: "expected a JSON object".into(),
        });
    };
    let name = match obj.remove("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err(ToolCallError::NoName),
    };
    let arguments = match obj.remove("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m),
        // Some models send the arguments as a JSON string (OpenAI's wire format does).
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => Value::Object(m),
            _ => return Err(ToolCallError::ArgumentsNotObject),
        },
        Some(_) => return Err(ToolCallError::ArgumentsNotObject),
    };
    Ok(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<ToolShape> {
        vec![
            ToolShape {
                name: "bash".into(),
                primary_arg: Some("command".into()),
            },
            ToolShape {
                name: "submit".into(),
                primary_arg: None,
            },
        ]
    }

    fn check(syntax: ToolCallSyntax, text: &str, expected: Result<(&str, Value), &str>) {
        let got = parse_tool_call(syntax, text, &shapes(), false);
        match (got, expected) {
            (Ok(c), Ok((name, args))) => {
                assert_eq!(c.name, name);
                assert_eq!(c.arguments, args);
            }
            (Err(e), Err(kind)) => {
                let v = serde_json::to_value(&e).unwrap();
                assert_eq!(v["kind"], kind, "{e}");
            }
            (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn cwm_blocks() {
        use serde_json::json;
        let s = ToolCallSyntax::Cwm;
        check(
            s,
            "look\n<tool: bash>\nls -la\n</tool>",
            Ok(("bash", json!({"command": "ls -la"}))),
        );
        check(
            s,
            "<tool: bash>\n{\"command\": \"pwd\"}\n</tool>",
            Ok(("bash", json!({"command": "pwd"}))),
        );
        check(s, "<tool: submit>\n</tool>", Ok(("submit", json!({}))));
        check(
            s,
            "<tool: bash>\necho 'a\n\nb'\n</tool>",
            Ok(("bash", json!({"command": "echo 'a\n\nb'"}))),
        );
        check(s, "nothing here", Err("missing"));
        check(
            s,
            "<tool: bash>\nls\n</tool><tool: bash>\npwd\n</tool>",
            Err("several"),
        );
        check(s, "<tool: bash>\nls", Err("unclosed"));
        check(s, "<tool: >\nls\n</tool>", Err("no_name"));
        check(s, "<tool: rm>\nx\n</tool>", Err("unknown_tool"));
        check(s, "<tool: submit>\nfoo\n</tool>", Err("bad_json"));
    }

    #[test]
    fn json_calls() {
        use serde_json::json;
        let s = ToolCallSyntax::Json;
        check(
            s,
            r#"<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>"#,
            Ok(("bash", json!({"command": "ls"}))),
        );
        check(
            s,
            r#"<tool_call>{"name": "bash", "arguments": "{\"command\": \"ls\"}"}</tool_call>"#,
            Ok(("bash", json!({"command": "ls"}))),
        );
        check(
            s,
            r#"<tool_call>{"name": "submit"}</tool_call>"#,
            Ok(("submit", json!({}))),
        );
        check(
            s,
            r#"<tool_call>{"name": "bash", "arguments": [1]}</tool_call>"#,
            Err("arguments_not_object"),
        );
        check(s, r#"<tool_call>{"name": </tool_call>"#, Err("bad_json"));
        check(
            s,
            r#"<tool_call>{"arguments": {}}</tool_call>"#,
            Err("no_name"),
        );
    }

    #[test]
    fn a_call_cut_by_its_stop_sequence_is_complete() {
        let got =
            parse_tool_call(ToolCallSyntax::Cwm, "<tool: bash>\nls\n", &shapes(), true).unwrap();
        assert_eq!(got.arguments["command"], "ls");
        let got = parse_tool_call(
            ToolCallSyntax::Json,
            r#"<tool_call>{"name": "submit"}"#,
            &shapes(),
            true,
        )
        .unwrap();
        assert_eq!(got.name, "submit");
    }

    #[test]
    fn written_calls_parse_back_and_unwritable_ones_are_refused() {
        use serde_json::json;
        let mut tools = shapes();
        tools.push(ToolShape {
            name: "editor".into(),
            primary_arg: Some("command".into()),
        });
        let calls = [
            ("bash", json!({"command": "python -m pytest -q\nls"})),
            ("bash", json!({"command": "{\"a\": 1}"})),
            ("submit", json!({})),
            (
                "editor",
                json!({"command": "str_replace", "path": "a.py", "old_str": "x\n", "new_str": "y\n"}),
            ),
        ];
        for s in [ToolCallSyntax::Cwm, ToolCallSyntax::Json] {
            for (name, args) in &calls {
                let call = ToolCall {
                    name: (*name).into(),
                    arguments: args.clone(),
                };
                let text = call.write(s, &tools).unwrap_or_else(|| panic!("{call:?}"));
                assert_eq!(parse_tool_call(s, &text, &tools, false).unwrap(), call);
            }
        }
        assert_eq!(
            ToolCall {
                name: "submit".into(),
                arguments: json!({})
            }
            .write(ToolCallSyntax::Cwm, &tools)
            .unwrap(),
            "<tool: submit>\n</tool>"
        );
        let closing = ToolCall {
            name: "bash".into(),
            arguments: json!({"command": "echo '</tool>'"}),
        };
        assert_eq!(closing.write(ToolCallSyntax::Cwm, &tools), None);
    }

    #[test]
    fn examples_parse_back() {
        for s in [ToolCallSyntax::Cwm, ToolCallSyntax::Json] {
            let text = s.example("bash", "command", "ls -la");
            let c = parse_tool_call(s, &text, &shapes(), false).unwrap();
            assert_eq!(c.arguments["command"], "ls -la");
        }
    }
}
