//! What chat turns and tool definitions cost in a prompt, counted as OpenAI counts them.
//!
//! A turn costs [`TOKENS_PER_MESSAGE`] of framing, its role, and its content; a `name`
//! adds its tokens and one more; each tool call adds its function name, its arguments and
//! one token; a refusal adds its text. Content parts count by kind: text and refusals by
//! their text, images by OpenAI's tile rule ([`image`]), and audio and files — whose cost
//! depends on decoding we do not do — by the fixed estimates below.
//!
//! Tool definitions are counted with the rule of OpenAI's token-counting cookbook, which
//! matches the API's own `prompt_tokens` (checked in the tests against its worked example).

use serde_json::Value;

use super::{TOKENS_PER_MESSAGE, TokenCounter, Tokenizer, image};
use crate::domain::{
    content::{Content, Part},
    message::Message,
    tools::{FunctionCall, Tool},
};

/// An audio part: about half a minute of speech at OpenAI's audio token rate.
pub const AUDIO_PART_TOKENS: u32 = 400;
/// A file part (a PDF, say): about two pages of text and their page images.
pub const FILE_PART_TOKENS: u32 = 1500;

/// The cookbook's constants: the GPT-4 / GPT-3.5 family frames functions with a little
/// more than the o200k models.
struct ToolFraming {
    function: i64,
    properties: i64,
    property: i64,
    enumeration: i64,
    enum_item: i64,
    end: i64,
}

fn framing(tokenizer: Tokenizer) -> ToolFraming {
    let function = match tokenizer {
        Tokenizer::O200kBase => 7,
        Tokenizer::Cl100kBase => 10,
    };
    ToolFraming {
        function,
        properties: 3,
        property: 3,
        enumeration: -3,
        enum_item: 3,
        end: 12,
    }
}

impl TokenCounter {
    /// What one turn costs inside a chat prompt.
    pub fn count_turn(&self, tokenizer: Tokenizer, message: &Message) -> u32 {
        let count = |text: &str| self.count_text(tokenizer, text);
        let mut tokens = TOKENS_PER_MESSAGE
            .saturating_add(count(message.role.as_str()))
            .saturating_add(self.count_said(tokenizer, message));
        if let Some(name) = &message.name {
            tokens = tokens.saturating_add(count(name)).saturating_add(1);
        }
        tokens
    }

    /// What the model wrote in a turn: content, calls and refusal, without the framing.
    /// An answer's completion tokens, when the upstream does not report them.
    pub fn count_said(&self, tokenizer: Tokenizer, message: &Message) -> u32 {
        let mut tokens = self.count_content(tokenizer, &message.content);
        let calls = message.tool_calls.iter().map(|call| &call.function);
        for call in calls.chain(message.function_call.as_ref()) {
            tokens = tokens.saturating_add(self.count_call(tokenizer, call));
        }
        if let Some(refusal) = &message.refusal {
            tokens = tokens.saturating_add(self.count_text(tokenizer, refusal));
        }
        tokens
    }

    fn count_call(&self, tokenizer: Tokenizer, call: &FunctionCall) -> u32 {
        self.count_text(tokenizer, &call.name)
            .saturating_add(self.count_text(tokenizer, &call.arguments))
            .saturating_add(1)
    }

    pub fn count_content(&self, tokenizer: Tokenizer, content: &Content) -> u32 {
        match content {
            Content::Text(text) => self.count_text(tokenizer, text),
            Content::Parts(parts) => parts
                .iter()
                .map(|part| match part {
                    Part::Text { text } => self.count_text(tokenizer, text),
                    Part::Refusal { refusal } => self.count_text(tokenizer, refusal),
                    Part::ImageUrl { image_url } => {
                        image::image_tokens(&image_url.url, image_url.detail)
                    }
                    Part::InputAudio { .. } => AUDIO_PART_TOKENS,
                    Part::File { .. } => FILE_PART_TOKENS,
                })
                .fold(0, u32::saturating_add),
        }
    }

    /// What the tool definitions of a request add to its prompt.
    pub fn count_tools(&self, tokenizer: Tokenizer, tools: &[Tool]) -> u32 {
        if tools.is_empty() {
            return 0;
        }
        let frame = framing(tokenizer);
        let count = |text: &str| i64::from(self.count_text(tokenizer, text));
        let mut total = 0;
        for tool in tools {
            let function = &tool.function;
            let description = function.description.as_deref().unwrap_or("");
            total += frame.function
                + count(&format!(
                    "{}:{}",
                    function.name,
                    without_period(description)
                ));
            let properties = function
                .parameters
                .as_ref()
                .and_then(|p| p.get("properties"))
                .and_then(Value::as_object);
            let Some(properties) = properties.filter(|p| !p.is_empty()) else {
                continue;
            };
            total += frame.properties;
            for (name, schema) in properties {
                total += frame.property;
                if let Some(items) = schema.get("enum").and_then(Value::as_array) {
                    total += frame.enumeration;
                    for item in items {
                        total += frame.enum_item + count(&plain(item));
                    }
                }
                let kind = schema.get("type").map(plain).unwrap_or_default();
                let description = schema.get("description").map(plain).unwrap_or_default();
                total += count(&format!("{name}:{kind}:{}", without_period(&description)));
            }
        }
        total += frame.end;
        u32::try_from(total.max(0)).unwrap_or(u32::MAX)
    }
}

fn without_period(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// A string as its text, anything else as its JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;
    use crate::domain::{message::Role, tokens::REPLY_PRIMING_TOKENS};

    const BOTH: [Tokenizer; 2] = [Tokenizer::O200kBase, Tokenizer::Cl100kBase];

    fn weather_tool() -> Tool {
        serde_json::from_value(json!({
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {"type": "string", "description": "The unit of temperature to return",
                                 "enum": ["celsius", "fahrenheit"]}
                    },
                    "required": ["location"]
                }
            }
        }))
        .unwrap()
    }

    /// OpenAI's cookbook example: these two messages with this tool are 101 prompt tokens
    /// for gpt-4o and 105 for gpt-4, as the API itself reported.
    #[test]
    fn tools_count_as_the_api_reported_in_the_cookbook() {
        let counter = TokenCounter::shared();
        let messages = [
            Message::text(
                Role::System,
                "You are a helpful assistant that can answer to questions about the weather.",
            ),
            Message::text(Role::User, "What's the weather like in San Francisco?"),
        ];
        for (tokenizer, expected) in [(Tokenizer::O200kBase, 101), (Tokenizer::Cl100kBase, 105)] {
            let prompt: u32 = messages
                .iter()
                .map(|m| counter.count_turn(tokenizer, m))
                .sum::<u32>()
                + REPLY_PRIMING_TOKENS
                + counter.count_tools(tokenizer, &[weather_tool()]);
            assert_eq!(prompt, expected, "{tokenizer:?}");
        }
        assert_eq!(counter.count_tools(Tokenizer::O200kBase, &[]), 0);
    }

    /// The reference for turns: `tiktoken-rs`' chat counting, which follows the same rule
    /// for names, tool calls and refusals.
    #[test]
    fn turns_with_calls_names_and_refusals_count_like_tiktoken() {
        use tiktoken_rs::{ChatCompletionRequestMessage, FunctionCall as RefCall};
        let call = |name: &str, args: &str| RefCall {
            name: name.into(),
            arguments: args.into(),
        };
        let assistant: Message = serde_json::from_value(json!({
            "role": "assistant", "content": "Checking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Oslo, NO\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"日本語 🎉\"}"}}
            ]
        }))
        .unwrap();
        let named = Message {
            name: Some("example_user".into()),
            ..Message::text(Role::User, "New synergies will help drive top-line growth.")
        };
        let refused = Message {
            refusal: Some("I can't help with that.".into()),
            ..Message::text(Role::Assistant, "")
        };
        let reference = [
            ChatCompletionRequestMessage {
                role: "assistant".into(),
                content: Some("Checking.".into()),
                tool_calls: vec![
                    call("get_current_weather", "{\"location\": \"Oslo, NO\"}"),
                    call("lookup", "{\"q\": \"日本語 🎉\"}"),
                ],
                ..Default::default()
            },
            ChatCompletionRequestMessage {
                role: "user".into(),
                name: Some("example_user".into()),
                content: Some("New synergies will help drive top-line growth.".into()),
                ..Default::default()
            },
            ChatCompletionRequestMessage {
                role: "assistant".into(),
                content: Some(String::new()),
                refusal: Some("I can't help with that.".into()),
                ..Default::default()
            },
        ];
        for (model, tokenizer) in [("gpt-4o", BOTH[0]), ("gpt-4", BOTH[1])] {
            for (ours, theirs) in [&assistant, &named, &refused].iter().zip(&reference) {
                let expected =
                    tiktoken_rs::num_tokens_from_messages(model, std::slice::from_ref(theirs))
                        .unwrap() as u32
                        - REPLY_PRIMING_TOKENS;
                assert_eq!(
                    TokenCounter::shared().count_turn(tokenizer, ours),
                    expected,
                    "{model}: {theirs:?}"
                );
            }
        }
    }

    #[test]
    fn parts_count_by_kind() {
        let counter = TokenCounter::shared();
        let content: Content = serde_json::from_value(json!([
            {"type": "text", "text": "hello world"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}}
        ]))
        .unwrap();
        let expected = 2 + image::LOW_DETAIL_TOKENS + AUDIO_PART_TOKENS + FILE_PART_TOKENS;
        for tokenizer in BOTH {
            assert_eq!(counter.count_content(tokenizer, &content), expected);
        }
    }

    #[test]
    fn plain_text_turns_cost_what_count_message_says() {
        let counter = TokenCounter::shared();
        for tokenizer in BOTH {
            for role in [
                Role::System,
                Role::Developer,
                Role::User,
                Role::Assistant,
                Role::Tool,
            ] {
                let message = Message::text(role, "one two three");
                assert_eq!(
                    counter.count_turn(tokenizer, &message),
                    counter.count_message(tokenizer, role, "one two three")
                );
            }
        }
    }
}
