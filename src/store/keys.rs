//! Persistence of API keys made through the admin API, and of session-scoped client tokens.
//!
//! Only digests of secrets are ever handed to a store: a leaked Redis dump or backup
//! holds nothing that authenticates.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{StoreResult, WriteOutcome};
use crate::domain::scope::SessionKey;

/// One API key as stored: who it belongs to, its limits and the digests of its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub name: String,
    pub tenant: String,
    pub rate_limit_rpm: Option<u32>,
    pub rate_limit_tpm: Option<u32>,
    pub daily_budget_usd: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change; guards rotation against a concurrent one.
    pub revision: u64,
    /// The current secret last; rotated-out ones stay until their grace period ends.
    pub secrets: Vec<SecretDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretDigest {
    /// The public part of the key, used to find the record without knowing the secret.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub digest: String,
    pub created_at: DateTime<Utc>,
    /// Set by a rotation: the secret stops working at this moment.
    pub retires_at: Option<DateTime<Utc>>,
}

/// What a client token grants, stored under its digest beside its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTokenRecord {
    pub tenant: String,
    /// The key that issued the token: its limits apply, and revoking it kills the token.
    pub key_id: String,
    /// Milliseconds since the epoch.
    pub expires_at_ms: i64,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// A counter bumped by every change to the key table: an instance's cache compares it
    /// to know when to forget what it holds.
    async fn keys_version(&self) -> StoreResult<u64>;
    async fn key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>>;
    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<KeyRecord>>;
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Writes the record and its prefix index if the stored revision is still `expected`
    /// (`None`: the key must not exist yet); `Missing` when an expected key is gone.
    async fn save_key(
        &self,
        record: &KeyRecord,
        expected: Option<u64>,
    ) -> StoreResult<WriteOutcome>;
    /// Removes the key and its prefixes; `Ok(false)` when there was none.
    async fn delete_key(&self, key_id: &str) -> StoreResult<bool>;

    /// Stores a client token beside its session; `Ok(false)` when the session does not exist.
    async fn add_client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        record: &ClientTokenRecord,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// The token's grant, if the token is known, unexpired and its session still exists.
    async fn client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        now_ms: i64,
    ) -> StoreResult<Option<ClientTokenRecord>>;
}
