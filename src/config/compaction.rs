//! `[compaction]`: the policy new sessions get when they name none, and how jobs run.

use serde::Deserialize;

use super::ConfigError;
use crate::domain::compaction::{CompactionMode, CompactionPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionSettings {
    /// `off` unless set (see README: a summary is a model call nobody configured, and
    /// the zero-config echo model cannot summarize).
    pub mode: CompactionMode,
    pub trigger_ratio: f64,
    pub keep_ratio: f64,
    /// The summarizer; `None`: each session's own model.
    pub model: Option<String>,
    pub max_summary_tokens: u32,
    pub instructions: Option<String>,
    /// How long a job may hold a session's compaction lease (renewed by each chunk it
    /// commits); a job killed mid-way frees the session after this.
    pub lease_seconds: u64,
    /// After a failed job, the first wait before the session is tried again; doubled on
    /// each further failure, up to 64 times this.
    pub retry_base_seconds: u64,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        let policy = CompactionPolicy::default();
        CompactionSettings {
            mode: CompactionMode::Off,
            trigger_ratio: policy.trigger_ratio,
            keep_ratio: policy.keep_ratio,
            model: None,
            max_summary_tokens: policy.max_summary_tokens,
            instructions: None,
            lease_seconds: 120,
            retry_base_seconds: 5,
        }
    }
}

impl CompactionSettings {
    /// The policy of a new session that names none.
    pub fn policy(&self) -> CompactionPolicy {
        CompactionPolicy {
            mode: self.mode,
            trigger_ratio: self.trigger_ratio,
            keep_ratio: self.keep_ratio,
            model: self.model.clone(),
            max_summary_tokens: self.max_summary_tokens,
            instructions: self.instructions.clone(),
        }
    }

    pub(super) fn validate(&self, known_model: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(format!("compaction.{msg}")));
        let ratio = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if !ratio(self.trigger_ratio) {
            return fail("trigger_ratio: must be above 0 and at most 1");
        }
        if !ratio(self.keep_ratio) || self.keep_ratio >= self.trigger_ratio {
            return fail("keep_ratio: must be above 0 and below trigger_ratio");
        }
        if !(16..=8192).contains(&self.max_summary_tokens) {
            return fail("max_summary_tokens: must be between 16 and 8192");
        }
        if self.model.as_deref().is_some_and(|m| !known_model(m)) {
            return fail("model: not a configured model name or alias");
        }
        if self.lease_seconds == 0 || self.retry_base_seconds == 0 {
            return fail("lease_seconds and retry_base_seconds: must be at least 1");
        }
        Ok(())
    }
}
