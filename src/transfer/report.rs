//! The answer of an import: one result per item, in order, as the contract shows it.

use serde::Serialize;

use crate::{error::ApiError, store::import::ImportOutcome};

/// The answer of an import, as the contract shows it.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub imported: u64,
    pub failed: u64,
    pub results: Vec<ItemResult>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemResult {
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `created`, `appended`, `replaced` or `error`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Report {
    /// Whether a retry could turn out differently: such an answer is not kept for replay.
    pub fn has_transient_errors(&self) -> bool {
        self.results
            .iter()
            .any(|r| matches!(r.error, Some("store_unavailable" | "session_busy")))
    }
}

pub(super) fn failure(index: u64, session_id: Option<String>, err: &ApiError) -> ItemResult {
    let body = err.body();
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
    ItemResult {
        index,
        session_id,
        status: "error",
        messages: None,
        error: Some(err.code()),
        message: text("message"),
        field: text("field"),
    }
}

/// A refused write, in the words of the item's result.
pub(super) fn refusal(
    outcome: ImportOutcome,
) -> (&'static str, &'static str, Option<&'static str>) {
    match outcome {
        ImportOutcome::Exists => (
            "session_exists",
            "session_id: a session with this id already exists",
            Some("session_id"),
        ),
        ImportOutcome::Missing => (
            "session_not_found",
            "session_id: no such session (unknown, expired or deleted)",
            Some("session_id"),
        ),
        ImportOutcome::Busy => (
            "session_busy",
            "a message on this session is still being processed; retry",
            None,
        ),
        ImportOutcome::Changed => (
            "session_busy",
            "the session changed while it was being imported; retry",
            None,
        ),
        ImportOutcome::Written | ImportOutcome::Unavailable => (
            "store_unavailable",
            "the session store failed for this session; retry",
            None,
        ),
    }
}
