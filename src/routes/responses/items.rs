//! Conversation items ↔ stored turns.
//!
//! In: a Responses `input` (a string, or items: messages with `input_text` / `input_image` /
//! `input_file` parts, `function_call`, `function_call_output`) becomes chat turns; a
//! `function_call` joins the assistant turn right before it, as its next call. Reasoning
//! items are provider-opaque (their `encrypted_content` belongs to the model that wrote it)
//! and are never replayed, to that provider or another. Out: each stored turn is one item,
//! or, for an assistant turn, its message and then one `function_call` item per call.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::ids::{ItemPart, call_item_id, item_id};
use crate::{
    domain::{
        content::{Content, FileData, ImageDetail, ImageUrl, Part},
        error::{DomainError, from_json_error},
        message::{Message, Role, Turn},
        tools::{FunctionCall, ToolCall},
    },
    error::ApiError,
};

/// The most items one request may add (OpenAI's limit for conversation items).
pub const MAX_ITEMS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Deserialize)]
struct MessageItem {
    role: Role,
    content: ItemContent,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ItemContent {
    Text(String),
    Parts(Vec<InputPart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InputPart {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    /// By `file_id` (a file uploaded to OpenAI) it has no `image_url`, and is refused.
    InputImage {
        image_url: Option<String>,
        detail: Option<ImageDetail>,
    },
    InputFile {
        file_data: Option<String>,
        file_id: Option<String>,
        file_url: Option<String>,
        filename: Option<String>,
    },
}

#[derive(Deserialize)]
struct CallItem {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct OutputItem {
    call_id: String,
    output: ItemContent,
}

/// The turns an input adds, in order.
pub fn turns_of(input: Input, field: &str) -> Result<Vec<Message>, ApiError> {
    let items = match input {
        Input::Text(text) => return Ok(vec![Message::text(Role::User, text)]),
        Input::Items(items) => items,
    };
    let mut turns: Vec<Message> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |rest: &str| format!("{field}[{i}]{rest}");
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(kind) => kind.to_string(),
            None if item.get("role").is_some() => "message".into(),
            None => return Err(ApiError::invalid(at(".type"), "an item needs a `type`")),
        };
        match kind.as_str() {
            "message" => {
                let m: MessageItem = decode(item, &at(""))?;
                let content = content_of(m.content, &at(".content"))?;
                turns.push(Message::text(m.role, content));
            }
            "function_call" => {
                let call: CallItem = decode(item, &at(""))?;
                let call = ToolCall {
                    id: call.call_id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name: call.name,
                        arguments: call.arguments,
                    },
                };
                match turns.last_mut() {
                    Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                    _ => turns.push(Message {
                        tool_calls: vec![call],
                        ..Message::text(Role::Assistant, "")
                    }),
                }
            }
            "function_call_output" => {
                let output: OutputItem = decode(item, &at(""))?;
                turns.push(Message {
                    tool_call_id: Some(output.call_id),
                    ..Message::text(Role::Tool, content_of(output.output, &at(".output"))?)
                });
            }
            "reasoning" => {}
            _ => {
                return Err(ApiError::invalid(
                    at(".type"),
                    "supported items: message, function_call, function_call_output",
                ));
            }
        }
    }
    Ok(turns)
}

fn decode<T: serde::de::DeserializeOwned>(item: Value, field: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(item).map_err(|err| {
        let mut err = from_json_error(err);
        if let DomainError::Invalid { field: f, .. } = &mut err {
            *f = Some(match f.take() {
                Some(inner) => format!("{field}.{inner}"),
                None => field.to_string(),
            });
        }
        err.into()
    })
}

fn content_of(content: ItemContent, field: &str) -> Result<Content, ApiError> {
    let parts = match content {
        ItemContent::Text(text) => return Ok(Content::Text(text)),
        ItemContent::Parts(parts) => parts,
    };
    let unsupported = |j: usize, what: &str| ApiError::invalid(format!("{field}[{j}]"), what);
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        out.push(match part {
            InputPart::InputText { text } | InputPart::OutputText { text } => Part::Text { text },
            InputPart::Refusal { refusal } => Part::Refusal { refusal },
            InputPart::InputImage {
                image_url: Some(url),
                detail,
                ..
            } => Part::ImageUrl {
                image_url: ImageUrl { url, detail },
            },
            InputPart::InputImage { .. } => {
                return Err(unsupported(
                    j,
                    "images by `file_id` cannot be read here: send `image_url`",
                ));
            }
            InputPart::InputFile {
                file_url: Some(_), ..
            } => {
                return Err(unsupported(
                    j,
                    "files by `file_url` cannot be read here: send `file_data`",
                ));
            }
            InputPart::InputFile {
                file_data,
                file_id,
                filename,
                ..
            } => Part::File {
                file: FileData {
                    file_data,
                    file_id,
                    filename,
                },
            },
        });
    }
    Ok(Content::Parts(out))
}

/// The items of a stored turn, in order (none for a deleted one).
pub fn items_of(turn: &Turn) -> Vec<Value> {
    if turn.deleted {
        return Vec::new();
    }
    items_of_message(&turn.id, &turn.message)
}

/// The items of the turn `turn_id` says `m`.
pub fn items_of_message(turn_id: &str, m: &Message) -> Vec<Value> {
    match m.role {
        Role::Tool => vec![json!({
            "type": "function_call_output", "id": item_id(turn_id, &ItemPart::Output),
            "call_id": m.tool_call_id, "output": m.content.text(), "status": "completed",
        })],
        Role::Assistant => {
            let mut items = Vec::with_capacity(m.tool_calls.len() + 1);
            if !m.content.is_empty() || m.refusal.is_some() {
                items.push(message_item(turn_id, m.role, output_parts(m)));
            }
            items.extend(m.tool_calls.iter().map(|call| {
                function_call_item(&call_item_id(turn_id, &call.id), call, "completed")
            }));
            items
        }
        _ => vec![message_item(turn_id, m.role, input_parts(&m.content))],
    }
}

pub fn function_call_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call.id, "name": call.function.name,
        "arguments": call.function.arguments, "status": status,
    })
}

fn message_item(turn_id: &str, role: Role, content: Vec<Value>) -> Value {
    json!({
        "type": "message", "id": item_id(turn_id, &ItemPart::Message), "status": "completed",
        "role": role, "content": content,
    })
}

pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn output_parts(m: &Message) -> Vec<Value> {
    let mut parts: Vec<Value> = match &m.content {
        Content::Text(text) if text.is_empty() => Vec::new(),
        Content::Text(text) => vec![output_text(text)],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(output_text(text)),
                Part::Refusal { refusal } => Some(json!({"type": "refusal", "refusal": refusal})),
                _ => None,
            })
            .collect(),
    };
    if let Some(refusal) = &m.refusal {
        parts.push(json!({"type": "refusal", "refusal": refusal}));
    }
    parts
}

fn input_parts(content: &Content) -> Vec<Value> {
    let parts = match content {
        Content::Text(text) => return vec![json!({"type": "input_text", "text": text})],
        Content::Parts(parts) => parts,
    };
    parts
        .iter()
        .map(|part| match part {
            Part::Text { text } => json!({"type": "input_text", "text": text}),
            Part::ImageUrl { image_url } => json!({
                "type": "input_image", "image_url": image_url.url,
                "detail": image_url.detail.unwrap_or(ImageDetail::Auto),
            }),
            Part::File { file } => {
                let mut part = json!({"type": "input_file"});
                for (key, value) in [
                    ("file_data", &file.file_data),
                    ("file_id", &file.file_id),
                    ("filename", &file.filename),
                ] {
                    if let Some(value) = value {
                        part[key] = json!(value);
                    }
                }
                part
            }
            Part::InputAudio { input_audio } => {
                json!({"type": "input_audio", "input_audio": input_audio})
            }
            Part::Refusal { refusal } => json!({"type": "refusal", "refusal": refusal}),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::domain::message::message_id;

    fn input(value: Value) -> Input {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn items_become_turns_and_calls_join_their_assistant_turn() {
        let turns = turns_of(
            input(json!([
                {"role": "developer", "content": "be brief"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "this?"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "look", "arguments": "{\"a\":1}"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]}
            ])),
            "input",
        )
        .unwrap();
        let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            [
                Role::Developer,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool
            ]
        );
        assert_eq!(turns[2].tool_calls.len(), 2);
        assert_eq!(turns[2].content.text(), "Checking.");
        assert_eq!(turns[4].tool_call_id.as_deref(), Some("c2"));
        let Content::Parts(parts) = &turns[1].content else {
            panic!()
        };
        assert!(
            matches!(&parts[1], Part::ImageUrl { image_url } if image_url.detail == Some(ImageDetail::Low))
        );
        assert_eq!(
            turns_of(input(json!("hi")), "input").unwrap(),
            [Message::text(Role::User, "hi")]
        );
    }

    #[test]
    fn unknown_items_and_unreadable_parts_name_their_field() {
        let field = |value| match turns_of(input(value), "input") {
            Err(ApiError::InvalidRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(json!([{"type": "web_search_call", "id": "x"}])).as_deref(),
            Some("input[0].type")
        );
        assert_eq!(
            field(json!([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]))
                .as_deref(),
            Some("input[0].content[0]")
        );
        let missing = field(json!([{"type": "function_call", "name": "f"}])).unwrap();
        assert!(missing.starts_with("input[0]"), "{missing}");
    }

    #[test]
    fn turns_read_back_as_items_with_stable_ids() {
        let id = message_id(4);
        let message = Message {
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "look".into(),
                    arguments: "{}".into(),
                },
            }],
            ..Message::text(Role::Assistant, "Checking.")
        };
        let answer = Turn::new(
            id.clone(),
            message,
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            10,
        );
        let items = items_of(&answer);
        assert_eq!(items[0]["id"], format!("msg_{id}"));
        assert_eq!(items[0]["content"][0], output_text("Checking."));
        assert_eq!(items[1]["id"], call_item_id(&id, "c1"));
        assert_eq!(
            (items[1]["call_id"].as_str(), items[1]["type"].as_str()),
            (Some("c1"), Some("function_call"))
        );
    }
}
