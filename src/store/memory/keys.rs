//! API keys and client tokens in the memory store, with the Redis store's semantics.

use async_trait::async_trait;

use super::MemoryStore;
use crate::domain::scope::SessionKey;
use crate::store::{
    StoreResult, WriteOutcome,
    keys::{ClientTokenRecord, KeyRecord, KeyStore},
};

#[async_trait]
impl KeyStore for MemoryStore {
    async fn keys_version(&self) -> StoreResult<u64> {
        Ok(self.access.lock()?.version)
    }

    async fn key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        Ok(self.access.lock()?.keys.get(key_id).cloned())
    }

    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<KeyRecord>> {
        let access = self.access.lock()?;
        Ok(access
            .prefixes
            .get(prefix)
            .and_then(|id| access.keys.get(id))
            .cloned())
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        Ok(self.access.lock()?.keys.values().cloned().collect())
    }

    async fn save_key(
        &self,
        record: &KeyRecord,
        expected: Option<u64>,
    ) -> StoreResult<WriteOutcome> {
        let mut access = self.access.lock()?;
        match (access.keys.get(&record.key_id), expected) {
            (Some(_), None) => return Ok(WriteOutcome::Conflict),
            (None, Some(_)) => return Ok(WriteOutcome::Missing),
            (Some(old), Some(revision)) if old.revision != revision => {
                return Ok(WriteOutcome::Conflict);
            }
            _ => {}
        }
        if let Some(old) = access.keys.remove(&record.key_id) {
            for secret in &old.secrets {
                access.prefixes.remove(&secret.prefix);
            }
        }
        for secret in &record.secrets {
            access
                .prefixes
                .insert(secret.prefix.clone(), record.key_id.clone());
        }
        access.keys.insert(record.key_id.clone(), record.clone());
        access.version += 1;
        Ok(WriteOutcome::Written)
    }

    async fn delete_key(&self, key_id: &str) -> StoreResult<bool> {
        let mut access = self.access.lock()?;
        let Some(old) = access.keys.remove(key_id) else {
            return Ok(false);
        };
        for secret in &old.secrets {
            access.prefixes.remove(&secret.prefix);
        }
        access.version += 1;
        Ok(true)
    }

    async fn add_client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        record: &ClientTokenRecord,
        now_ms: i64,
    ) -> StoreResult<bool> {
        // Session mutex first, then the access mutex: the one order used everywhere.
        let mut sessions = self.lock()?;
        let Some(created_at) = sessions.live(at).map(|e| e.session.config.created_at) else {
            return Ok(false);
        };
        let mut access = self.access.lock()?;
        // Tokens of sessions that are gone are swept here, as Redis would have expired them.
        access
            .tokens
            .retain(|id, _| sessions.sessions.contains_key(id));
        let tokens = access.tokens.entry(at.clone()).or_default();
        tokens.retain(|_, (grant, created)| grant.expires_at_ms > now_ms && *created == created_at);
        tokens.insert(digest.to_string(), (record.clone(), created_at));
        Ok(true)
    }

    async fn client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        now_ms: i64,
    ) -> StoreResult<Option<ClientTokenRecord>> {
        let mut sessions = self.lock()?;
        let Some(created_at) = sessions.live(at).map(|e| e.session.config.created_at) else {
            return Ok(None);
        };
        let access = self.access.lock()?;
        Ok(access
            .tokens
            .get(at)
            .and_then(|tokens| tokens.get(digest))
            .filter(|(grant, created)| *created == created_at && grant.expires_at_ms > now_ms)
            .map(|(grant, _)| grant.clone()))
    }
}
