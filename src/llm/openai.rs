//! Any OpenAI-compatible `/chat/completions` API (OpenAI, vLLM, llama.cpp, Ollama, …).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ChatRequest, ChatResponse, Decoded, EventStream, HttpClient, Provider, ProviderError,
    SseDecoder, Usage,
};
use crate::domain::message::Role;

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
        super::send(request, self.api_key.as_deref()).await
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
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> WireRequest<'a> {
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let messages = request
            .messages
            .iter()
            .map(|message| WireMessage {
                role: wire_role(message.role),
                content: &message.content,
            })
            .collect();
        Self {
            model: &request.model,
            messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream,
            // Without this a streamed answer carries no token usage at all.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

/// A `tool` message must answer a `tool_call_id`, which plain stored turns do not have,
/// so tool output is passed on as user content.
fn wire_role(role: Role) -> &'static str {
    match role {
        Role::Tool => Role::User.as_str(),
        other => other.as_str(),
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    /// `null` when the model answered only with tool calls or a refusal.
    content: Option<String>,
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
            content: choice.message.content.unwrap_or_default(),
            usage: self.usage.map(Usage::from),
            finish_reason: choice.finish_reason,
        })
    }
}

#[derive(Deserialize)]
struct Chunk {
    /// Empty in the final usage chunk, but always present.
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
}

/// Collects the answer while passing each piece on; the answer is complete only at `[DONE]`.
#[derive(Default)]
struct ChunkDecoder {
    content: String,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl SseDecoder for ChunkDecoder {
    fn decode(&mut self, event: &eventsource_stream::Event) -> Result<Decoded, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Decoded::Finished(ChatResponse {
                content: std::mem::take(&mut self.content),
                usage: self.usage,
                finish_reason: self.finish_reason.take(),
            }));
        }
        let chunk: Chunk =
            serde_json::from_str(&event.data).map_err(|err| chunk_error(&event.data, &err))?;
        self.usage = chunk.usage.map(Usage::from).or(self.usage);
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(Decoded::Skip);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        match choice.delta.content {
            Some(piece) if !piece.is_empty() => {
                self.content.push_str(&piece);
                Ok(Decoded::Delta(piece))
            }
            _ => Ok(Decoded::Skip),
        }
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
