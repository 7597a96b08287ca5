//! Per item, on the blocking pool: decode and validate ([`check`]), then assign the id,
//! the message ids and the token counts ([`plan`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::items::RawItem;
use crate::{
    domain::{
        compaction::{Summary, summary_turn_text},
        message::{Role, Turn, message_id},
        session::{Limits, new_id},
        tokens::{TokenCounter, Tokenizer},
        transfer::{ImportMode, ImportRules, SummaryRecord, ValidItem, parse_record, validate},
    },
    error::ApiError,
    state::AppState,
    store::import::{ImportWrite, SessionHead},
};

/// Where an item stands on its way through a batch.
pub(super) enum Step {
    Failed(Option<String>, ApiError),
    /// Over `import.max_session_bytes`: never decoded, so nothing about it is known.
    TooLarge(String),
    Valid(Box<ValidItem>),
    Ready(Box<ImportWrite>, usize),
}

pub(super) fn check(state: &AppState, tenant: &str, mode: ImportMode, raw: RawItem) -> Step {
    let limits = &state.settings.import;
    let bytes = match raw {
        RawItem::Json(bytes) => bytes,
        RawItem::TooLarge(size) => {
            let limit = limits.max_session_bytes;
            return Step::TooLarge(format!(
                "this session is {size} bytes; at most {limit} (import.max_session_bytes)"
            ));
        }
    };
    let record = match parse_record(&bytes) {
        Ok(record) => record,
        Err(err) => return Step::Failed(None, err.into()),
    };
    let id = record.session_id.clone();
    let defaults = &state.settings.sessions;
    let rules = ImportRules {
        mode,
        tenant,
        default_model: &defaults.default_model,
        default_ttl_seconds: defaults.default_ttl_seconds,
        max_messages: limits.max_messages_per_session,
        max_content_bytes: limits.max_content_bytes,
        session: Limits {
            max_ttl_seconds: defaults.max_ttl_seconds,
            models: &state.models,
        },
    };
    match validate(record, &rules) {
        Ok(item) => Step::Valid(Box::new(item)),
        Err(err) => Step::Failed(id, err.prefixed().into()),
    }
}

/// Assigns the id, the message ids (by position) and the token counts of a valid item.
/// `head` is the stored session for append and replace (`Some(None)`: there is none).
pub(super) fn plan(
    state: &AppState,
    tenant: &str,
    mode: ImportMode,
    step: Step,
    head: Option<Option<SessionHead>>,
    now: DateTime<Utc>,
) -> Step {
    let Step::Valid(item) = step else {
        return step;
    };
    let id = item.session_id.unwrap_or_else(new_id);
    let head = match head {
        None => None,
        // Another tenant's session is answered exactly like one that does not exist.
        Some(Some(head)) if head.config.tenant == tenant => Some(head),
        Some(_) => return Step::Failed(Some(id), ApiError::SessionNotFound),
    };
    let (config, base) = match (item.config, &head) {
        (Some(config), _) => (config, 0),
        (None, Some(head)) => (head.config.clone(), head.message_count),
        (None, None) => return Step::Failed(Some(id), ApiError::SessionNotFound),
    };
    let tokenizer = state
        .models
        .get(&config.model)
        .map_or_else(|| Tokenizer::for_model(&config.model), |m| m.tokenizer);
    let counter = TokenCounter::shared();
    // count_message = framing and role (the same for every message of a role) + content:
    // the framing is counted once per role, not once per message.
    let mut framing: HashMap<Role, u32> = HashMap::new();
    let count = item.messages.len();
    let mut turns = Vec::with_capacity(count);
    let upto = item.summary.as_ref().map(|s| s.upto_message_index);
    let mut upto_id = None;
    for (i, m) in item.messages.into_iter().enumerate() {
        let created_at = m.created_at.unwrap_or(now);
        let plain = m.is_plain();
        let message = m.into_message();
        let tokens = if plain {
            let frame = *framing
                .entry(message.role)
                .or_insert_with(|| counter.count_message(tokenizer, message.role, ""));
            frame.saturating_add(counter.count_content(tokenizer, &message.content))
        } else {
            counter.count_turn(tokenizer, &message)
        };
        let turn = Turn::new(message_id(base + i as u64), message, created_at, tokens);
        if upto == Some(i as u64) {
            upto_id = Some(turn.id.clone());
        }
        match serde_json::to_string(&turn) {
            Ok(json) => turns.push(json),
            Err(e) => return Step::Failed(Some(id), ApiError::Internal(e.to_string())),
        }
    }
    let config_json = match (mode, serde_json::to_string(&config)) {
        (ImportMode::Append, _) => String::new(),
        (_, Ok(json)) => json,
        (_, Err(e)) => return Step::Failed(Some(id), ApiError::Internal(e.to_string())),
    };
    let write = ImportWrite {
        mode,
        id,
        config,
        config_json,
        expected: head,
        turns,
        summary: item
            .summary
            .zip(upto_id)
            .map(|(s, upto_id)| summary(s, upto_id, tokenizer, now)),
        now_ms: now.timestamp_millis(),
    };
    Step::Ready(Box::new(write), count)
}

/// An imported summary as stored; its tokens are counted for the session's model, which
/// may not be the one it was exported with.
fn summary(
    record: SummaryRecord,
    upto_id: String,
    tokenizer: Tokenizer,
    now: DateTime<Utc>,
) -> Summary {
    let text = summary_turn_text(&record.text);
    Summary {
        tokens: TokenCounter::shared().count_message(tokenizer, Role::System, &text),
        text: record.text,
        upto: record.upto_message_index + 1,
        upto_id,
        updated_at: record.updated_at.unwrap_or(now),
    }
}

/// The session as a planned write will leave it.
pub(super) fn head_after(write: &ImportWrite) -> Option<SessionHead> {
    let count = write.turns.len() as u64;
    match write.mode {
        ImportMode::Append => write.expected.clone().map(|mut head| {
            head.message_count += count;
            head
        }),
        _ => Some(SessionHead {
            config: write.config.clone(),
            config_json: write.config_json.clone(),
            message_count: count,
        }),
    }
}
