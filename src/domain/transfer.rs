//! Bulk import and export records: one session per NDJSON line, the same shape both ways,
//! so that what an export writes an import reads back unchanged.
//!
//! The contract fixes `session_id`, `user_id`, `model`, `system_prompt`, `ttl_seconds`,
//! `metadata` and `messages`; the other settings of a session (and its `created_at`) ride
//! along as optional fields and are left out when unset, so that a round trip loses nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::domain::{
    compaction::{SPLITS_A_UNIT, check_summary_text},
    content::Content,
    error::DomainError,
    json,
    message::{Message, Role},
    session::{Limits, SessionConfig, is_session_id},
    tools::{ResponseFormat, Tool, ToolCall},
};

/// `?mode=` of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// A new session; an id that is taken is an error for that item.
    #[default]
    Create,
    /// The messages are added after the session's history; nothing else changes.
    Append,
    /// The session becomes exactly what the item says: settings, history, nothing kept.
    Replace,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Create => "create",
            ImportMode::Append => "append",
            ImportMode::Replace => "replace",
        }
    }

    /// The result status of an item written in this mode.
    pub fn done_status(self) -> &'static str {
        match self {
            ImportMode::Create => "created",
            ImportMode::Append => "appended",
            ImportMode::Replace => "replaced",
        }
    }
}

/// One session as imported.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub model: Option<String>,
    pub fallback_models: Option<Vec<String>>,
    pub system_prompt: Option<String>,
    pub context_window: Option<u32>,
    pub max_context_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub ttl_seconds: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    pub max_cost_usd: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Tool>>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, deserialize_with = "rfc3339")]
    pub created_at: Option<DateTime<Utc>>,
    /// The summary of the first turns of `messages`; exports before it existed have none.
    pub summary: Option<SummaryRecord>,
    #[serde(default)]
    pub messages: Vec<MessageRecord>,
}

/// A session's summary in an export line. Message ids are assigned anew on import, so the
/// last turn it covers is named by its position in `messages`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryRecord {
    pub text: String,
    /// The index in `messages` of the last turn the summary covers.
    pub upto_message_index: u64,
    /// Written by export; an import counts it again for the session's model.
    pub tokens: Option<u32>,
    /// Kept when given; the import time otherwise.
    #[serde(default, deserialize_with = "rfc3339")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A turn as exported: OpenAI's message fields, and when it was written. Exports of the
/// first format (`role`, text `content`, `created_at`) read as they are.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRecord {
    pub role: Role,
    /// Text, or OpenAI's content parts.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub content: Content,
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub refusal: Option<String>,
    /// Kept when given; the import time otherwise.
    #[serde(default, deserialize_with = "rfc3339")]
    pub created_at: Option<DateTime<Utc>>,
}

impl MessageRecord {
    /// Only text: what nearly every imported turn is, counted the fast way.
    pub fn is_plain(&self) -> bool {
        matches!(self.content, Content::Text(_))
            && self.name.is_none()
            && self.tool_calls.is_empty()
            && self.refusal.is_none()
    }

    pub fn into_message(self) -> Message {
        Message {
            role: self.role,
            content: self.content,
            name: self.name,
            tool_calls: self.tool_calls,
            tool_call_id: self.tool_call_id,
            refusal: self.refusal,
            function_call: None,
        }
    }
}

/// Timestamps must be RFC 3339 (any offset; stored in UTC); a bad one is an error naming
/// its field, like any other.
fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| serde::de::Error::custom("not an RFC 3339 timestamp"))
}

/// What validation of one item needs to know.
pub struct ImportRules<'a> {
    pub mode: ImportMode,
    pub tenant: &'a str,
    pub default_model: &'a str,
    pub default_ttl_seconds: u64,
    pub max_messages: usize,
    pub max_content_bytes: usize,
    pub session: Limits<'a>,
}

/// An item that passed every check.
#[derive(Debug)]
pub struct ValidItem {
    pub session_id: Option<String>,
    /// The settings to write; `None` in append mode, where the stored ones stay.
    pub config: Option<SessionConfig>,
    /// Checked against `messages`: it covers a whole number of them.
    pub summary: Option<SummaryRecord>,
    pub messages: Vec<MessageRecord>,
}

/// Decodes one item. The fast decoder runs first; only a failure is decoded again with
/// path tracking, so that the error names the field (`messages[3].role`).
pub fn parse_record(bytes: &[u8]) -> Result<SessionRecord, DomainError> {
    match json::decode_fast(bytes) {
        Some(record) => Ok(record),
        None => json::decode(bytes).map_err(DomainError::prefixed),
    }
}

/// Checks one decoded item against the rules of its mode, naming the first field at fault.
pub fn validate(record: SessionRecord, rules: &ImportRules) -> Result<ValidItem, DomainError> {
    if let Some(id) = &record.session_id
        && !is_session_id(id)
    {
        return Err(DomainError::invalid(
            "session_id",
            "1 to 128 characters: letters, digits, - and _",
        ));
    }
    if rules.mode != ImportMode::Create && record.session_id.is_none() {
        return Err(DomainError::invalid(
            "session_id",
            format!("required in {} mode", rules.mode.as_str()),
        ));
    }
    if record.messages.len() > rules.max_messages {
        return Err(DomainError::invalid(
            "messages",
            format!("at most {} messages per session", rules.max_messages),
        ));
    }
    if let Some(i) = record
        .messages
        .iter()
        .position(|m| m.content.byte_len() > rules.max_content_bytes)
    {
        return Err(DomainError::invalid(
            format!("messages[{i}].content"),
            format!("at most {} bytes", rules.max_content_bytes),
        ));
    }
    if let Some(i) = record
        .messages
        .iter()
        .position(|m| m.role == Role::Function)
    {
        return Err(DomainError::invalid(
            format!("messages[{i}].role"),
            "the deprecated function role is not kept; import tool turns",
        ));
    }
    let session_id = record.session_id.clone();
    let summary = record.summary.clone();
    let (config, messages) = if rules.mode == ImportMode::Append {
        append_only(&record)?;
        (None, record.messages)
    } else {
        if let Some(summary) = &record.summary {
            check_summary(summary, &record.messages)?;
        }
        let (config, messages) = into_config(record, rules);
        config.validate(&rules.session)?;
        (Some(config), messages)
    };
    Ok(ValidItem {
        session_id,
        config,
        summary,
        messages,
    })
}

/// A summary must cover turns of this history, and never end between an assistant's tool
/// calls and their results (the same rule compaction and PATCH keep).
fn check_summary(summary: &SummaryRecord, messages: &[MessageRecord]) -> Result<(), DomainError> {
    let field = "summary.upto_message_index";
    let upto = usize::try_from(summary.upto_message_index).unwrap_or(usize::MAX);
    if upto >= messages.len() {
        return Err(DomainError::invalid(
            field,
            format!("must name one of the {} messages", messages.len()),
        ));
    }
    if messages
        .get(upto + 1)
        .is_some_and(|m| m.role.is_call_result())
    {
        return Err(DomainError::invalid(field, SPLITS_A_UNIT));
    }
    check_summary_text(&summary.text)
}

/// Append adds history only: settings in the item would be silently dropped, so they are refused.
fn append_only(record: &SessionRecord) -> Result<(), DomainError> {
    let given = [
        ("user_id", record.user_id.is_some()),
        ("model", record.model.is_some()),
        ("fallback_models", record.fallback_models.is_some()),
        ("system_prompt", record.system_prompt.is_some()),
        ("context_window", record.context_window.is_some()),
        ("max_context_tokens", record.max_context_tokens.is_some()),
        ("max_tokens", record.max_tokens.is_some()),
        ("temperature", record.temperature.is_some()),
        ("ttl_seconds", record.ttl_seconds.is_some()),
        ("metadata", record.metadata.is_some()),
        ("max_cost_usd", record.max_cost_usd.is_some()),
        ("tools", record.tools.is_some()),
        ("response_format", record.response_format.is_some()),
        ("created_at", record.created_at.is_some()),
        ("summary", record.summary.is_some()),
    ];
    match given.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(DomainError::invalid(
            *field,
            "append mode adds messages only: give session_id and messages",
        )),
        None => Ok(()),
    }
}

fn into_config(record: SessionRecord, rules: &ImportRules) -> (SessionConfig, Vec<MessageRecord>) {
    let config = SessionConfig {
        tenant: rules.tenant.to_string(),
        user_id: record.user_id,
        model: record.model.unwrap_or_else(|| rules.default_model.into()),
        fallback_models: record.fallback_models.unwrap_or_default(),
        system_prompt: record.system_prompt,
        context_window: record.context_window,
        max_context_tokens: record.max_context_tokens,
        max_tokens: record.max_tokens,
        temperature: record.temperature,
        ttl_seconds: record.ttl_seconds.unwrap_or(rules.default_ttl_seconds),
        metadata: record.metadata.unwrap_or_default(),
        max_cost_usd: record.max_cost_usd,
        tools: record.tools.unwrap_or_default(),
        response_format: record.response_format,
        // Imported sessions do not compress unless changed to (POST …/compact still runs).
        compaction: Default::default(),
        created_at: record.created_at.unwrap_or_else(Utc::now),
    };
    (config, record.messages)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn message_and_field(err: DomainError) -> (String, Option<String>) {
        match err {
            DomainError::Invalid { message, field } => (message, field),
            other => panic!("not an invalid-request error: {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_of_the_item() {
        let line =
            br#"{"messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}"#;
        let (message, field) = message_and_field(parse_record(line).unwrap_err());
        assert!(
            message.starts_with("messages[1].role: unknown variant"),
            "{message}"
        );
        assert_eq!(field.as_deref(), Some("messages[1].role"));
    }

    #[test]
    fn timestamps_must_be_rfc3339() {
        let ok = br#"{"messages":[{"role":"user","content":"a","created_at":"2024-05-01T10:00:00+02:00"}]}"#;
        let record = parse_record(ok).unwrap();
        assert_eq!(
            crate::domain::export::timestamp(&record.messages[0].created_at.unwrap()),
            "2024-05-01T08:00:00Z"
        );
        let bad = br#"{"messages":[{"role":"user","content":"a","created_at":"2024-05-01"}]}"#;
        let (_, field) = message_and_field(parse_record(bad).unwrap_err());
        assert_eq!(field.as_deref(), Some("messages[0].created_at"));
    }

    #[test]
    fn malformed_json_names_no_field() {
        let (message, field) = message_and_field(parse_record(b"{\"messages\": [").unwrap_err());
        assert!(field.is_none());
        assert!(message.starts_with("malformed JSON"));
    }
}
