//! Finding what an id names — the caller's own, or 404 exactly like an unknown id — and
//! which session a new response goes to (continuing, forking or starting one).

use std::ops::Range;

use chrono::Utc;
use serde_json::Value;

use super::{object, request::ResponsesRequest};
use crate::domain::ids;
use crate::{
    auth::Caller,
    conversation::context::{Around, assemble, budget, read_tail},
    domain::{
        message::{AnswerRecord, Message, Role, Turn},
        session::{StoredSession, now_ms},
        tokens::{REPLY_PRIMING_TOKENS, TokenCounter},
        transfer::ImportMode,
        turns::pending_calls,
    },
    error::ApiError,
    routes::owned_session,
    state::AppState,
    store::import::{ImportOutcome, ImportWrite},
};

/// A stored response: its session, and its answer turn at `index`.
pub struct Found {
    pub session: StoredSession,
    pub index: u64,
    pub turn: Turn,
}

pub async fn conversation(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<StoredSession, ApiError> {
    let session = ids::session_of_conversation(id).ok_or(ApiError::SessionNotFound)?;
    in_scope(caller, Some(session))?;
    owned_session(state, caller, session).await
}

pub async fn response(state: &AppState, caller: &Caller, id: &str) -> Result<Found, ApiError> {
    let (session, answer) = ids::parse_response_id(id).ok_or(ApiError::SessionNotFound)?;
    in_scope(caller, Some(session))?;
    let session = owned_session(state, caller, session).await?;
    let index = crate::domain::message::message_index(answer).ok_or(ApiError::SessionNotFound)?;
    let turn = state.store.turns(&session.key(), index, 1).await?.pop();
    match turn {
        Some(turn) if turn.id == answer && turn.continuable() => Ok(Found {
            session,
            index,
            turn,
        }),
        _ => Err(ApiError::SessionNotFound),
    }
}

impl Found {
    pub fn object(&self) -> Value {
        object::stored(&self.session.id, &self.session.config.model, &self.turn)
    }

    pub async fn mark_deleted(&self, state: &AppState) -> Result<(), ApiError> {
        let mut deleted = self.turn.clone();
        let record = deleted.record.get_or_insert_with(|| {
            Box::new(AnswerRecord {
                request: Value::Object(Default::default()),
                model: self.session.config.model.clone(),
                prompt_tokens: 0,
                completion_tokens: 0,
                finish_reason: "stop".into(),
                input_from: self.index,
                deleted: false,
            })
        });
        record.deleted = true;
        let changes = [(self.index, self.turn.clone(), deleted)];
        match state
            .store
            .replace_turns(&self.session.key(), &changes)
            .await?
        {
            true => Ok(()),
            false => Err(ApiError::SessionBusy { retry_after: 1 }),
        }
    }

    /// The positions of the turns this response's request added. An answer made through
    /// the sessions API has no record: its input is what follows the previous answer.
    pub async fn input_range(&self, state: &AppState) -> Result<Range<u64>, ApiError> {
        if let Some(record) = &self.turn.record {
            return Ok(record.input_from.min(self.index)..self.index);
        }
        let from = self
            .index
            .saturating_sub(crate::domain::turns::MAX_NEW_TURNS as u64);
        let before = state
            .store
            .turns(&self.session.key(), from, (self.index - from) as usize)
            .await?;
        let start = before
            .iter()
            .rposition(|t| t.message.role == Role::Assistant)
            .map_or(from, |i| from + i as u64 + 1);
        Ok(start..self.index)
    }
}

/// Where a response goes.
pub enum Target {
    /// A session; `continues`: the answer it must follow, which must be the newest turn
    /// (the admission checks it, so the common case costs no lookup).
    Session {
        id: String,
        continues: Option<String>,
    },
    /// Nothing kept, nothing continued.
    Stateless,
}

/// A client token acts for its own session only: no other, and no new one.
fn in_scope(caller: &Caller, session: Option<&str>) -> Result<(), ApiError> {
    match (&caller.session_scope, session) {
        (Some(scope), Some(session)) if scope == session => Ok(()),
        (Some(_), _) => Err(ApiError::Forbidden),
        (None, _) => Ok(()),
    }
}

pub async fn target(
    state: &AppState,
    caller: &Caller,
    request: &ResponsesRequest,
) -> Result<Target, ApiError> {
    if let Some(previous) = &request.previous_response_id {
        let (session, answer) =
            ids::parse_response_id(previous).ok_or(ApiError::SessionNotFound)?;
        in_scope(caller, Some(session))?;
        return Ok(Target::Session {
            id: session.to_string(),
            continues: Some(answer.to_string()),
        });
    }
    if let Some(conversation) = &request.conversation {
        // A foreign or unknown session is refused by the admission, as for a send.
        let id =
            ids::session_of_conversation(conversation.id()).ok_or(ApiError::SessionNotFound)?;
        in_scope(caller, Some(id))?;
        return Ok(Target::Session {
            id: id.to_string(),
            continues: None,
        });
    }
    in_scope(caller, None)?;
    if !request.keeps() {
        return Ok(Target::Stateless);
    }
    let config = super::new_session(state, caller, &request.model);
    let id = super::create_session(state, &config).await?;
    Ok(Target::Session {
        id,
        continues: None,
    })
}

/// `previous_response_id` names a response that is not the newest of its session: a
/// fork of the session up to it (after checking the response is the caller's and alive).
pub async fn branch(
    state: &AppState,
    caller: &Caller,
    request: &ResponsesRequest,
) -> Result<String, ApiError> {
    let previous = request.previous_response_id.as_deref().unwrap_or_default();
    let found = response(state, caller, previous).await?;
    // The copy is a session of its own, which a client token cannot reach.
    in_scope(caller, None)?;
    if !request.keeps() {
        return Err(ApiError::invalid(
            "previous_response_id",
            "branching from an older response stores a copy of the conversation: it needs `store: true`",
        ));
    }
    fork(state, &found).await
}

/// A new session holding the turns up to and including the response's answer, as OpenAI
/// branches a conversation: the same settings, a fresh TTL.
async fn fork(state: &AppState, found: &Found) -> Result<String, ApiError> {
    let turns = state
        .store
        .turns(&found.session.key(), 0, found.index as usize + 1)
        .await?;
    let turns = turns
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let config = crate::domain::session::SessionConfig {
        created_at: Utc::now(),
        ..found.session.config.clone()
    };
    let config_json =
        serde_json::to_string(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = crate::domain::session::new_id();
    let write = ImportWrite {
        id: id.clone(),
        mode: ImportMode::Create,
        config,
        config_json,
        expected: None,
        turns,
        summary: None,
        now_ms: now_ms(),
    };
    match state.store.import_sessions(&[write]).await?.first() {
        Some(ImportOutcome::Written) => Ok(id),
        Some(ImportOutcome::Unavailable) => Err(ApiError::StoreUnavailable),
        _ => Err(ApiError::Internal("a fork could not be written".into())),
    }
}

/// What the request's prompt would cost, as a send would build it.
pub async fn count(
    state: &AppState,
    caller: &Caller,
    request: &ResponsesRequest,
    turns: &[Message],
) -> Result<u32, ApiError> {
    let asked = request.asked()?;
    let model = crate::conversation::upstream::known_model(state, &request.model)?;
    let counter = TokenCounter::shared();
    let new_tokens = turns
        .iter()
        .map(|t| counter.count_turn(model.tokenizer, t))
        .fold(0, u32::saturating_add);
    let tools_tokens =
        counter.count_tools(model.tokenizer, asked.tools.as_deref().unwrap_or_default());
    let store = state.store.as_ref();
    let (session, history) = match (&request.previous_response_id, &request.conversation) {
        (Some(previous), _) => {
            let found = response(state, caller, previous).await?;
            let newest = found.index + 1 == found.session.message_count;
            // An older response is counted as its fork would hold it: the turns up to it.
            let session = StoredSession {
                message_count: found.index + 1,
                ..found.session
            };
            let history = match newest {
                true => read_tail(store, &session).await?,
                false => {
                    store
                        .turns(&session.key(), 0, found.index as usize + 1)
                        .await?
                }
            };
            (session, history)
        }
        (None, Some(conversation)) => {
            let session = self::conversation(state, caller, conversation.id()).await?;
            let history = read_tail(store, &session).await?;
            (session, history)
        }
        (None, None) => {
            in_scope(caller, None)?;
            let system = request.instructions.as_deref().map_or(0, |p| {
                counter.count_message(model.tokenizer, Role::System, p)
            });
            return Ok(system + new_tokens + tools_tokens + REPLY_PRIMING_TOKENS);
        }
    };
    let max_tokens = request
        .max_output_tokens
        .unwrap_or(state.settings.sessions.default_max_tokens);
    let around = Around {
        new_turns: turns,
        new_tokens,
        tools_tokens,
        pinned: usize::from(!pending_calls(&history).is_empty()),
        budget: budget(&session, &model, max_tokens),
        instructions: request.instructions.as_deref(),
    };
    Ok(assemble(store, &session, &model, &around, history)
        .await?
        .tokens)
}
