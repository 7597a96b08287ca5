//! Any OpenAI-compatible `/chat/completions` API (OpenAI, vLLM, llama.cpp, Ollama, …).
//!
//! Messages, tools and every documented parameter go out as the client gave them, and so
//! do top-level fields no documentation names (a provider's own extensions). Two roles
//! are respelled for compatibility: `developer` as `system` (which every such API knows,
//! and OpenAI treats alike), and a tool turn stored without a call id (history from
//! before tool calls were kept) as `user`, since a `tool` message must answer a call.

use async_trait::async_trait;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{
    ChatRequest, ChatResponse, Decoded, Delta, EventStream, HttpClient, Provider, ProviderError,
    SseDecoder, ToolCallDelta, Usage, assembly::Assembly,
};
use crate::domain::{
    message::{Message, Role},
    params::Params,
    tools::{ResponseFormat, Tool, ToolChoice},
};

pub struct OpenAiProvider {
    client: HttpClient,
    endpoint: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// `base_url` is the API root including its version, e.g. `https://api.openai.com/v1`.
    pub fn new(client: HttpClient, base_url: String, api_key: Option<String>) -> Self {
        let endpoint = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        Self {
            client,
            endpoint,
            api_key,
        }
    }

    async fn post(&self, body: &WireRequest<'_>) -> Result<reqwest::Response, ProviderError> {
        let mut request = self.client.get().post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let first_byte = body.first_byte_timeout;
        super::send(request, self.api_key.as_deref(), first_byte).await
    }
}

/// Keeps the key out of any `{:?}` that reaches a log.
impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint)
            .field("has_api_key", &self.api_key.is_some())
            .finish()
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.post(&WireRequest::new(request, false)).await?;
        let completion: Completion = super::read_json(response).await?;
        completion.into_response()
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let response = self.post(&WireRequest::new(request, true)).await?;
        Ok(super::drive_sse(response, ChunkDecoder::default()))
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "<[Tool]>::is_empty")]
    tools: &'a [Tool],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a ResponseFormat>,
    #[serde(flatten)]
    params: &'a Params,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
    #[serde(skip)]
    first_byte_timeout: Option<std::time::Duration>,
}

struct WireMessage<'a>(&'a Message);

impl Serialize for WireMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let message = self.0;
        let role = match message.role {
            Role::Developer => Role::System,
            Role::Tool if message.tool_call_id.is_none() => Role::User,
            other => other,
        };
        message.serialize_as(role.as_str(), s)
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> WireRequest<'a> {
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let options = &request.options;
        Self {
            model: &request.model,
            messages: request.messages.iter().map(WireMessage).collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream,
            // Without this a streamed answer carries no token usage at all.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: &options.tools,
            tool_choice: options.tool_choice.as_ref(),
            response_format: options.response_format.as_ref(),
            params: &options.params,
            extra: &options.extra,
            first_byte_timeout: request.first_byte_timeout,
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    #[serde(default)]
    system_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Clone, Copy, Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

impl Completion {
    fn into_response(self) -> Result<ChatResponse, ProviderError> {
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Protocol("completion without choices".into()))?;
        Ok(ChatResponse {
            message: Message {
                role: Role::Assistant,
                ..choice.message
            },
            usage: self.usage.map(Usage::from),
            finish_reason: choice.finish_reason,
            logprobs: choice.logprobs.filter(|l| !l.is_null()),
            system_fingerprint: self.system_fingerprint,
        })
    }
}

#[derive(Deserialize)]
struct Chunk {
    /// Empty in the final usage chunk, but always present.
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    #[serde(default)]
    system_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireCallDelta>>,
}

#[derive(Deserialize)]
struct WireCallDelta {
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// Collects the answer while passing each piece on. The answer is complete at `[DONE]`,
/// or when the stream ends after a chunk with a `finish_reason` (some servers never send
/// the terminator); a stream that ends before any finish was cut.
#[derive(Default)]
struct ChunkDecoder {
    assembly: Assembly,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    system_fingerprint: Option<String>,
}

impl SseDecoder for ChunkDecoder {
    fn decode(&mut self, event: &eventsource_stream::Event) -> Result<Decoded, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Decoded::Finished(self.assembly.finish(
                self.usage,
                self.finish_reason.take(),
                self.system_fingerprint.take(),
            )));
        }
        let chunk: Chunk =
            serde_json::from_str(&event.data).map_err(|err| chunk_error(&event.data, &err))?;
        self.usage = chunk.usage.map(Usage::from).or(self.usage);
        if chunk.system_fingerprint.is_some() {
            self.system_fingerprint = chunk.system_fingerprint;
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(Decoded::Skip);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        let delta = Delta {
            content: choice.delta.content.unwrap_or_default(),
            refusal: choice.delta.refusal.unwrap_or_default(),
            tool_calls: (choice.delta.tool_calls.unwrap_or_default().into_iter())
                .map(|call| {
                    let function = call.function;
                    ToolCallDelta {
                        index: call.index,
                        id: call.id,
                        name: function.as_ref().and_then(|f| f.name.clone()),
                        arguments: function.and_then(|f| f.arguments).unwrap_or_default(),
                    }
                })
                .collect(),
            logprobs: choice.logprobs.filter(|l| !l.is_null()),
        };
        if delta.is_empty() {
            return Ok(Decoded::Skip);
        }
        self.assembly.add(&delta);
        Ok(Decoded::Delta(delta))
    }

    fn end(&mut self) -> Result<ChatResponse, ProviderError> {
        let Some(reason) = self.finish_reason.take() else {
            return Err(ProviderError::StreamCut);
        };
        Ok(self
            .assembly
            .finish(self.usage, Some(reason), self.system_fingerprint.take()))
    }
}

/// Some servers report a failure mid-stream as an error object instead of a chunk.
fn chunk_error(data: &str, err: &serde_json::Error) -> ProviderError {
    let is_error_object = serde_json::from_str::<serde_json::Value>(data)
        .is_ok_and(|value| value.get("error").is_some());
    if is_error_object {
        let (_, message) = super::classify_error_body(data);
        ProviderError::Protocol(format!(
            "error in stream: {}",
            super::sanitize(&message, None)
        ))
    } else {
        ProviderError::Protocol(format!("unreadable stream chunk: {err}"))
    }
}

#[cfg(test)]
mod tests;
