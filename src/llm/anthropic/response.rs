//! A Messages API answer, whole or streamed, as a chat answer with OpenAI's finish reasons.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    domain::{
        message::{Message, Role},
        tools::{FunctionCall, ToolCall},
    },
    llm::{
        ChatResponse, Decoded, Delta, ProviderError, SseDecoder, ToolCallDelta, Usage,
        assembly::Assembly,
    },
};

#[derive(Deserialize)]
pub(super) struct WireMessage {
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, and block types added after this was written.
    #[serde(other)]
    Other,
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

/// Anthropic's stop reasons in OpenAI's words. A structured answer arrives as a forced
/// tool call but is, to the caller, an ordinary finished answer.
fn finish_reason(stop_reason: Option<&str>, structured: bool) -> Option<String> {
    let reason = match stop_reason? {
        "tool_use" if structured => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    };
    Some(reason.to_string())
}

impl WireMessage {
    /// `answer_tool`: the forced tool whose input is the structured answer, if any.
    pub(super) fn into_response(self, answer_tool: Option<&str>) -> ChatResponse {
        let mut message = Message::text(Role::Assistant, "");
        let mut text = String::new();
        for block in self.content {
            match block {
                Block::Text { text: piece } => text.push_str(&piece),
                Block::ToolUse { name, input, .. } if Some(name.as_str()) == answer_tool => {
                    text.push_str(&input.to_string());
                }
                Block::ToolUse { id, name, input } => message.tool_calls.push(ToolCall {
                    id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                }),
                Block::Other => {}
            }
        }
        message.content = text.into();
        ChatResponse {
            message,
            usage: self.usage.map(|usage| Usage {
                prompt_tokens: usage.prompt_tokens(),
                completion_tokens: usage.output_tokens,
            }),
            finish_reason: finish_reason(self.stop_reason.as_deref(), answer_tool.is_some()),
            logprobs: None,
            system_fingerprint: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u32,
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
    /// `ping`, block stop, and event types added after this was written.
    #[serde(other)]
    Ignored,
}

#[derive(Deserialize)]
struct StartedMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    /// Thinking and signature deltas, and delta types added after this was written.
    #[serde(other)]
    Other,
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
pub(super) struct EventDecoder {
    answer_tool: Option<String>,
    assembly: Assembly,
    /// Block index → index among the tool calls (OpenAI numbers calls, not blocks).
    call_blocks: Vec<u32>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    stop_reason: Option<String>,
}

impl EventDecoder {
    pub(super) fn new(answer_tool: Option<String>) -> EventDecoder {
        EventDecoder {
            answer_tool,
            assembly: Assembly::default(),
            call_blocks: Vec::new(),
            prompt_tokens: None,
            completion_tokens: None,
            stop_reason: None,
        }
    }

    fn call_index(&self, block: u32) -> Option<u32> {
        let position = self.call_blocks.iter().position(|b| *b == block)?;
        u32::try_from(position).ok()
    }

    fn delta(&mut self, delta: Delta) -> Decoded {
        self.assembly.add(&delta);
        Decoded::Delta(delta)
    }

    fn finish(&mut self) -> ChatResponse {
        let usage =
            (self.prompt_tokens.is_some() || self.completion_tokens.is_some()).then(|| Usage {
                prompt_tokens: self.prompt_tokens.unwrap_or(0),
                completion_tokens: self.completion_tokens.unwrap_or(0),
            });
        let reason = finish_reason(self.stop_reason.as_deref(), self.answer_tool.is_some());
        self.assembly.finish(usage, reason, None)
    }
}

impl SseDecoder for EventDecoder {
    fn decode(&mut self, event: &eventsource_stream::Event) -> Result<Decoded, ProviderError> {
        let parsed: WireEvent = serde_json::from_str(&event.data)
            .map_err(|err| ProviderError::Protocol(format!("unreadable stream event: {err}")))?;
        let structured = self.answer_tool.is_some();
        match parsed {
            WireEvent::MessageStart { message } => {
                self.prompt_tokens = message.usage.map(|usage| usage.prompt_tokens());
            }
            WireEvent::ContentBlockStart {
                index,
                content_block: Block::ToolUse { id, name, .. },
            } if !structured => {
                self.call_blocks.push(index);
                let call = ToolCallDelta {
                    index: self.call_index(index).unwrap_or_default(),
                    id: Some(id),
                    name: Some(name),
                    arguments: String::new(),
                };
                return Ok(self.delta(Delta {
                    tool_calls: vec![call],
                    ..Delta::default()
                }));
            }
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    return Ok(self.delta(Delta::text(text)));
                }
                // The structured answer is the forced tool's input, streamed as text.
                BlockDelta::InputJsonDelta { partial_json }
                    if structured && !partial_json.is_empty() =>
                {
                    return Ok(self.delta(Delta::text(partial_json)));
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    if let Some(call) = self.call_index(index) {
                        let piece = ToolCallDelta {
                            index: call,
                            arguments: partial_json,
                            ..ToolCallDelta::default()
                        };
                        return Ok(self.delta(Delta {
                            tool_calls: vec![piece],
                            ..Delta::default()
                        }));
                    }
                }
                _ => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason.or(self.stop_reason.take());
                // `output_tokens` here is cumulative: the last one is the total.
                if let Some(usage) = usage {
                    self.completion_tokens = Some(usage.output_tokens);
                }
            }
            WireEvent::MessageStop => return Ok(Decoded::Finished(self.finish())),
            WireEvent::Error { error } => return Err(stream_error(&error)),
            WireEvent::ContentBlockStart { .. } | WireEvent::Ignored => {}
        }
        Ok(Decoded::Skip)
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
        kind: crate::llm::status_kind(&format!("{} {}", error.kind, error.message)),
        message: crate::llm::sanitize(&error.message, None),
    }
}
