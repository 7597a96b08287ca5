//! The whole answer rebuilt from its streamed pieces: text, refusal, and tool calls whose
//! arguments arrive in fragments, each addressed by the call's index.

use serde_json::{Value, json};

use super::{ChatResponse, Delta, Usage};
use crate::domain::{
    message::{Message, Role},
    tools::{FunctionCall, ToolCall},
};

#[derive(Default)]
pub(crate) struct Assembly {
    content: String,
    refusal: String,
    calls: Vec<(u32, ToolCall)>,
    logprobs: Vec<Value>,
}

impl Assembly {
    pub(crate) fn add(&mut self, delta: &Delta) {
        self.content.push_str(&delta.content);
        self.refusal.push_str(&delta.refusal);
        for piece in &delta.tool_calls {
            let call = match self.calls.iter_mut().find(|(i, _)| *i == piece.index) {
                Some((_, call)) => call,
                None => {
                    self.calls.push((piece.index, empty_call()));
                    let last = self.calls.len() - 1;
                    &mut self.calls[last].1
                }
            };
            if let Some(id) = &piece.id {
                call.id.clone_from(id);
            }
            if let Some(name) = &piece.name {
                call.function.name.push_str(name);
            }
            call.function.arguments.push_str(&piece.arguments);
        }
        if let Some(Value::Array(entries)) = delta.logprobs.as_ref().and_then(|l| l.get("content"))
        {
            self.logprobs.extend(entries.iter().cloned());
        }
    }

    pub(crate) fn finish(
        &mut self,
        usage: Option<Usage>,
        finish_reason: Option<String>,
        system_fingerprint: Option<String>,
    ) -> ChatResponse {
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|(index, _)| *index);
        let refusal = std::mem::take(&mut self.refusal);
        let logprobs = std::mem::take(&mut self.logprobs);
        ChatResponse {
            message: Message {
                tool_calls: calls.into_iter().map(|(_, call)| call).collect(),
                refusal: (!refusal.is_empty()).then_some(refusal),
                ..Message::text(Role::Assistant, std::mem::take(&mut self.content))
            },
            usage,
            finish_reason,
            logprobs: (!logprobs.is_empty()).then(|| json!({ "content": logprobs })),
            system_fingerprint,
        }
    }
}

fn empty_call() -> ToolCall {
    ToolCall {
        id: String::new(),
        kind: "function".into(),
        function: FunctionCall::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::llm::ToolCallDelta;

    #[test]
    fn fragments_join_into_whole_calls_in_index_order() {
        let mut assembly = Assembly::default();
        let piece = |index, id: Option<&str>, name: Option<&str>, args: &str| Delta {
            tool_calls: vec![ToolCallDelta {
                index,
                id: id.map(str::to_string),
                name: name.map(str::to_string),
                arguments: args.into(),
            }],
            ..Delta::default()
        };
        assembly.add(&Delta::text("Let me check. "));
        assembly.add(&piece(1, Some("call_b"), Some("time"), ""));
        assembly.add(&piece(0, Some("call_a"), Some("weather"), "{\"ci"));
        assembly.add(&piece(0, None, None, "ty\":\"Oslo\"}"));
        assembly.add(&piece(1, None, None, "{}"));
        let answer = assembly.finish(None, Some("tool_calls".into()), None);
        let calls = &answer.message.tool_calls;
        assert_eq!(answer.message.content.text(), "Let me check. ");
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.name.as_str()),
            ("call_a", "weather")
        );
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("call_b", "{}")
        );
        assert_eq!(answer.message.refusal, None);
    }
}
