//! OpenAI's chat-completions formats: the request we accept, the completion and the SSE
//! chunks we answer with. Only what the official SDKs send and read; parameters we cannot
//! honour are refused by name rather than silently ignored.

use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        message::Role,
        tokens::{REPLY_PRIMING_TOKENS, TokenCounter, Tokenizer},
    },
    error::ApiError,
    llm::{ChatMessage, Usage},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`; wins when both are sent.
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub n: Option<u32>,
    /// An end-user id for the provider's abuse monitoring; accepted, not forwarded.
    #[allow(dead_code)]
    pub user: Option<String>,
    /// This service's extension: the messages are only the new turn of this session.
    pub session_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessage {
    pub role: WireRole,
    pub content: Option<Content>,
    /// Accepted as the SDKs send them; plain turns carry neither upstream.
    #[allow(dead_code)]
    pub name: Option<String>,
    #[allow(dead_code)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl ChatCompletionRequest {
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    pub fn max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks what the typed decoding could not.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "at least one message"));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only 1 choice is supported"));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
        }
        if self.max_tokens() == Some(0) {
            return Err(ApiError::invalid("max_tokens", "must be at least 1"));
        }
        Ok(())
    }

    /// Every message as given, for a stateless call.
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        self.messages
            .iter()
            .enumerate()
            .map(|(i, message)| {
                Ok(ChatMessage {
                    role: message.role.into(),
                    content: message.text(i)?,
                })
            })
            .collect()
    }
}

impl WireMessage {
    /// Text content; parts are joined. Images, audio and files are refused.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        let field = || format!("messages[{index}].content");
        match &self.content {
            None if self.role == WireRole::Assistant => Ok(String::new()),
            None => Err(ApiError::invalid(field(), "content is required")),
            Some(Content::Text(text)) => Ok(text.clone()),
            Some(Content::Parts(parts)) => {
                let texts: Option<Vec<&str>> = parts
                    .iter()
                    .map(|p| (p.kind == "text").then_some(p.text.as_deref()).flatten())
                    .collect();
                texts
                    .map(|t| t.join("\n"))
                    .ok_or_else(|| ApiError::invalid(field(), "only text parts are supported"))
            }
        }
    }
}

impl From<WireRole> for Role {
    fn from(role: WireRole) -> Role {
        match role {
            WireRole::System | WireRole::Developer => Role::System,
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
            WireRole::Tool => Role::Tool,
        }
    }
}

/// Fields every completion and chunk of one answer share.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub id: String,
    pub created: i64,
    /// The configured name of the model that actually answered.
    pub model: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(usage: Usage) -> Self {
        WireUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
        }
    }
}

/// A non-streaming answer: `object: "chat.completion"`.
pub fn completion(
    head: &Head,
    content: &str,
    finish: Option<&str>,
    usage: Usage,
) -> serde_json::Value {
    serde_json::json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(finish),
        }],
        "usage": WireUsage::from(usage),
        "system_fingerprint": null,
    })
}

/// One streamed piece: `object: "chat.completion.chunk"`, as a `data:` line.
pub fn chunk(head: &Head, delta: serde_json::Value, finish: Option<&str>) -> String {
    let body = serde_json::json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    format!("data: {body}\n\n")
}

/// The last chunk when the client asked for `stream_options.include_usage`.
pub fn usage_chunk(head: &Head, usage: Usage) -> String {
    let body = serde_json::json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [],
        "usage": WireUsage::from(usage),
    });
    format!("data: {body}\n\n")
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Providers say it in their own words (Anthropic: `end_turn`, `max_tokens`); OpenAI
/// clients expect OpenAI's.
pub fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length" | "max_tokens") => "length",
        Some("content_filter" | "refusal") => "content_filter",
        Some("tool_calls" | "tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// What a prompt costs when the upstream did not say (some servers never report usage).
pub fn estimate_usage(tokenizer: Tokenizer, prompt: &[ChatMessage], answer: &str) -> Usage {
    let counter = TokenCounter::shared();
    let prompt_tokens = prompt
        .iter()
        .map(|m| counter.count_message(tokenizer, m.role, &m.content))
        .fold(REPLY_PRIMING_TOKENS, u32::saturating_add);
    Usage {
        prompt_tokens,
        completion_tokens: counter.count_text(tokenizer, answer),
    }
}
