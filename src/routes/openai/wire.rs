//! OpenAI's chat-completions formats: the request we accept, the completion and the SSE
//! chunks we answer with. Every documented parameter is validated and forwarded; fields no
//! documentation names are kept aside and forwarded to OpenAI-compatible upstreams only.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    conversation::outcome::Completed,
    domain::{
        message::Message,
        params::Params,
        tools::{self, ResponseFormat, Tool, ToolChoice},
    },
    error::ApiError,
    llm::{Delta, Options, Usage},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    /// OpenAI's messages: text or content parts, tool calls and their results.
    #[schema(value_type = Vec<Object>, min_items = 1)]
    pub messages: Vec<Message>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`; wins when both are sent.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// Only 1 is supported.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Tool>>,
    #[schema(value_type = Option<Value>)]
    pub tool_choice: Option<ToolChoice>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    /// This service's extension: the messages are only the new turns of this session.
    /// Never forwarded.
    pub session_id: Option<String>,
    /// The other sampling parameters, relayed (documented by OpenAI).
    #[serde(flatten)]
    #[schema(ignore)]
    pub params: Params,
    /// Top-level fields no documentation names (vLLM's `top_k`, an SDK's `extra_body`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
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
        let tools = self.tools.as_deref().unwrap_or_default();
        tools::validate(
            tools,
            self.tool_choice.as_ref(),
            self.response_format.as_ref(),
        )?;
        self.params.validate()?;
        Ok(())
    }

    /// Everything besides the messages, for the upstream request.
    pub fn options(&self) -> Options {
        Options {
            tools: self.tools.clone().unwrap_or_default(),
            tool_choice: self.tool_choice.clone(),
            response_format: self.response_format.clone(),
            params: self.params.clone(),
            extra: self.extra.clone(),
        }
    }
}

/// Fields every completion and chunk of one answer share.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: String,
    pub created: i64,
    /// The configured name of the model that actually answered.
    pub model: String,
    pub system_fingerprint: Option<String>,
}

/// What a completion reports of its answer.
pub struct Answer<'a> {
    pub message: &'a Message,
    pub finish_reason: &'static str,
    pub logprobs: Option<&'a Value>,
    pub system_fingerprint: Option<&'a str>,
    pub usage: Usage,
}

impl<'a> Answer<'a> {
    pub fn of(completed: &'a Completed) -> Answer<'a> {
        Answer {
            message: &completed.message,
            finish_reason: completed.finish_reason,
            logprobs: completed.logprobs.as_ref(),
            system_fingerprint: completed.system_fingerprint.as_deref(),
            usage: completed.usage,
        }
    }
}

fn wire_usage(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
    })
}

/// A non-streaming answer: `object: "chat.completion"`.
pub fn completion(head: &Head, answer: &Answer) -> Value {
    let mut message = serde_json::to_value(answer.message).unwrap_or_else(|_| json!({}));
    // OpenAI always says whether the model refused.
    if message.get("refusal").is_none() {
        message["refusal"] = Value::Null;
    }
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": answer.logprobs,
            "finish_reason": answer.finish_reason,
        }],
        "usage": wire_usage(answer.usage),
        "system_fingerprint": answer.system_fingerprint,
    })
}

/// One streamed piece: `object: "chat.completion.chunk"`, as a `data:` line.
pub fn chunk(head: &Head, delta: &Value, logprobs: Option<&Value>, finish: Option<&str>) -> String {
    let body = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": head.system_fingerprint,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    });
    format!("data: {body}\n\n")
}

/// The piece of an answer a delta carries.
pub fn delta_chunk(head: &Head, delta: &Delta) -> String {
    chunk(head, &delta.wire(), delta.logprobs.as_ref(), None)
}

/// The last chunk when the client asked for `stream_options.include_usage`.
pub fn usage_chunk(head: &Head, usage: Usage) -> String {
    let body = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [],
        "usage": wire_usage(usage),
    });
    format!("data: {body}\n\n")
}

pub const DONE: &str = "data: [DONE]\n\n";
