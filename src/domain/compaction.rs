//! Context compression: a session's policy, its summary, and the watermark rule.
//!
//! The summary covers the turns `0..upto` (the watermark); the context is the system
//! prompt, the summary as one delimited system turn, then the newest turns after the
//! watermark that fit. Raw turns are never deleted: only what goes upstream changes.
//! Every write of a summary bumps the session's summary *generation*, and a compaction
//! commits only on top of the generation it read, so a duplicate or late job is a no-op.

pub mod fold;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{error::DomainError, message::Turn, session::ModelCatalog};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompactionMode {
    /// Turns that no longer fit are left out, as without compression.
    #[default]
    Off,
    /// Turns that no longer fit are folded into a summary in the background.
    Auto,
}

/// How a session compresses its history. Stored with the session's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionPolicy {
    pub mode: CompactionMode,
    /// A job starts once the turns after the watermark cost more than this share of the
    /// prompt budget.
    #[schema(minimum = 0, maximum = 1)]
    pub trigger_ratio: f64,
    /// The share of the budget the newest turns keep unfolded after a job.
    #[schema(minimum = 0, maximum = 1)]
    pub keep_ratio: f64,
    /// The summarizer; `None`: the session's own model (and its fallbacks).
    pub model: Option<String>,
    #[schema(minimum = 16, maximum = 8192)]
    pub max_summary_tokens: u32,
    /// Replaces the built-in summarizer instructions.
    pub instructions: Option<String>,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            mode: CompactionMode::Off,
            trigger_ratio: 0.8,
            keep_ratio: 0.5,
            model: None,
            max_summary_tokens: 512,
            instructions: None,
        }
    }
}

/// `compaction` of a PATCH: absent fields stay, `null` clears `model` / `instructions`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactionPatch {
    pub mode: Option<CompactionMode>,
    pub trigger_ratio: Option<f64>,
    pub keep_ratio: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::session::nullable")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    pub max_summary_tokens: Option<u32>,
    #[serde(default, deserialize_with = "crate::domain::session::nullable")]
    #[schema(value_type = Option<String>)]
    pub instructions: Option<Option<String>>,
}

const MAX_INSTRUCTIONS_BYTES: usize = 8 * 1024;

impl CompactionPolicy {
    pub fn apply(&mut self, patch: CompactionPatch) {
        let CompactionPatch {
            mode,
            trigger_ratio,
            keep_ratio,
            model,
            max_summary_tokens,
            instructions,
        } = patch;
        self.mode = mode.unwrap_or(self.mode);
        self.trigger_ratio = trigger_ratio.unwrap_or(self.trigger_ratio);
        self.keep_ratio = keep_ratio.unwrap_or(self.keep_ratio);
        self.max_summary_tokens = max_summary_tokens.unwrap_or(self.max_summary_tokens);
        if let Some(model) = model {
            self.model = model;
        }
        if let Some(instructions) = instructions {
            self.instructions = instructions;
        }
    }

    /// The rules: ratios in (0, 1] with `keep_ratio` below `trigger_ratio` (else a job
    /// would fold nothing and start again on the next send), a known summarizer.
    pub fn validate(&self, models: &dyn ModelCatalog) -> Result<(), DomainError> {
        let ratio = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if !ratio(self.trigger_ratio) {
            return Err(DomainError::invalid(
                "compaction.trigger_ratio",
                "must be above 0 and at most 1",
            ));
        }
        if !ratio(self.keep_ratio) || self.keep_ratio >= self.trigger_ratio {
            return Err(DomainError::invalid(
                "compaction.keep_ratio",
                "must be above 0 and below trigger_ratio",
            ));
        }
        if !(16..=8192).contains(&self.max_summary_tokens) {
            return Err(DomainError::invalid(
                "compaction.max_summary_tokens",
                "must be between 16 and 8192",
            ));
        }
        if let Some(model) = &self.model
            && models.context_tokens(model).is_none()
        {
            return Err(DomainError::invalid(
                "compaction.model",
                crate::domain::session::UNKNOWN_MODEL,
            ));
        }
        if self
            .instructions
            .as_ref()
            .is_some_and(|i| i.len() > MAX_INSTRUCTIONS_BYTES)
        {
            return Err(DomainError::invalid(
                "compaction.instructions",
                format!("at most {MAX_INSTRUCTIONS_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// Whether `unfolded` tokens of turns after the watermark call for a job.
    pub fn triggers(&self, unfolded: u64, budget: u32) -> bool {
        self.mode == CompactionMode::Auto
            && unfolded as f64 > self.trigger_ratio * f64::from(budget)
    }
}

/// What the turns after the watermark `upto` cost, if `newest` (the last turns of a
/// history of `count`) reaches back to it; `None` when older ones are not among them.
pub fn unfolded_tokens(newest: &[Turn], count: u64, upto: u64) -> Option<u64> {
    let first = count.checked_sub(newest.len() as u64)?;
    let covered = usize::try_from(upto.checked_sub(first)?).ok()?;
    let after = newest.iter().skip(covered).filter(|t| !t.deleted);
    Some(after.map(|t| u64::from(t.tokens)).sum())
}

/// What the summary of a session says and which turns it covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub text: String,
    /// The turns `0..upto` are covered; `upto` is the watermark.
    pub upto: u64,
    /// The id of turn `upto - 1`, the last one covered.
    pub upto_id: String,
    /// What the summary costs as a system turn of the session's model.
    pub tokens: u32,
    pub updated_at: DateTime<Utc>,
}

/// The summary as the session object and `…/context` show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SummaryView {
    pub text: String,
    pub upto_message_id: String,
    pub tokens: u32,
    pub updated_at: DateTime<Utc>,
}

impl From<&Summary> for SummaryView {
    fn from(s: &Summary) -> Self {
        SummaryView {
            text: s.text.clone(),
            upto_message_id: s.upto_id.clone(),
            tokens: s.tokens,
            updated_at: s.updated_at,
        }
    }
}

/// `summary` of a PATCH (an operator correcting a bad one): the text and the last turn it
/// covers. `null` clears the summary.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryPatch {
    pub text: String,
    pub upto_message_id: String,
}

pub const MAX_SUMMARY_BYTES: usize = 64 * 1024;

/// Why a summary given by hand (PATCH, import) may not end where it says.
pub const SPLITS_A_UNIT: &str = "a summary may not end between tool calls and their results";

/// The text of a summary given by hand: something, and not more than a summary holds.
pub fn check_summary_text(text: &str) -> Result<(), DomainError> {
    if text.trim().is_empty() || text.len() > MAX_SUMMARY_BYTES {
        return Err(DomainError::invalid(
            "summary.text",
            format!("1 to {MAX_SUMMARY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The delimited system turn the summary is sent as: the model must not take it for
/// something the user or the assistant said.
pub fn summary_turn_text(summary: &str) -> String {
    format!(
        "<conversation_summary>\nA summary of the earlier part of this conversation, \
         which is no longer shown in full:\n{summary}\n</conversation_summary>"
    )
}
