//! Anthropic's Messages API.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ChatRequest, ChatResponse, Decoded, EventStream, HttpClient, Provider, ProviderError,
    SseDecoder, Usage,
};
use crate::domain::message::Role;

const API_VERSION: &str = "2023-06-01";
/// The API requires `max_tokens`; this applies when the caller set none.
const DEFAULT_MAX_TOKENS: u32 = 1024;

pub struct AnthropicProvider {
    client: HttpClient,
    endpoint: String,
    api_key: Option<String>,
}

impl AnthropicProvider {
    /// `base_url` may be the host (`https://api.anthropic.com`, `/v1/messages` is added)
    /// or already end in the version (`…/v1`, only `/messages` is added).
    pub fn new(client: HttpClient, base_url: String, api_key: Option<String>) -> Self {
        let base = base_url.trim_end_matches('/');
        let endpoint = if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        Self {
            client,
            endpoint,
            api_key,
        }
    }

    async fn post(&self, body: &WireRequest<'_>) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .client
            .get()
            .post(&self.endpoint)
            .header("anthropic-version", API_VERSION)
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        super::send(request, self.api_key.as_deref()).await
    }
}

/// Keeps the key out of any `{:?}` that reaches a log.
impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &self.endpoint)
            .field("has_api_key", &self.api_key.is_some())
            .finish()
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.post(&WireRequest::new(request, false)).await?;
        let message: WireMessageResponse = super::read_json(response).await?;
        Ok(message.into_response())
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let response = self.post(&WireRequest::new(request, true)).await?;
        Ok(super::drive_sse(response, EventDecoder::default()))
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> WireRequest<'a> {
    /// System prompts are not messages in this API: they move to the `system` field.
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let (system, conversation): (Vec<_>, Vec<_>) = request
            .messages
            .iter()
            .partition(|message| message.role == Role::System);
        let system_texts: Vec<&str> = system.iter().map(|m| m.content.as_str()).collect();
        let messages = conversation
            .into_iter()
            .map(|message| WireMessage {
                role: wire_role(message.role),
                content: &message.content,
            })
            .collect();
        Self {
            model: &request.model,
            system: (!system_texts.is_empty()).then(|| system_texts.join("\n\n")),
            messages,
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: request.temperature,
            stream,
        }
    }
}

/// The API knows only `user` and `assistant`; tool output is user-side content.
fn wire_role(role: Role) -> &'static str {
    match role {
        Role::Assistant => "assistant",
        Role::User | Role::Tool | Role::System => "user",
    }
}

#[derive(Deserialize)]
struct WireMessageResponse {
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

/// Cached prompt tokens are reported apart from `input_tokens`, but are prompt all the same.
#[derive(Clone, Copy, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: u32,
}

impl WireUsage {
    fn prompt_tokens(&self) -> u32 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
    }
}

impl WireMessageResponse {
    fn into_response(self) -> ChatResponse {
        let content = self
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .map(|block| block.text.as_str())
            .collect();
        ChatResponse {
            content,
            usage: self.usage.map(|usage| Usage {
                prompt_tokens: usage.prompt_tokens(),
                completion_tokens: usage.output_tokens,
            }),
            finish_reason: self.stop_reason,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, block start/stop, and event types added after this was written.
    #[serde(other)]
    Ignored,
}

#[derive(Deserialize)]
struct StartedMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// Collects the answer while passing each piece on; complete only at `message_stop`.
#[derive(Default)]
struct EventDecoder {
    content: String,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    stop_reason: Option<String>,
}

impl SseDecoder for EventDecoder {
    fn decode(&mut self, event: &eventsource_stream::Event) -> Result<Decoded, ProviderError> {
        let parsed: WireEvent = serde_json::from_str(&event.data)
            .map_err(|err| ProviderError::Protocol(format!("unreadable stream event: {err}")))?;
        match parsed {
            WireEvent::MessageStart { message } => {
                self.prompt_tokens = message.usage.map(|usage| usage.prompt_tokens());
            }
            WireEvent::ContentBlockDelta { delta } if delta.kind == "text_delta" => {
                if !delta.text.is_empty() {
                    self.content.push_str(&delta.text);
                    return Ok(Decoded::Delta(delta.text));
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason.or(self.stop_reason.take());
                // `output_tokens` here is cumulative: the last one is the total.
                if let Some(usage) = usage {
                    self.completion_tokens = Some(usage.output_tokens);
                }
            }
            WireEvent::MessageStop => return Ok(Decoded::Finished(self.finish())),
            WireEvent::Error { error } => return Err(stream_error(&error)),
            WireEvent::ContentBlockDelta { .. } | WireEvent::Ignored => {}
        }
        Ok(Decoded::Skip)
    }
}

impl EventDecoder {
    fn finish(&mut self) -> ChatResponse {
        let usage =
            (self.prompt_tokens.is_some() || self.completion_tokens.is_some()).then(|| Usage {
                prompt_tokens: self.prompt_tokens.unwrap_or(0),
                completion_tokens: self.completion_tokens.unwrap_or(0),
            });
        ChatResponse {
            content: std::mem::take(&mut self.content),
            usage,
            finish_reason: self.stop_reason.take(),
        }
    }
}

/// An error event arrives after a 200 status; it is given the status the same error
/// would have had before the stream began, so callers can judge it the same way.
fn stream_error(error: &WireError) -> ProviderError {
    let status = match error.kind.as_str() {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    };
    ProviderError::Status {
        status,
        retry_after: None,
        kind: super::status_kind(&format!("{} {}", error.kind, error.message)),
        message: super::sanitize(&error.message, None),
    }
}

#[cfg(test)]
mod tests;
