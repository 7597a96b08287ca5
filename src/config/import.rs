use serde::Deserialize;

use super::ConfigError;

/// `[import]`: bounds of `POST /v1/sessions/import`. NDJSON bodies stream, so these bound
/// one request and one item, not the memory an import of any size needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportSettings {
    /// Largest NDJSON body; replaces `server.max_body_bytes` on the import route.
    pub max_body_bytes: u64,
    /// The JSON form (`{"sessions": [...]}`) is read whole, so it has its own, smaller limit.
    pub max_json_body_bytes: usize,
    /// Largest single session: one NDJSON line or one JSON item.
    pub max_session_bytes: usize,
    pub max_messages_per_session: usize,
    /// Largest `content` of one imported message.
    pub max_content_bytes: usize,
    /// Items per request: bounds the per-item results the server holds for its answer.
    pub max_sessions_per_request: usize,
    /// Batches of one import being prepared or written at once.
    pub concurrency: usize,
    /// A claimed `Idempotency-Key` lapses this long after its holder stopped renewing it
    /// (an instance that died mid-import), so a retry is not refused for long.
    pub idempotency_lease_seconds: u64,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            max_body_bytes: 1 << 30,
            max_json_body_bytes: 32 << 20,
            max_session_bytes: 16 << 20,
            max_messages_per_session: 10_000,
            max_content_bytes: 256 * 1024,
            max_sessions_per_request: 100_000,
            concurrency: 4,
            idempotency_lease_seconds: 15,
        }
    }
}

impl ImportSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_json_body_bytes", self.max_json_body_bytes as u64),
            ("max_session_bytes", self.max_session_bytes as u64),
            (
                "max_messages_per_session",
                self.max_messages_per_session as u64,
            ),
            ("max_content_bytes", self.max_content_bytes as u64),
            (
                "max_sessions_per_request",
                self.max_sessions_per_request as u64,
            ),
            ("concurrency", self.concurrency as u64),
            ("idempotency_lease_seconds", self.idempotency_lease_seconds),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(ConfigError(format!("import.{name}: must be at least 1"))),
            None => Ok(()),
        }
    }
}
