//! The export line: a session in the import format, written in pieces so that a long
//! history is never held whole. Unset options are left out, `metadata` keys come sorted and
//! timestamps in one fixed form, so the same session always exports the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{
    compaction::Summary,
    content::Content,
    error::DomainError,
    message::{Role, Turn},
    session::SessionConfig,
    tools::{ResponseFormat, Tool, ToolCall},
};

/// The settings part of an export line, in the import format; unset options are left out.
#[derive(Serialize)]
struct ExportHead<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    model: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    fallback_models: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    system_prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_context_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    ttl_seconds: u64,
    metadata: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "<[Tool]>::is_empty")]
    tools: &'a [Tool],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a ResponseFormat>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<ExportSummary<'a>>,
}

/// The summary in the import format: the last turn it covers by its position, since an
/// import assigns message ids anew.
#[derive(Serialize)]
struct ExportSummary<'a> {
    text: &'a str,
    upto_message_index: u64,
    tokens: u32,
    updated_at: String,
}

#[derive(Serialize)]
struct ExportMessage<'a> {
    role: Role,
    content: &'a Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    created_at: String,
}

/// The same form chrono's serde uses for stored turns, spelled out so exports never drift.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The opening of a session's export line, up to and including `"messages":[`.
pub fn export_head(
    id: &str,
    c: &SessionConfig,
    summary: Option<&Summary>,
) -> Result<Vec<u8>, DomainError> {
    let head = ExportHead {
        session_id: id,
        user_id: c.user_id.as_deref(),
        model: &c.model,
        fallback_models: &c.fallback_models,
        system_prompt: c.system_prompt.as_deref(),
        context_window: c.context_window,
        max_context_tokens: c.max_context_tokens,
        max_tokens: c.max_tokens,
        temperature: c.temperature,
        ttl_seconds: c.ttl_seconds,
        metadata: &c.metadata,
        max_cost_usd: c.max_cost_usd,
        tools: &c.tools,
        response_format: c.response_format.as_ref(),
        created_at: timestamp(&c.created_at),
        // A summary always covers at least one turn; `upto` counts the turns covered.
        summary: summary.filter(|s| s.upto > 0).map(|s| ExportSummary {
            text: &s.text,
            upto_message_index: s.upto - 1,
            tokens: s.tokens,
            updated_at: timestamp(&s.updated_at),
        }),
    };
    let mut out = serde_json::to_vec(&head).map_err(|e| DomainError::Encoding(e.to_string()))?;
    out.pop(); // the closing brace: the messages follow
    out.extend_from_slice(br#","messages":["#);
    Ok(out)
}

/// Appends one message of an export line (with its leading comma unless it is the first).
pub fn export_message(out: &mut Vec<u8>, turn: &Turn, first: bool) -> Result<(), DomainError> {
    if !first {
        out.push(b',');
    }
    let m = &turn.message;
    let message = ExportMessage {
        role: m.role,
        content: &m.content,
        name: m.name.as_deref(),
        tool_calls: &m.tool_calls,
        tool_call_id: m.tool_call_id.as_deref(),
        refusal: m.refusal.as_deref(),
        created_at: timestamp(&turn.created_at),
    };
    serde_json::to_writer(&mut *out, &message).map_err(|e| DomainError::Encoding(e.to_string()))
}

/// The end of a session's export line.
pub const EXPORT_TAIL: &[u8] = b"]}\n";
