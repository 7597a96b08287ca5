//! Turns added to a conversation without asking a model (conversation items): under the
//! session's lease and by the same rules as a send, so they never interleave with one.

use chrono::Utc;

use super::{
    context::{FIRST_CHUNK, session_budget},
    lease::Lease,
    upstream,
};
use crate::{
    auth::Caller,
    domain::{
        compaction::unfolded_tokens,
        message::{Message, Turn, message_id},
        session::{UsageTotals, is_session_id, new_id, now_ms},
        tokens::TokenCounter,
        turns::{Batch, FieldName, check_new_turns, pending_calls},
    },
    error::ApiError,
    state::AppState,
    store::{Admission, AdmitRequest, Admitted, Commit, CommitOutcome},
};

/// Appends `turns` to the caller's session `id`; returns them as stored.
pub async fn append_turns(
    state: &AppState,
    caller: &Caller,
    id: &str,
    turns: Vec<Message>,
    field: FieldName<'_>,
) -> Result<Vec<Turn>, ApiError> {
    if !is_session_id(id) {
        return Err(ApiError::SessionNotFound);
    }
    let token = new_id();
    let request = AdmitRequest {
        tenant: &caller.tenant,
        lease_token: &token,
        lease_ms: state.settings.sessions.lease_seconds * 1000,
        claim: None,
        now_ms: now_ms(),
        tail: FIRST_CHUNK,
        // No model is asked: the commit follows at once, within the session's TTL.
        hold_ms: 0,
    };
    let at = caller.session(id);
    let Admitted { session, tail } = match state.store.admit(&at, &request).await? {
        Admission::Admitted(admitted) => *admitted,
        Admission::Busy { .. } => return Err(ApiError::SessionBusy { retry_after: 1 }),
        _ => return Err(ApiError::SessionNotFound),
    };
    let mut lease = Lease::new(state, &at, token, None);
    let max_bytes = state.settings.sessions.max_message_bytes;
    let checked = check_new_turns(&turns, pending_calls(&tail), max_bytes, field, Batch::Items);
    lease
        .release_on_err(checked.map_err(ApiError::from))
        .await?;
    let model = upstream::known_model(state, &session.config.model);
    let model = lease.release_on_err(model).await?;
    let tokenizer = model.tokenizer;
    let (counter, now) = (TokenCounter::shared(), Utc::now());
    let stored: Vec<Turn> = (turns.into_iter().zip(session.message_count..))
        .map(|(message, index)| {
            let tokens = counter.count_turn(tokenizer, &message);
            Turn::new(message_id(index), message, now, tokens)
        })
        .collect();
    let commit = Commit {
        lease_token: lease.token().to_string(),
        expected_len: session.message_count,
        turns: stored.clone(),
        usage: UsageTotals::default(),
        now_ms: now_ms(),
        idempotency: None,
    };
    match lease
        .release_on_err(state.store.commit(&at, &commit).await)
        .await?
    {
        CommitOutcome::Committed => {
            lease.committed();
            let floor = session.summary.as_ref().map_or(0, |s| s.upto);
            let added: u64 = stored.iter().map(|t| u64::from(t.tokens)).sum();
            let unfolded = unfolded_tokens(&tail, session.message_count, floor);
            let budget = session_budget(&state.settings, &session, &model);
            (state.compaction).after_commit(&session, unfolded.map(|t| t + added), budget);
            Ok(stored)
        }
        CommitOutcome::Missing => Err(ApiError::SessionNotFound),
        CommitOutcome::LeaseLost => Err(ApiError::SessionBusy { retry_after: 1 }),
    }
}
