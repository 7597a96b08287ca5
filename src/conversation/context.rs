//! Reads just enough history from the store and turns it into the upstream prompt.

use crate::{
    config::Settings,
    domain::{
        compaction::summary_turn_text,
        context::{ContextInput, build_context},
        message::{Message, Role, Turn},
        session::StoredSession,
        tokens::{TokenCounter, Tokenizer},
    },
    error::ApiError,
    llm::registry::Model,
    store::{Store, tail_len},
};

/// The prompt of one turn and how it was chosen.
#[derive(Debug)]
pub struct Assembled {
    /// System prompt, kept history, then the new turns.
    pub messages: Vec<Message>,
    pub tokens: u32,
    pub budget: u32,
    /// Stored turns after the summary's watermark left out of the prompt.
    pub dropped: u64,
    /// Some were left out because the token budget could not hold them.
    pub truncated: bool,
    /// How `messages` divides, so the prompt can be fitted to another model
    /// ([`Assembled::fitted`]): `head` system messages first (the system prompt and the
    /// summary, each when there is one), then `history` kept turns, the newest `pinned` of
    /// which must stay; the new turns after them.
    pub head: usize,
    pub history: usize,
    pub pinned: usize,
    /// The tokenizer `tokens` was counted with.
    pub tokenizer: Tokenizer,
    /// What the summary sent in place of the turns before its watermark costs (0: none).
    pub summary_tokens: u32,
    /// What the turns after the watermark cost, when all of them were sent; `None` when
    /// some were left out. What decides whether a compaction is due.
    pub unfolded_tokens: Option<u64>,
}

/// What a prompt is built around, besides the stored history.
pub struct Around<'a> {
    /// The turns this send adds (none for a preview), with their cost.
    pub new_turns: &'a [Message],
    pub new_tokens: u32,
    /// What the request's tool definitions cost.
    pub tools_tokens: u32,
    /// The newest stored turns that must be kept: the calls the new turns answer.
    pub pinned: usize,
    pub budget: u32,
    /// Replaces the session's system prompt for this prompt only.
    pub instructions: Option<&'a str>,
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

/// The budget of the session's own sends: `budget` with its answers' `max_tokens`.
pub fn session_budget(settings: &Settings, session: &StoredSession, model: &Model) -> u32 {
    let max_tokens = (session.config.max_tokens).unwrap_or(settings.sessions.default_max_tokens);
    budget(session, model, max_tokens)
}

/// The newest turns a context starts from, for a preview (a send gets them from `admit`).
pub async fn read_tail(store: &dyn Store, session: &StoredSession) -> Result<Vec<Turn>, ApiError> {
    let count = tail_len(&session.config, FIRST_CHUNK);
    Ok(store.recent_turns(&session.key(), count).await?)
}

/// Builds the context from `history`, the newest stored turns. Reads further back only
/// while the budget has room, so the cost follows the context size, not the length of the
/// conversation.
pub async fn assemble(
    store: &dyn Store,
    session: &StoredSession,
    model: &Model,
    around: &Around<'_>,
    mut history: Vec<Turn>,
) -> Result<Assembled, ApiError> {
    let counter = TokenCounter::shared();
    let system = around
        .instructions
        .or(session.config.system_prompt.as_deref());
    let system_tokens = system.map_or(0, |p| {
        counter.count_message(model.tokenizer, Role::System, p)
    });
    // A summary past the history (a fork of an older response) covers nothing of it.
    let summary = (session.summary.as_ref()).filter(|s| s.upto <= session.message_count);
    let floor = summary.map_or(0, |s| s.upto);
    let summary_tokens = summary.map_or(0, |s| s.tokens);
    let window = session.config.context_window.map(|w| w as usize);
    // Turns deleted as conversation items stay in place but are never sent; the store's
    // count of turns read is what tells whether older ones remain.
    let mut read = history.len() as u64;
    after_watermark(
        &mut history,
        session.message_count.saturating_sub(read),
        floor,
    );
    let plan = loop {
        let first_read = session.message_count.saturating_sub(read);
        let input = ContextInput {
            prefix_tokens: (system_tokens.saturating_add(around.tools_tokens))
                .saturating_add(summary_tokens),
            history: &history,
            history_complete: first_read <= floor,
            pinned: around.pinned,
            new_message_tokens: around.new_tokens,
            window,
            budget: around.budget,
        };
        let plan = build_context(&input)?;
        if first_read > floor && plan.wants_more_history(&input) {
            let wider = (read as usize).saturating_mul(4).max(FIRST_CHUNK);
            let mut wider = store.recent_turns(&session.key(), wider).await?;
            // A shorter list than the count says (a foreign writer) must not loop forever.
            if wider.len() as u64 > read {
                read = wider.len() as u64;
                after_watermark(
                    &mut wider,
                    session.message_count.saturating_sub(read),
                    floor,
                );
                history = wider;
                continue;
            }
        }
        break plan;
    };
    let kept = plan.kept_turns(&history);
    let all_sent = plan.dropped == 0 && session.message_count.saturating_sub(read) <= floor;
    let mut messages = Vec::with_capacity(kept.len() + around.new_turns.len() + 2);
    if let Some(prompt) = system {
        messages.push(Message::text(Role::System, prompt));
    }
    if let Some(summary) = summary {
        messages.push(Message::text(
            Role::System,
            summary_turn_text(&summary.text),
        ));
    }
    let messages_head = messages.len();
    messages.extend(kept.iter().map(|t| t.message.clone()));
    messages.extend(around.new_turns.iter().cloned());
    Ok(Assembled {
        messages,
        tokens: plan.tokens,
        budget: around.budget,
        dropped: (session.message_count - floor).saturating_sub(kept.len() as u64),
        truncated: plan.over_budget,
        head: messages_head,
        history: kept.len(),
        pinned: around.pinned.min(kept.len()),
        tokenizer: model.tokenizer,
        summary_tokens,
        unfolded_tokens: all_sent.then(|| kept.iter().map(|t| u64::from(t.tokens)).sum()),
    })
}

/// Keeps the turns of `history` (whose first is at position `first`) from the watermark
/// on, deleted ones left out.
fn after_watermark(history: &mut Vec<Turn>, first: u64, floor: u64) {
    let covered = usize::try_from(floor.saturating_sub(first)).unwrap_or(usize::MAX);
    history.drain(..covered.min(history.len()));
    history.retain(|turn| !turn.deleted);
}
