//! A built-in model that needs no network and no key: it repeats the last user message
//! and says how much context it received, which makes the context builder visible. It
//! calls no tools and ignores sampling parameters.

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{
    ChatRequest, ChatResponse, Delta, EventStream, Provider, ProviderError, StreamEvent, Usage,
};
use crate::domain::{
    message::{Message, Role},
    tokens::{REPLY_PRIMING_TOKENS, TokenCounter, Tokenizer},
};

/// Echo counts like the modern OpenAI models, so its numbers match a real upstream's.
const TOKENIZER: Tokenizer = Tokenizer::O200kBase;

#[derive(Clone, Copy, Debug, Default)]
pub struct EchoProvider;

impl EchoProvider {
    pub fn new() -> Self {
        Self
    }

    fn answer(request: &ChatRequest) -> ChatResponse {
        let counter = TokenCounter::shared();
        let prompt_tokens = request
            .messages
            .iter()
            .map(|message| counter.count_turn(TOKENIZER, message))
            .fold(REPLY_PRIMING_TOKENS, u32::saturating_add)
            .saturating_add(counter.count_tools(TOKENIZER, &request.options.tools));
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(|message| message.content.text())
            .unwrap_or_default();
        let content = format!(
            "{last_user}\n\n[echo: {} messages, {prompt_tokens} prompt tokens]",
            request.messages.len()
        );
        ChatResponse {
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens: counter.count_text(TOKENIZER, &content),
            }),
            message: Message::text(Role::Assistant, content),
            finish_reason: Some("stop".to_owned()),
            logprobs: None,
            system_fingerprint: None,
        }
    }
}

#[async_trait]
impl Provider for EchoProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        Ok(Self::answer(request))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let answer = Self::answer(request);
        let text = answer.message.content.text().into_owned();
        let mut events: Vec<_> = word_pieces(&text)
            .map(|piece| Ok(StreamEvent::Delta(Delta::text(piece))))
            .collect();
        events.push(Ok(StreamEvent::Done(answer)));
        Ok(futures_util::stream::iter(events).boxed())
    }
}

/// Each word with the whitespace after it, so the pieces join back to the exact text.
fn word_pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use futures_util::StreamExt;

    use super::*;

    fn request() -> ChatRequest {
        let message = |role, content: &str| Message::text(role, content);
        ChatRequest {
            model: "echo".to_owned(),
            messages: vec![
                message(Role::System, "be brief"),
                message(Role::User, "first question"),
                message(Role::Assistant, "first answer"),
                message(Role::User, "hello world"),
            ],
            max_tokens: None,
            temperature: None,
            options: Default::default(),
            first_byte_timeout: None,
        }
    }

    #[tokio::test]
    async fn echoes_the_last_user_message_with_context_size() {
        let answer = EchoProvider::new().complete(&request()).await.unwrap();
        let counter = TokenCounter::shared();
        let expected_prompt: u32 = request()
            .messages
            .iter()
            .map(|m| counter.count_turn(TOKENIZER, m))
            .sum::<u32>()
            + REPLY_PRIMING_TOKENS;
        let expected =
            format!("hello world\n\n[echo: 4 messages, {expected_prompt} prompt tokens]");
        assert_eq!(answer.message.content.text(), expected);
        let usage = answer.usage.unwrap();
        assert_eq!(usage.prompt_tokens, expected_prompt);
        assert_eq!(
            usage.completion_tokens,
            counter.count_text(TOKENIZER, &expected)
        );
    }

    #[tokio::test]
    async fn stream_pieces_rebuild_the_answer_and_end_with_done() {
        let complete = EchoProvider::new().complete(&request()).await.unwrap();
        let events: Vec<StreamEvent> = EchoProvider::new()
            .stream(&request())
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let (done, deltas) = events.split_last().unwrap();
        assert!(deltas.len() > 2);
        let joined: String = deltas
            .iter()
            .map(|event| match event {
                StreamEvent::Delta(piece) => piece.content.as_str(),
                StreamEvent::Done(_) => panic!("Done before the end"),
            })
            .collect();
        assert_eq!(joined, complete.message.content.text());
        assert_eq!(done, &StreamEvent::Done(complete));
    }
}
