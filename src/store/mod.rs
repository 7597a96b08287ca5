//! Persistence of sessions, turns, leases and idempotency records.
//!
//! [`Store`] has two implementations that pass the same test suite: [`redis::RedisStore`]
//! for production and [`memory::MemoryStore`], the zero-setup default of `cargo run`.
//! Every multi-key change is atomic in both: a Lua script over keys sharing the session's
//! hash tag in Redis, one mutex section in memory.

pub mod compaction;
pub mod import;
pub mod keys;
pub mod memory;
pub mod metering;
pub mod migrate;
pub mod redis;

use async_trait::async_trait;

use crate::domain::{
    message::Turn,
    scope::SessionKey,
    session::{SessionConfig, StoredSession, UsageTotals},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Too slow, or the connection failed mid-call: the caller gets 503 and may retry.
    /// The command may or may not have run.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Never sent: no connection, or the store is not prepared yet. Nothing was written.
    #[error("store unreachable: {0}")]
    NotSent(String),
    /// The store answered that it takes no writes now. Nothing was written.
    #[error("store refuses writes: {0}")]
    Refused(Refusal),
    /// Data we wrote but cannot read back, or a command the store refused: a bug or a
    /// foreign writer. Answered as a 500, not as an outage.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Why a store that answers refuses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `redis_url` names a replica (or a primary that was demoted).
    #[error("it is a read-only replica")]
    ReadOnly,
    /// Redis is at `maxmemory` with a policy that evicts nothing.
    #[error("it is out of memory")]
    OutOfMemory,
}

impl StoreError {
    /// Whether the write certainly did not happen, so that doing it again cannot count it
    /// twice.
    pub fn nothing_written(&self) -> bool {
        matches!(self, StoreError::NotSent(_) | StoreError::Refused(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What happened to a compare-and-set write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Someone else changed the session since it was read.
    Conflict,
    /// The session does not exist (never did, expired or deleted).
    Missing,
}

/// An `Idempotency-Key` presented with a send.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    /// A digest of the request body: the same key with another body is refused.
    pub fingerprint: String,
    pub ttl_ms: u64,
}

/// A send asking to start on a session.
#[derive(Debug, Clone, Copy)]
pub struct AdmitRequest<'a> {
    /// Only a session of this tenant is admitted; any other answers `Missing`.
    pub tenant: &'a str,
    pub lease_token: &'a str,
    pub lease_ms: u64,
    pub claim: Option<&'a IdempotencyClaim>,
    pub now_ms: i64,
    /// How many of the newest turns to bring along, see [`tail_len`].
    pub tail: usize,
    /// An admitted session, every key of it, lives at least this long from now (ms):
    /// the send may outlast its remaining TTL, and its commit must still find it.
    pub hold_ms: u64,
}

/// The newest turns a send reads first: the session's whole `context_window` when it has
/// one, else `tail`. (`admit.lua` applies the same rule.)
pub fn tail_len(config: &SessionConfig, tail: usize) -> usize {
    config.context_window.map_or(tail, |window| window as usize)
}

/// An admitted send: the session and its newest turns, read together with taking the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// As of the lease: the turns are appended right after `message_count`.
    pub session: StoredSession,
    /// The newest turns, oldest first, as many as [`tail_len`] says.
    pub tail: Vec<Turn>,
}

/// The answer to "may this send start now?".
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The lease is ours (and the idempotency key, if any, is marked in flight).
    Admitted(Box<Admitted>),
    Busy {
        retry_after_ms: u64,
    },
    Missing,
    /// The same key and body completed before: here is the stored response.
    Replay(String),
    KeyInUse,
    KeyReused,
}

/// The writes of a successful send, made all together or not at all.
#[derive(Debug, Clone)]
pub struct Commit {
    pub lease_token: String,
    /// The history length the turns were appended to; a mismatch means a foreign writer.
    pub expected_len: u64,
    pub turns: Vec<Turn>,
    pub usage: UsageTotals,
    pub now_ms: i64,
    /// Key and the response to replay for it.
    pub idempotency: Option<(IdempotencyClaim, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Deleted or expired while the upstream call ran: nothing is written.
    Missing,
    /// Our lease lapsed and the session moved on without us: nothing is written.
    LeaseLost,
}

#[async_trait]
pub trait Store:
    keys::KeyStore
    + metering::MeterStore
    + import::ImportStore
    + compaction::CompactionStore
    + Send
    + Sync
{
    /// `"redis"` or `"memory"`, as `/v1/status` reports it.
    fn kind(&self) -> &'static str;
    /// Answers when the store can serve, writes included: a Redis replica (read-only)
    /// answers `Refused`, one not prepared yet `NotSent`.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates session `id` of `config.tenant`; `Ok(false)` when that tenant already holds the id.
    async fn create_session(
        &self,
        id: &str,
        config: &SessionConfig,
        now_ms: i64,
    ) -> StoreResult<bool>;
    async fn get_session(&self, at: &SessionKey) -> StoreResult<Option<StoredSession>>;
    /// Replaces the configuration if the revision still matches, refreshing the TTL of every key.
    async fn update_config(
        &self,
        at: &SessionKey,
        config: &SessionConfig,
        expected_revision: u64,
        now_ms: i64,
    ) -> StoreResult<WriteOutcome>;
    /// Refreshes the TTL of every key of the session; `Ok(false)` when it does not exist.
    async fn touch(&self, at: &SessionKey, now_ms: i64) -> StoreResult<bool>;
    /// Removes every key of the session; `Ok(false)` when there was none.
    async fn delete_session(&self, at: &SessionKey) -> StoreResult<bool>;

    /// Turns `start..start+limit` in order (index 0 is the oldest).
    async fn turns(&self, at: &SessionKey, start: u64, limit: usize) -> StoreResult<Vec<Turn>>;
    /// The newest `count` turns, oldest first: reading cost does not grow with history length.
    async fn recent_turns(&self, at: &SessionKey, count: usize) -> StoreResult<Vec<Turn>>;

    /// Replaces turns in place (`(position, as read, replacement)`), each only if it is
    /// still as read; all or none. `Ok(false)`: one changed meanwhile.
    async fn replace_turns(
        &self,
        at: &SessionKey,
        changes: &[(u64, Turn, Turn)],
    ) -> StoreResult<bool>;

    /// Takes the session's send lease (and the idempotency key) and reads the session
    /// with its newest turns, in one atomic step: one round trip starts a send.
    async fn admit(&self, at: &SessionKey, request: &AdmitRequest<'_>) -> StoreResult<Admission>;
    /// Lengthens the lease to `lease_ms` from now if `lease_token` still holds it;
    /// `Ok(false)` when it does not (it lapsed, or another send has it).
    async fn renew(&self, at: &SessionKey, lease_token: &str, lease_ms: u64) -> StoreResult<bool>;
    /// Gives the lease back after a failed send and forgets the in-flight idempotency mark.
    async fn release(
        &self,
        at: &SessionKey,
        lease_token: &str,
        idempotency_key: Option<&str>,
    ) -> StoreResult<()>;
    /// Appends the turns, adds the usage, stores the idempotent response and releases the lease.
    async fn commit(&self, at: &SessionKey, commit: &Commit) -> StoreResult<CommitOutcome>;

    /// Live session ids of a user, oldest first, pruning the ones that expired.
    async fn user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<String>>;
    /// How many sessions are live: the `sessions_live` gauge (a snapshot, not a transaction).
    async fn count_sessions(&self) -> StoreResult<u64>;

    /// Deletes every session of a user and the index itself; returns how many existed.
    async fn delete_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<u64>;
}

/// The user index is keyed by a digest so that any user id is safe inside a key.
pub(crate) fn user_digest(tenant: &str, user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0u8])
        .chain_update(user_id.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}
