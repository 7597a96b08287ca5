//! Sessions: what a client may set, the rules those values follow, and the view it reads back.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    compaction::{CompactionPatch, CompactionPolicy, Summary, SummaryPatch, SummaryView},
    error::DomainError,
    scope::SessionKey,
    tools::{self, ResponseFormat, Tool},
};

/// Everything fixed about a session apart from its counters. Stored as one JSON document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    pub tenant: String,
    pub user_id: Option<String>,
    pub model: String,
    pub fallback_models: Vec<String>,
    pub system_prompt: Option<String>,
    pub context_window: Option<u32>,
    pub max_context_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub ttl_seconds: u64,
    pub metadata: Map<String, Value>,
    pub max_cost_usd: Option<f64>,
    /// Tools offered on every send that names none of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// The answer format of every send that names none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// How history that no longer fits is compressed; sessions stored before it existed
    /// read as `off`.
    #[serde(default)]
    pub compaction: CompactionPolicy,
    pub created_at: DateTime<Utc>,
}

impl SessionConfig {
    /// Whether this is a session of `user_id` within `tenant`: what every read or delete
    /// reached through a user index checks, since an id can change hands (it expires, and
    /// an import, which keeps ids, makes a session of that id for someone else).
    pub fn belongs_to(&self, tenant: &str, user_id: &str) -> bool {
        self.tenant == tenant && self.user_id.as_deref() == Some(user_id)
    }
}

/// Running totals of a session, kept by the store with atomic increments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Cost in billionths of a dollar, so that increments stay exact integers.
    pub cost_nano_usd: u64,
}

/// A session as read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    pub id: String,
    pub config: SessionConfig,
    /// Bumped by every configuration change; guards PATCH against lost updates.
    pub revision: u64,
    pub last_activity_ms: i64,
    pub message_count: u64,
    pub usage: UsageTotals,
    /// The summary of the turns before its watermark, if any.
    pub summary: Option<Summary>,
    /// Bumped by every write of the summary (a compaction, a PATCH): a compaction commits
    /// only on top of the generation it read.
    pub summary_generation: u64,
}

impl StoredSession {
    /// Where this session lives: its tenant's and its id.
    pub fn key(&self) -> SessionKey {
        SessionKey::new(&self.config.tenant, &self.id)
    }
}

/// `POST /v1/sessions`: every field optional.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The caller's own id for the session (a customer or conversation id): 1 to 128
    /// letters, digits, `-` and `_`, unique within the caller's tenant (409
    /// `session_exists` otherwise). Default: 32 random hex digits.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub session_id: Option<String>,
    pub model: Option<String>,
    #[schema(max_items = 8)]
    pub fallback_models: Option<Vec<String>>,
    pub system_prompt: Option<String>,
    #[schema(minimum = 1, maximum = 100_000)]
    pub context_window: Option<u32>,
    #[schema(minimum = 1)]
    pub max_context_tokens: Option<u32>,
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
    pub user_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[schema(minimum = 0)]
    pub max_cost_usd: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Tool>>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    /// Fields left out take the server's defaults (`sessions.compaction`).
    pub compaction: Option<CompactionPatch>,
}

/// `PATCH /v1/sessions/{id}`: absent leaves a field alone, `null` clears a nullable one.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSession {
    pub model: Option<String>,
    pub fallback_models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub context_window: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_context_tokens: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_tokens: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f32>)]
    pub temperature: Option<Option<f32>>,
    pub ttl_seconds: Option<u64>,
    /// Merged into the existing metadata; a `null` value removes that key.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>)]
    pub max_cost_usd: Option<Option<f64>>,
    /// Replaces the session's tools; `[]` removes them.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Option<ResponseFormat>>,
    /// Changes the fields it names.
    pub compaction: Option<CompactionPatch>,
    /// Replaces the summary (`null` clears it); not part of the configuration, see
    /// [`crate::domain::compaction`].
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<SummaryPatch>)]
    pub summary: Option<Option<SummaryPatch>>,
}

/// Tells "absent" (outer `None`, via `default`) from "null" (`Some(None)`).
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// What validation needs to know about the configured models.
pub trait ModelCatalog {
    /// The context length of a configured model (by name or alias); `None` if unknown.
    fn context_tokens(&self, model: &str) -> Option<u32>;
}

/// The limits validation checks against, taken from configuration and the model registry.
pub struct Limits<'a> {
    pub max_ttl_seconds: u64,
    pub models: &'a dyn ModelCatalog,
}

/// What an unknown model name is told; the name itself is not quoted back (it is request
/// content, and may be anything).
pub const UNKNOWN_MODEL: &str = "not a configured model name or alias (GET /v1/models lists them)";

const MAX_SYSTEM_PROMPT_BYTES: usize = 64 * 1024;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_FALLBACKS: usize = 8;

impl SessionConfig {
    pub fn apply_patch(&mut self, patch: PatchSession) {
        let PatchSession {
            model,
            fallback_models,
            system_prompt,
            context_window,
            max_context_tokens,
            max_tokens,
            temperature,
            ttl_seconds,
            metadata,
            max_cost_usd,
            tools,
            response_format,
            compaction,
            summary: _,
        } = patch;
        replace(&mut self.model, model);
        replace(&mut self.fallback_models, fallback_models);
        replace(&mut self.system_prompt, system_prompt);
        replace(&mut self.context_window, context_window);
        replace(&mut self.max_context_tokens, max_context_tokens);
        replace(&mut self.max_tokens, max_tokens);
        replace(&mut self.temperature, temperature);
        replace(&mut self.ttl_seconds, ttl_seconds);
        replace(&mut self.max_cost_usd, max_cost_usd);
        replace(&mut self.tools, tools);
        replace(&mut self.response_format, response_format);
        if let Some(compaction) = compaction {
            self.compaction.apply(compaction);
        }
        for (key, value) in metadata.unwrap_or_default() {
            if value.is_null() {
                self.metadata.remove(&key);
            } else {
                self.metadata.insert(key, value);
            }
        }
    }

    /// Checks every rule a session's settings must follow, naming the first field at fault.
    pub fn validate(&self, limits: &Limits) -> Result<(), DomainError> {
        let Some(context_tokens) = limits.models.context_tokens(&self.model) else {
            return Err(DomainError::invalid("model", UNKNOWN_MODEL));
        };
        if self.fallback_models.len() > MAX_FALLBACKS {
            return Err(DomainError::invalid(
                "fallback_models",
                format!("at most {MAX_FALLBACKS} models"),
            ));
        }
        if let Some(i) = self
            .fallback_models
            .iter()
            .position(|m| limits.models.context_tokens(m).is_none())
        {
            return Err(DomainError::invalid(
                format!("fallback_models[{i}]"),
                UNKNOWN_MODEL,
            ));
        }
        if self
            .system_prompt
            .as_ref()
            .is_some_and(|p| p.len() > MAX_SYSTEM_PROMPT_BYTES)
        {
            return Err(DomainError::invalid(
                "system_prompt",
                format!("at most {MAX_SYSTEM_PROMPT_BYTES} bytes"),
            ));
        }
        check_range(
            "context_window",
            self.context_window.map(u64::from),
            1,
            100_000,
        )?;
        check_range(
            "max_tokens",
            self.max_tokens.map(u64::from),
            1,
            u64::from(context_tokens),
        )?;
        check_range(
            "max_context_tokens",
            self.max_context_tokens.map(u64::from),
            1,
            u64::from(context_tokens),
        )?;
        check_range(
            "ttl_seconds",
            Some(self.ttl_seconds),
            1,
            limits.max_ttl_seconds,
        )?;
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(DomainError::invalid(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        if self.max_cost_usd.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(DomainError::invalid(
                "max_cost_usd",
                "must be a non-negative number",
            ));
        }
        if let Some(user) = &self.user_id
            && !is_user_id(user)
        {
            return Err(DomainError::invalid(
                "user_id",
                "1 to 256 characters, no control characters",
            ));
        }
        tools::validate(&self.tools, None, self.response_format.as_ref())?;
        self.compaction.validate(limits.models)?;
        if serde_json::to_vec(&self.metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
            return Err(DomainError::invalid(
                "metadata",
                format!("at most {MAX_METADATA_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

fn replace<T>(slot: &mut T, new: Option<T>) {
    if let Some(value) = new {
        *slot = value;
    }
}

fn check_range(field: &str, value: Option<u64>, min: u64, max: u64) -> Result<(), DomainError> {
    match value {
        Some(v) if v < min || v > max => Err(DomainError::invalid(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

pub fn is_user_id(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 256 && !s.chars().any(char::is_control)
}

/// Session ids: our own are 32 hex digits (128 random bits); imported ones may be any
/// short token of URL-safe characters. Braces are excluded because they delimit Redis hash tags.
pub fn is_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The wall clock in milliseconds, as the store keeps activity times.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A fresh opaque id with 128 random bits.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub fn nano_usd_to_usd(nano: u64) -> f64 {
    nano as f64 / 1e9
}

/// The session object of the contract.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub session_id: String,
    /// Always `session`.
    pub object: &'static str,
    pub model: String,
    pub fallback_models: Vec<String>,
    pub system_prompt: Option<String>,
    pub context_window: Option<u32>,
    pub max_context_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub ttl_seconds: u64,
    pub user_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub max_cost_usd: Option<f64>,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Tool>,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<ResponseFormat>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub message_count: u64,
    pub usage: UsageView,
    pub compaction: CompactionPolicy,
    /// The summary of the turns up to `upto_message_id`, sent in their place.
    pub summary: Option<SummaryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl From<StoredSession> for SessionView {
    fn from(s: StoredSession) -> Self {
        let last = Utc
            .timestamp_millis_opt(s.last_activity_ms)
            .single()
            .unwrap_or(s.config.created_at);
        let ttl = chrono::Duration::seconds(
            i64::try_from(s.config.ttl_seconds).unwrap_or(i64::MAX / 1000),
        );
        let c = s.config;
        SessionView {
            session_id: s.id,
            object: "session",
            model: c.model,
            fallback_models: c.fallback_models,
            system_prompt: c.system_prompt,
            context_window: c.context_window,
            max_context_tokens: c.max_context_tokens,
            max_tokens: c.max_tokens,
            temperature: c.temperature,
            ttl_seconds: c.ttl_seconds,
            user_id: c.user_id,
            metadata: c.metadata,
            max_cost_usd: c.max_cost_usd,
            tools: c.tools,
            response_format: c.response_format,
            compaction: c.compaction,
            summary: s.summary.as_ref().map(SummaryView::from),
            created_at: c.created_at,
            last_activity_at: last,
            expires_at: last + ttl,
            message_count: s.message_count,
            usage: UsageView {
                prompt_tokens: s.usage.prompt_tokens,
                completion_tokens: s.usage.completion_tokens,
                cost_usd: nano_usd_to_usd(s.usage.cost_nano_usd),
            },
        }
    }
}
