//! Upstream model providers.
//!
//! Every provider speaks the same small vocabulary: a [`ChatRequest`] in, a
//! [`ChatResponse`] (or a stream of [`StreamEvent`]s) out, and a [`ProviderError`]
//! that says what went wrong precisely enough for the router to decide between
//! retrying, falling back and giving up.

pub mod anthropic;
mod assembly;
pub mod breaker;
pub mod echo;
pub mod openai;
pub mod registry;
pub mod retry;
pub mod router;
pub mod timing;
mod window;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use serde_json::{Map, Value};

use crate::{
    domain::{
        message::Message,
        params::Params,
        tools::{ResponseFormat, Tool, ToolChoice},
    },
    per_thread::PerThread,
};

/// The upstream HTTP client: one per server worker (see [`crate::per_thread`]).
pub type HttpClient = Arc<PerThread<reqwest::Client>>;

/// Everything of a request besides its messages, length and temperature, as the client
/// gave it. Shared by every attempt of the chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub response_format: Option<ResponseFormat>,
    pub params: Params,
    /// Top-level fields no documentation names (a provider's own extensions, sent through
    /// an SDK's `extra_body`): forwarded to OpenAI-compatible upstreams only.
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The model name the upstream knows (the configured `upstream_name`).
    pub model: String,
    /// System prompt first (if any), then history, then the new turns.
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub options: Arc<Options>,
    /// How long to wait for the response headers; set by the router (see
    /// [`router::Router::complete`]), `None` for no bound of its own.
    pub first_byte_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    /// The assistant's turn: text, tool calls, refusal.
    pub message: Message,
    /// What the upstream reported; `None` when it reported nothing.
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
    pub system_fingerprint: Option<String>,
}

/// One streamed piece of an answer, in the shape of an OpenAI chunk's `delta`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    pub content: String,
    pub refusal: String,
    pub tool_calls: Vec<ToolCallDelta>,
    pub logprobs: Option<Value>,
}

/// A piece of the `index`-th tool call: the first one carries its id and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

impl Delta {
    pub fn text(content: impl Into<String>) -> Delta {
        Delta {
            content: content.into(),
            ..Delta::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.refusal.is_empty() && self.tool_calls.is_empty()
    }

    /// OpenAI's `delta` object: only the fields this piece carries.
    pub fn wire(&self) -> Value {
        let mut delta = Map::new();
        if !self.content.is_empty() {
            delta.insert("content".into(), self.content.clone().into());
        }
        if !self.refusal.is_empty() {
            delta.insert("refusal".into(), self.refusal.clone().into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(|call| {
                let mut function = Map::new();
                if let Some(name) = &call.name {
                    function.insert("name".into(), name.clone().into());
                }
                function.insert("arguments".into(), call.arguments.clone().into());
                let mut wire = serde_json::json!({ "index": call.index, "function": function });
                if let Some(id) = &call.id {
                    wire["id"] = id.clone().into();
                    wire["type"] = "function".into();
                }
                wire
            });
            delta.insert("tool_calls".into(), calls.collect());
        }
        Value::Object(delta)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Delta(Delta),
    /// The stream ended properly; carries the whole answer and the usage.
    Done(ChatResponse),
}

pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ProviderError {
    /// The upstream answered with a non-success status.
    #[error("upstream answered {status}: {message}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        kind: StatusKind,
        message: String,
    },
    #[error("could not reach the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer in time")]
    Timeout,
    /// A body or stream chunk we could not understand.
    #[error("malformed upstream response: {0}")]
    Protocol(String),
    /// The stream ended before its terminator.
    #[error("the upstream stream ended early")]
    StreamCut,
    /// The provider's API has no way to honour a parameter of the request; nothing was
    /// sent. Another model of the chain may honour it.
    #[error("{message}")]
    Unsupported { param: String, message: String },
}

impl ProviderError {
    pub(crate) fn unsupported(param: impl Into<String>, provider: &str) -> ProviderError {
        let param = param.into();
        let message = format!("`{param}` cannot be honoured by the {provider} API");
        ProviderError::Unsupported { param, message }
    }
}

/// Why an answer ended, in OpenAI's words whatever the provider said: `stop`, `length`,
/// `tool_calls`, `content_filter` (or `function_call` for the deprecated functions API).
/// Some servers say `stop` after calling tools; the calls decide.
pub fn finish_reason(reason: Option<&str>, answer: &Message) -> &'static str {
    match reason {
        Some("length" | "max_tokens") => "length",
        Some("content_filter" | "refusal") => "content_filter",
        Some("function_call") => "function_call",
        _ if !answer.tool_calls.is_empty() => "tool_calls",
        Some("tool_calls" | "tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// What an error status means, as far as the body tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    ContextLength,
    ContentFilter,
    Other,
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError>;
}

// Shared plumbing for the HTTP providers: error mapping and the SSE stream driver.

/// Error bodies are read up to this size; the summary is capped far below it anyway.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Long enough to say what went wrong, short enough for a log line or an error body.
const ERROR_MESSAGE_LIMIT: usize = 300;

const CONTEXT_LENGTH_MARKERS: [&str; 4] = [
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
];
const CONTENT_FILTER_MARKERS: [&str; 3] = ["content_filter", "content_policy", "content policy"];

/// Sends a request; a non-success status becomes [`ProviderError::Status`], headers that
/// take longer than `first_byte` a [`ProviderError::Timeout`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    api_key: Option<&str>,
    first_byte: Option<Duration>,
) -> Result<reqwest::Response, ProviderError> {
    let sent = request.send();
    let response = match first_byte {
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| ProviderError::Timeout)?,
        None => sent.await,
    }
    .map_err(transport_error)?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(status_error(response, api_key).await)
    }
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ProviderError> {
    let body = response.bytes().await.map_err(transport_error)?;
    serde_json::from_slice(&body).map_err(|err| ProviderError::Protocol(err.to_string()))
}

async fn status_error(response: reqwest::Response, api_key: Option<&str>) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = read_capped(response, ERROR_BODY_LIMIT).await;
    let (kind, message) = classify_error_body(&body);
    ProviderError::Status {
        status,
        retry_after,
        kind,
        message: sanitize(&message, api_key),
    }
}

async fn read_capped(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            // A broken error body still leaves the status worth reporting.
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(limit);
    String::from_utf8_lossy(&body).into_owned()
}

/// `Retry-After` as delay-seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// Reads the OpenAI (`{"error":{"message","type","code"}}`) and Anthropic
/// (`{"type":"error","error":{"type","message"}}`) error shapes, and plain text.
pub(crate) fn classify_error_body(body: &str) -> (StatusKind, String) {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let error = &parsed["error"];
    let message = error
        .as_str()
        .or(error["message"].as_str())
        .or(parsed["message"].as_str())
        .unwrap_or(body);
    let code = error["code"].as_str().unwrap_or_default();
    let error_type = error["type"].as_str().unwrap_or_default();
    let kind = status_kind(&format!("{code} {error_type} {message}"));
    (kind, message.to_owned())
}

/// Reads an error's code, type and message (in any order, in one string).
pub(crate) fn status_kind(error_text: &str) -> StatusKind {
    let haystack = error_text.to_lowercase();
    let mentions = |markers: &[&str]| markers.iter().any(|marker| haystack.contains(marker));
    if mentions(&CONTEXT_LENGTH_MARKERS) {
        StatusKind::ContextLength
    } else if mentions(&CONTENT_FILTER_MARKERS) {
        StatusKind::ContentFilter
    } else {
        StatusKind::Other
    }
}

/// One line, capped, with anything that looks like a credential removed: upstreams
/// echo (partly masked) keys back in authentication errors.
pub(crate) fn sanitize(text: &str, api_key: Option<&str>) -> String {
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|word| {
            if looks_like_secret(word, api_key) {
                "[redacted]"
            } else {
                word
            }
        })
        .collect();
    let line = words.join(" ");
    match line.char_indices().nth(ERROR_MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn looks_like_secret(word: &str, api_key: Option<&str>) -> bool {
    let contains_key = api_key.is_some_and(|key| !key.is_empty() && word.contains(key));
    let bare = word.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    contains_key || bare.starts_with("sk-") || word.contains("****")
}

pub(crate) fn transport_error(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        return ProviderError::Timeout;
    }
    let is_body = err.is_body() || err.is_decode();
    // The URL could carry credentials (`https://user:pass@host`); it is not needed here.
    let detail = sanitize(&error_chain(&err.without_url()), None);
    if is_body {
        ProviderError::Protocol(detail)
    } else {
        ProviderError::Connect(detail)
    }
}

/// reqwest's own message is generic ("error sending request"); the cause is in the chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a provider made of one server-sent event.
pub(crate) enum Decoded {
    Skip,
    Delta(Delta),
    /// The terminator arrived; nothing after it is read.
    Finished(ChatResponse),
}

pub(crate) trait SseDecoder: Send + 'static {
    fn decode(&mut self, event: &eventsource_stream::Event) -> Result<Decoded, ProviderError>;

    /// The events ran out before the terminator: a cut stream, unless the decoder has
    /// seen enough to call the answer complete.
    fn end(&mut self) -> Result<ChatResponse, ProviderError> {
        Err(ProviderError::StreamCut)
    }
}

/// Runs `decoder` over the response's events. The stream ends after `Done` or after the
/// first error; running out of events before the terminator is what
/// [`SseDecoder::end`] says.
pub(crate) fn drive_sse(response: reqwest::Response, decoder: impl SseDecoder) -> EventStream {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    let events = response.bytes_stream().eventsource().boxed();
    futures_util::stream::unfold(Some((events, decoder)), |state| async move {
        let (mut events, mut decoder) = state?;
        loop {
            let decoded = match events.next().await {
                None => decoder.end().map(Decoded::Finished),
                Some(Err(err)) => Err(stream_error(err)),
                Some(Ok(event)) => decoder.decode(&event),
            };
            return match decoded {
                Ok(Decoded::Skip) => continue,
                Ok(Decoded::Delta(delta)) => {
                    Some((Ok(StreamEvent::Delta(delta)), Some((events, decoder))))
                }
                Ok(Decoded::Finished(response)) => Some((Ok(StreamEvent::Done(response)), None)),
                Err(err) => Some((Err(err), None)),
            };
        }
    })
    .boxed()
}

fn stream_error(err: eventsource_stream::EventStreamError<reqwest::Error>) -> ProviderError {
    use eventsource_stream::EventStreamError;
    match err {
        EventStreamError::Transport(err) if err.is_timeout() => ProviderError::Timeout,
        // The connection broke mid-answer: to the caller that is a cut stream.
        EventStreamError::Transport(_) => ProviderError::StreamCut,
        EventStreamError::Utf8(err) => ProviderError::Protocol(err.to_string()),
        EventStreamError::Parser(err) => {
            ProviderError::Protocol(format!("bad SSE: {:?}", err.code))
        }
    }
}

/// A one-shot HTTP server on 127.0.0.1 that records the request it gets and answers
/// with canned bytes, so tests can send broken streams no real framework would.
#[cfg(test)]
pub(crate) mod fake_upstream;

#[cfg(test)]
mod tests;
