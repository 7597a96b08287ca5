//! Persistence of bulk imports: whole sessions written at once, and the per-tenant
//! `Idempotency-Key` records that make a retried import harmless.
//!
//! Each session of a batch is written all-or-nothing (one Lua script over its hash-tagged
//! keys in Redis, one mutex section in memory); the sessions of a batch are independent,
//! so one refused write never holds back the others.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{
    compaction::Summary, scope::SessionKey, session::SessionConfig, transfer::ImportMode,
};

/// What an append or replace found before preparing its write.
#[derive(Debug, Clone)]
pub struct SessionHead {
    pub config: SessionConfig,
    /// The stored configuration exactly as stored: the write goes ahead only if it is
    /// unchanged, which also catches a session deleted and made again (by anyone) meanwhile.
    pub config_json: String,
    pub message_count: u64,
}

/// One session to write.
#[derive(Debug, Clone)]
pub struct ImportWrite {
    pub id: String,
    pub mode: ImportMode,
    /// The settings written (create, replace) or kept (append).
    pub config: SessionConfig,
    /// `config` as JSON; what create and replace store.
    pub config_json: String,
    /// Append and replace: the session as read; the write is refused if it changed since.
    pub expected: Option<SessionHead>,
    /// The turns as stored (JSON), ids already assigned by position. Serialized by the
    /// caller on the blocking pool, so that the event loop only moves bytes.
    pub turns: Vec<String>,
    /// Create and replace: the summary the session starts with (replace voids the old one).
    pub summary: Option<Summary>,
    pub now_ms: i64,
}

impl ImportWrite {
    /// The session written: `id` of the tenant of `config`.
    pub fn key(&self) -> SessionKey {
        SessionKey::new(&self.config.tenant, &self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Written,
    /// Create: the id is taken.
    Exists,
    /// Append, replace: no such session (never was, expired, deleted).
    Missing,
    /// A send holds the session's lease.
    Busy,
    /// Append, replace: the session changed between its read and the write.
    Changed,
    /// The store failed for this session: nothing of it was written, or it was taken back.
    Unavailable,
}

/// The state of an import's `Idempotency-Key` when a request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKey {
    /// Ours now, until the lease lapses unless renewed.
    Claimed,
    /// Another request holds it.
    InFlight,
    /// A request with this key finished: its body digest and its answer.
    Done { fingerprint: String, result: String },
}

#[async_trait]
pub trait ImportStore: Send + Sync {
    /// The current state of each of `tenant`'s sessions (by id), or `None` where there is none.
    async fn import_heads(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Option<SessionHead>>>;

    /// Writes each session atomically and keeps the user index in step, the way
    /// `create_session` does: after the session, and a created session whose index entry
    /// cannot be written is taken back. One outcome per write, in order.
    async fn import_sessions(&self, writes: &[ImportWrite]) -> StoreResult<Vec<ImportOutcome>>;

    /// Claims `key` for `tenant` (if free) under `token` for `lease_ms`.
    async fn import_key_claim(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        lease_ms: u64,
    ) -> StoreResult<ImportKey>;

    /// Renews a claim this token still holds.
    async fn import_key_renew(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        lease_ms: u64,
    ) -> StoreResult<()>;

    /// If `token` still holds the key: records `(fingerprint, result)` for `ttl_ms`, or with
    /// `None` gives the key up so that a retry runs again.
    async fn import_key_settle(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        done: Option<(&str, &str)>,
        ttl_ms: u64,
    ) -> StoreResult<()>;
}
