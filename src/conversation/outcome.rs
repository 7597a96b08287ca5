//! Where a complete answer goes, whichever API asked for it: stored as a session's next
//! turns (by [`finish`]), or, for a call without a session, only metered.

use std::sync::Arc;

use serde_json::Value;

use super::{
    finish::{Part, SendResponse, finish},
    send::Prepared,
};
use crate::{
    auth::Caller,
    domain::{
        message::{Message, Role},
        tokens::{REPLY_PRIMING_TOKENS, TokenCounter, Tokenizer},
        tools::Tool,
    },
    error::ApiError,
    llm::{ChatResponse, Options, Usage, finish_reason, registry::Model},
    metering::{Estimate, Metering},
    state::AppState,
};

pub enum Destination {
    /// The session's next turns; usage as billed to the session.
    Session {
        prepared: Box<Prepared>,
        /// Position in the chain of the model that answers.
        index: usize,
        /// What models before it streamed of the answer before their streams broke.
        earlier: Vec<Part>,
    },
    /// Nothing stored; usage as reported, or counted when the upstream said nothing,
    /// and settled against the key's reservation.
    Stateless {
        model: Arc<Model>,
        prompt: Vec<Message>,
        options: Arc<Options>,
        metering: Metering,
    },
}

/// A complete answer, stored or metered.
pub struct Completed {
    pub message: Message,
    /// OpenAI's words: `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: &'static str,
    pub usage: Usage,
    /// The configured name of the model that answered.
    pub model: String,
    pub logprobs: Option<Value>,
    pub system_fingerprint: Option<String>,
    /// For a session: what the sessions API answers (ids, cost, context).
    pub sent: Option<SendResponse>,
}

impl Destination {
    pub fn session(prepared: Prepared, index: usize) -> Destination {
        Destination::Session {
            prepared: Box::new(prepared),
            index,
            earlier: Vec::new(),
        }
    }

    /// For an answer that may be continued on another model: the send, and the answering
    /// model's place in its chain. A call that keeps nothing is not continued.
    pub fn continuable(&self) -> Option<(&Prepared, usize)> {
        match self {
            Destination::Session {
                prepared, index, ..
            } => Some((prepared, *index)),
            Destination::Stateless { .. } => None,
        }
    }

    /// The model at `index` goes on with the answer after the one answering so far
    /// streamed `text` and broke.
    pub fn continued(&mut self, text: String, next: usize) {
        if let Destination::Session { index, earlier, .. } = self {
            earlier.push(Part {
                index: *index,
                text,
            });
            *index = next;
        }
    }

    pub async fn complete(
        self,
        state: &AppState,
        answer: ChatResponse,
    ) -> Result<Completed, ApiError> {
        let (logprobs, system_fingerprint) =
            (answer.logprobs.clone(), answer.system_fingerprint.clone());
        match self {
            Destination::Session {
                prepared,
                index,
                earlier,
            } => {
                let sent = finish(state, *prepared, earlier, index, answer).await?;
                Ok(Completed {
                    message: sent.assistant(),
                    finish_reason: sent.finish_reason,
                    usage: Usage {
                        prompt_tokens: sent.usage.prompt_tokens,
                        completion_tokens: sent.usage.completion_tokens,
                    },
                    model: sent.model_used.clone(),
                    logprobs,
                    system_fingerprint,
                    sent: Some(sent),
                })
            }
            Destination::Stateless {
                model,
                prompt,
                options,
                mut metering,
            } => {
                let usage = answer.usage.unwrap_or_else(|| {
                    estimate_usage(model.tokenizer, &prompt, &options.tools, &answer.message)
                });
                let cost = model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens);
                metering.settle(&model, usage, cost).await;
                Ok(Completed {
                    finish_reason: finish_reason(answer.finish_reason.as_deref(), &answer.message),
                    message: answer.message,
                    usage,
                    model: model.name.clone(),
                    logprobs,
                    system_fingerprint,
                    sent: None,
                })
            }
        }
    }

    /// The answer will not come: a session is given back at once.
    pub async fn abandon(&mut self) {
        if let Destination::Session { prepared, .. } = self {
            prepared.lease.release().await;
        }
    }
}

/// Reserves a stateless call's worst case from the key's tokens-per-minute and daily
/// budget, as a session send does; settled with what the answering model used.
pub async fn reserve(
    state: &AppState,
    caller: &Caller,
    chain: &[Arc<Model>],
    prompt: &[Message],
    tools: &[Tool],
    max_tokens: Option<u32>,
) -> Result<Metering, ApiError> {
    let primary = chain
        .first()
        .ok_or_else(|| ApiError::Internal("empty chain".into()))?;
    let nothing = Message::text(Role::Assistant, "");
    let prompt_tokens = estimate_usage(primary.tokenizer, prompt, tools, &nothing).prompt_tokens;
    let max_tokens = max_tokens.unwrap_or(state.settings.sessions.default_max_tokens);
    let estimate = Estimate::for_chain(chain, prompt_tokens, max_tokens);
    Metering::reserve(state, caller, &estimate).await
}

/// What a prompt and its answer cost when the upstream did not say (some servers never
/// report usage).
pub fn estimate_usage(
    tokenizer: Tokenizer,
    prompt: &[Message],
    tools: &[Tool],
    answer: &Message,
) -> Usage {
    let counter = TokenCounter::shared();
    let prompt_tokens = prompt
        .iter()
        .map(|m| counter.count_turn(tokenizer, m))
        .fold(REPLY_PRIMING_TOKENS, u32::saturating_add)
        .saturating_add(counter.count_tools(tokenizer, tools));
    Usage {
        prompt_tokens,
        completion_tokens: counter.count_said(tokenizer, answer),
    }
}
