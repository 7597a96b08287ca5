//! The prompt of a send fitted to another model of its chain. It was built for the first
//! model; a fallback with a smaller window, or a tokenizer that counts the same text as
//! more tokens, would refuse it. Only the oldest history is left out (a fallback never
//! gets turns the first model did not), by the same rules as the context builder's.

use chrono::DateTime;

use super::context::Assembled;
use crate::domain::{
    context::{ContextInput, build_context},
    message::{Message, Turn},
    tokens::{TokenCounter, Tokenizer},
    tools::Tool,
};

impl Assembled {
    /// The prompt for a model counting with `tokenizer` within `budget` tokens. The one
    /// built when it fits as it is (no counting then: that is every first attempt); as it
    /// is too when even the system prompt and new turns overflow, so that the model's own
    /// refusal moves the chain on.
    pub fn fitted(&self, tokenizer: Tokenizer, tools: &[Tool], budget: u32) -> Vec<Message> {
        if tokenizer == self.tokenizer && budget >= self.tokens {
            return self.messages.clone();
        }
        let counter = TokenCounter::shared();
        let start = self.head;
        let end = (start + self.history).min(self.messages.len());
        let (Some(head), Some(kept), Some(new)) = (
            self.messages.get(..start),
            self.messages.get(start..end),
            self.messages.get(end..),
        ) else {
            return self.messages.clone();
        };
        let cost = |messages: &[Message]| {
            (messages.iter()).fold(0u32, |sum, m| {
                sum.saturating_add(counter.count_turn(tokenizer, m))
            })
        };
        let mut history: Vec<Turn> = (kept.iter())
            .map(|m| {
                let tokens = counter.count_turn(tokenizer, m);
                Turn::new(String::new(), m.clone(), DateTime::UNIX_EPOCH, tokens)
            })
            .collect();
        let input = ContextInput {
            prefix_tokens: cost(head).saturating_add(counter.count_tools(tokenizer, tools)),
            history: &history,
            // What the first model kept is all there is to choose from.
            history_complete: true,
            pinned: self.pinned,
            new_message_tokens: cost(new),
            window: None,
            budget,
        };
        let Ok(plan) = build_context(&input) else {
            return self.messages.clone();
        };
        let mut messages = Vec::with_capacity(start + plan.kept + new.len());
        messages.extend_from_slice(head);
        messages.extend(history.drain(plan.first_kept..).map(|turn| turn.message));
        messages.extend_from_slice(new);
        messages
    }
}
