//! Reads just enough history from the store and turns it into the upstream prompt.

use crate::{
    domain::{
        context::{ContextInput, build_context},
        message::{Role, Turn},
        session::StoredSession,
        tokens::TokenCounter,
    },
    error::ApiError,
    llm::{ChatMessage, registry::Model},
    store::{Store, tail_len},
};

/// The prompt of one turn and how it was chosen.
#[derive(Debug)]
pub struct Assembled {
    /// System prompt, kept history, then the new message (when there is one).
    pub messages: Vec<ChatMessage>,
    pub tokens: u32,
    pub budget: u32,
    /// Stored history turns left out of the prompt.
    pub dropped: u64,
}

/// The newest turns read first when the session has no `context_window`; grown fourfold
/// while the budget still has room.
pub const FIRST_CHUNK: usize = 32;

/// The prompt budget: the session's own, else what the model holds minus the reply.
pub fn budget(session: &StoredSession, model: &Model, max_tokens: u32) -> u32 {
    session
        .config
        .max_context_tokens
        .unwrap_or_else(|| model.context_tokens.saturating_sub(max_tokens))
}

/// The newest turns a context starts from, for a preview (a send gets them from `admit`).
pub async fn read_tail(store: &dyn Store, session: &StoredSession) -> Result<Vec<Turn>, ApiError> {
    let count = tail_len(&session.config, FIRST_CHUNK);
    Ok(store.recent_turns(&session.id, count).await?)
}

/// Builds the context for `new_message` (or for a preview when it is `None`) from
/// `history`, the newest stored turns. Reads further back only while the budget has room,
/// so the cost follows the context size, not the length of the conversation.
pub async fn assemble(
    store: &dyn Store,
    session: &StoredSession,
    model: &Model,
    new_message: Option<(&str, u32)>,
    budget: u32,
    mut history: Vec<Turn>,
) -> Result<Assembled, ApiError> {
    let counter = TokenCounter::shared();
    let system = session.config.system_prompt.as_deref();
    let system_tokens = system.map(|p| counter.count_message(model.tokenizer, Role::System, p));
    let window = session.config.context_window.map(|w| w as usize);
    let plan = loop {
        let input = ContextInput {
            system_tokens,
            history: &history,
            new_message_tokens: new_message.map_or(0, |(_, tokens)| tokens),
            window,
            budget,
        };
        let plan = build_context(&input).map_err(|e| ApiError::ContextExceeded {
            max_tokens: e.max_tokens,
            current_tokens: e.current_tokens,
        })?;
        let more_stored = (history.len() as u64) < session.message_count;
        if more_stored && plan.wants_more_history(&input) {
            let wider = history.len().saturating_mul(4).max(FIRST_CHUNK);
            let wider = store.recent_turns(&session.id, wider).await?;
            // A shorter list than the count says (a foreign writer) must not loop forever.
            if wider.len() > history.len() {
                history = wider;
                continue;
            }
        }
        break plan;
    };
    let kept = plan.kept_turns(&history);
    let mut messages = Vec::with_capacity(kept.len() + 2);
    if let Some(prompt) = system {
        messages.push(ChatMessage {
            role: Role::System,
            content: prompt.to_string(),
        });
    }
    messages.extend(kept.iter().map(|t| ChatMessage {
        role: t.role,
        content: t.content.clone(),
    }));
    if let Some((content, _)) = new_message {
        messages.push(ChatMessage {
            role: Role::User,
            content: content.to_string(),
        });
    }
    Ok(Assembled {
        messages,
        tokens: plan.tokens,
        budget,
        dropped: session.message_count.saturating_sub(kept.len() as u64),
    })
}
