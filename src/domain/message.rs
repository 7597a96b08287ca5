//! One turn of a conversation, as LLM conversations really contain them: a role, text or
//! content parts, an assistant's tool calls and refusal, a tool turn's call id, a name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::SerializeMap};

use crate::domain::{
    content::Content,
    tools::{FunctionCall, ToolCall},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    /// The answer to a deprecated `function_call`.
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }

    /// System and developer turns instruct the model; they are not dialogue.
    pub fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }

    /// Tool and function turns answer an assistant's calls.
    pub fn is_call_result(self) -> bool {
        matches!(self, Role::Tool | Role::Function)
    }
}

/// What a turn says, in OpenAI's chat-message shape. Unknown keys are ignored when one
/// is read, as OpenAI ignores them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Content,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    /// The deprecated single call of the `functions` API.
    #[serde(default)]
    pub function_call: Option<FunctionCall>,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Message {
    /// A turn of text only.
    pub fn text(role: Role, content: impl Into<Content>) -> Message {
        Message {
            role,
            content: content.into(),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            refusal: None,
            function_call: None,
        }
    }

    /// An assistant turn that asks for tool (or function) results.
    pub fn calls_tools(&self) -> bool {
        self.role == Role::Assistant
            && (!self.tool_calls.is_empty() || self.function_call.is_some())
    }
}

/// OpenAI's shape: optional fields left out, and `content: null` for an assistant turn
/// that only calls tools, as OpenAI itself answers.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(self.role.as_str(), s)
    }
}

impl Message {
    /// Serializes the message under another role name, for upstreams that spell roles
    /// their own way.
    pub fn serialize_as<S: Serializer>(&self, role: &str, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", role)?;
        if self.content.is_empty() && (self.calls_tools() || self.refusal.is_some()) {
            map.serialize_entry("content", &())?;
        } else {
            map.serialize_entry("content", &self.content)?;
        }
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        if !self.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &self.tool_calls)?;
        }
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if let Some(refusal) = &self.refusal {
            map.serialize_entry("refusal", refusal)?;
        }
        if let Some(call) = &self.function_call {
            map.serialize_entry("function_call", call)?;
        }
        map.end()
    }
}

/// A turn as stored: its token count is computed once, when it is written, so that
/// building a context never re-tokenizes history.
///
/// Stored compactly (see [`stored`]): one-letter keys and the time in nanoseconds. Turns
/// written by the first key layout (`id`, `role`, `content`, `created_at`, `tokens`) are
/// read as well, so data migrated or not reads the same.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "stored::Owned")]
pub struct Turn {
    pub id: String,
    pub message: Message,
    pub created_at: DateTime<Utc>,
    /// Tokens this turn costs inside a chat prompt, per-message overhead included.
    pub tokens: u32,
    /// Of an answer made through the Responses API: what its request asked for.
    pub record: Option<Box<AnswerRecord>>,
    /// Deleted as a conversation item: kept in place (positions, and so ids, never
    /// shift), empty, costing nothing, and never sent.
    pub deleted: bool,
}

impl Turn {
    pub fn new(id: String, message: Message, created_at: DateTime<Utc>, tokens: u32) -> Turn {
        Turn {
            id,
            message,
            created_at,
            tokens,
            record: None,
            deleted: false,
        }
    }

    /// An answer a response may continue: not deleted, as an item or as a response.
    pub fn continuable(&self) -> bool {
        self.message.role == Role::Assistant
            && !self.deleted
            && !self.record.as_ref().is_some_and(|r| r.deleted)
    }

    /// What is left of a turn deleted as an item.
    pub fn tombstone(&self) -> Turn {
        Turn {
            deleted: true,
            ..Turn::new(
                self.id.clone(),
                Message::text(self.message.role, ""),
                self.created_at,
                0,
            )
        }
    }
}

/// What a Responses API request asked for and what its answer cost, kept with the answer
/// so that the response can be read back as it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// The request's parameters, as the response object echoes them.
    pub request: serde_json::Value,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish_reason: String,
    /// Position of the first turn this answer's request added (its input items).
    #[serde(default)]
    pub input_from: u64,
    /// The response was deleted; its turns stay in the conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Serialize for Turn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        stored::Borrowed::from(self).serialize(s)
    }
}

/// A stored turn as the API shows it: its id, the message in OpenAI's shape, when it was
/// written and what it costs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TurnView<'a> {
    pub id: &'a str,
    /// OpenAI's message fields (`role`, `content`, `tool_calls`, …), side by side with these.
    #[serde(flatten)]
    #[schema(ignore)]
    pub message: &'a Message,
    pub created_at: DateTime<Utc>,
    pub tokens: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl<'a> From<&'a Turn> for TurnView<'a> {
    fn from(turn: &'a Turn) -> Self {
        TurnView {
            id: &turn.id,
            message: &turn.message,
            created_at: turn.created_at,
            tokens: turn.tokens,
            deleted: turn.deleted,
        }
    }
}

/// Message ids carry their position so `?after=<id>` finds its place in one read:
/// `<index in hex>_<32 hex digits of randomness>`. Clients treat them as opaque.
pub fn message_id(index: u64) -> String {
    format!("{index:x}_{}", crate::domain::session::new_id())
}

/// The position a message id claims; the caller checks the id really sits there.
pub fn message_index(id: &str) -> Option<u64> {
    let (index, random) = id.split_once('_')?;
    if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(index, 16).ok()
}

mod stored {
    //! The stored form of a turn. About a tenth of a plain turn's bytes were key names and
    //! the timestamp's text; here keys are short and the time is an integer.

    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};

    use super::{AnswerRecord, Message, Role, Turn};
    use crate::domain::{
        content::Content,
        tools::{FunctionCall, ToolCall},
    };

    /// Written without copying the turn: imports serialize every turn they store.
    #[derive(Serialize)]
    pub(super) struct Borrowed<'a> {
        i: &'a str,
        r: Role,
        c: &'a Content,
        t: Time,
        n: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        nm: Option<&'a str>,
        #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
        tc: &'a [ToolCall],
        #[serde(skip_serializing_if = "Option::is_none")]
        ti: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rf: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fc: Option<&'a FunctionCall>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rs: Option<&'a AnswerRecord>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        x: bool,
    }

    #[derive(Deserialize)]
    pub(super) struct Owned {
        #[serde(alias = "id")]
        i: String,
        #[serde(alias = "role")]
        r: Role,
        #[serde(alias = "content", default)]
        c: Content,
        #[serde(alias = "created_at")]
        t: Time,
        #[serde(alias = "tokens")]
        n: u32,
        #[serde(default)]
        nm: Option<String>,
        #[serde(default)]
        tc: Vec<ToolCall>,
        #[serde(default)]
        ti: Option<String>,
        #[serde(default)]
        rf: Option<String>,
        #[serde(default)]
        fc: Option<FunctionCall>,
        #[serde(default)]
        rs: Option<Box<AnswerRecord>>,
        #[serde(default)]
        x: bool,
    }

    /// Nanoseconds since the epoch; RFC 3339 text for the rare time outside ±292 years
    /// of 1970, and for turns of the first layout.
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Time {
        Nanos(i64),
        Text(DateTime<Utc>),
    }

    impl<'a> From<&'a Turn> for Borrowed<'a> {
        fn from(turn: &'a Turn) -> Borrowed<'a> {
            let t = match turn.created_at.timestamp_nanos_opt() {
                Some(nanos) => Time::Nanos(nanos),
                None => Time::Text(turn.created_at),
            };
            let m = &turn.message;
            Borrowed {
                i: &turn.id,
                r: m.role,
                c: &m.content,
                t,
                n: turn.tokens,
                nm: m.name.as_deref(),
                tc: &m.tool_calls,
                ti: m.tool_call_id.as_deref(),
                rf: m.refusal.as_deref(),
                fc: m.function_call.as_ref(),
                rs: turn.record.as_deref(),
                x: turn.deleted,
            }
        }
    }

    impl From<Owned> for Turn {
        fn from(s: Owned) -> Turn {
            let created_at = match s.t {
                Time::Nanos(nanos) => DateTime::from_timestamp_nanos(nanos),
                Time::Text(time) => time,
            };
            Turn {
                id: s.i,
                message: Message {
                    role: s.r,
                    content: s.c,
                    name: s.nm,
                    tool_calls: s.tc,
                    tool_call_id: s.ti,
                    refusal: s.rf,
                    function_call: s.fc,
                },
                created_at,
                tokens: s.n,
                record: s.rs,
                deleted: s.x,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn rich_turn() -> Turn {
        let message: Message = serde_json::from_value(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}],
            "refusal": null,
        }))
        .unwrap();
        Turn {
            id: message_id(3),
            message,
            created_at: "2024-05-01T10:00:00.123456789Z".parse().unwrap(),
            tokens: 21,
            deleted: false,
            record: Some(Box::new(AnswerRecord {
                request: json!({"instructions": "be brief"}),
                model: "gpt-4.1".into(),
                prompt_tokens: 100,
                completion_tokens: 9,
                finish_reason: "tool_calls".into(),
                input_from: 2,
                deleted: false,
            })),
        }
    }

    #[test]
    fn stored_form_round_trips_losslessly_and_compactly() {
        let turn = rich_turn();
        let json = serde_json::to_string(&turn).unwrap();
        assert!(json.starts_with(r#"{"i":""#), "{json}");
        assert!(json.contains(r#""t":1714557600123456789"#), "{json}");
        assert_eq!(serde_json::from_str::<Turn>(&json).unwrap(), turn);
    }

    #[test]
    fn turns_of_the_first_layout_still_read() {
        let old = r#"{"id":"0_0123456789abcdef0123456789abcdef","role":"user","content":"Hi","created_at":"2024-05-01T10:00:00Z","tokens":6}"#;
        let turn: Turn = serde_json::from_str(old).unwrap();
        assert_eq!(turn.message, Message::text(Role::User, "Hi"));
        assert_eq!(turn.tokens, 6);
        assert_eq!(turn.created_at.to_rfc3339(), "2024-05-01T10:00:00+00:00");
    }

    #[test]
    fn times_beyond_nanosecond_range_are_kept_as_text() {
        let mut turn = rich_turn();
        turn.created_at = "2500-01-01T00:00:00Z".parse().unwrap();
        let json = serde_json::to_string(&turn).unwrap();
        assert!(json.contains(r#""t":"2500-01-01T00:00:00Z""#), "{json}");
        assert_eq!(serde_json::from_str::<Turn>(&json).unwrap(), turn);
    }

    #[test]
    fn wire_shape_has_null_content_for_a_call_only_turn() {
        let value = serde_json::to_value(&rich_turn().message).unwrap();
        assert_eq!(value["content"], serde_json::Value::Null);
        assert_eq!(value["tool_calls"][0]["function"]["name"], "weather");
        assert!(value.get("name").is_none() && value.get("tool_call_id").is_none());
        let plain = serde_json::to_value(Message::text(Role::User, "")).unwrap();
        assert_eq!(plain, json!({"role": "user", "content": ""}));
    }

    #[test]
    fn unknown_keys_in_a_message_are_ignored_and_null_lists_are_empty() {
        let message: Message = serde_json::from_value(
            json!({"role": "user", "content": "x", "timestamp": 5, "tool_calls": null}),
        )
        .unwrap();
        assert_eq!(message, Message::text(Role::User, "x"));
    }
}
