//! Anthropic's Messages API, behind the same chat vocabulary as every provider.
//!
//! The translation ([`request`], [`response`]) covers tools (`tool_use` / `tool_result`
//! blocks, streamed `input_json_delta`), `tool_choice`, images (base64 and URL) and PDF
//! files, `stop` → `stop_sequences`, `top_p`, system and developer turns (the top-level
//! `system`), and stop reasons. Structured output (`response_format` with a JSON schema,
//! or `json_object`) is asked for the way Anthropic supports it: one forced tool whose
//! input is the answer, given back to the caller as the answer's text. What the API cannot
//! honour (`seed`, `logprobs`, penalties, audio, …) is refused by name before anything is
//! sent ([`super::ProviderError::Unsupported`]), never dropped silently.

mod request;
mod response;

use async_trait::async_trait;

use super::{ChatRequest, ChatResponse, EventStream, HttpClient, Provider, ProviderError};

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

    async fn post(
        &self,
        body: &serde_json::Value,
        first_byte: Option<std::time::Duration>,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .client
            .get()
            .post(&self.endpoint)
            .header("anthropic-version", API_VERSION)
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        super::send(request, self.api_key.as_deref(), first_byte).await
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
        let wire = request::translate(request, false)?;
        let answer = self.post(&wire.body, request.first_byte_timeout).await?;
        let message: response::WireMessage = super::read_json(answer).await?;
        Ok(message.into_response(wire.answer_tool.as_deref()))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let wire = request::translate(request, true)?;
        let answer = self.post(&wire.body, request.first_byte_timeout).await?;
        let decoder = response::EventDecoder::new(wire.answer_tool);
        Ok(super::drive_sse(answer, decoder))
    }
}

#[cfg(test)]
mod tests;
