//! API keys and client tokens in Redis.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sr:{keytable:}:records` | hash | key id → the key's JSON record (digests only) |
//! | `sr:{keytable:}:prefixes` | hash | public prefix of a secret → key id |
//! | `sr:{keytable:}:version` | string | bumped by every change; caches compare it |
//! | `sr:{<scope>:<session id>}:ctok` | hash | client token digest → JSON grant, dies with the session |
//!
//! The key table's hash tag `keytable:` is not 32 hex digits and a colon, so it can never
//! share a tag with a session.

use async_trait::async_trait;
use redis::Value;

use super::{RedisStore, to_json};
use crate::domain::scope::SessionKey;
use crate::store::{
    StoreError, StoreResult, WriteOutcome,
    keys::{ClientTokenRecord, KeyRecord, KeyStore},
};

lua!(SAVE, "lua/key_save.lua");
lua!(DELETE, "lua/key_delete.lua");
lua!(LOOKUP, "lua/key_lookup.lua", repeatable);
lua!(ADD_TOKEN, "lua/client_token.lua");

const TABLE: &str = "keytable:";

impl RedisStore {
    fn table_keys(&self) -> [String; 3] {
        ["records", "prefixes", "version"].map(|part| self.key(TABLE, part))
    }
}

fn parse_record(json: &str) -> StoreResult<KeyRecord> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("api key record: {e}")))
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn keys_version(&self) -> StoreResult<u64> {
        let [_, _, version] = self.table_keys();
        let value: Option<u64> = self.query(redis::cmd("GET").arg(version)).await?;
        Ok(value.unwrap_or(0))
    }

    async fn key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let [records, _, _] = self.table_keys();
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(records).arg(key_id))
            .await?;
        json.as_deref().map(parse_record).transpose()
    }

    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<KeyRecord>> {
        let [records, prefixes, _] = self.table_keys();
        let json: Option<String> = self
            .script(&LOOKUP, &[&records, &prefixes], &[prefix])
            .await?;
        json.as_deref().map(parse_record).transpose()
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let [records, _, _] = self.table_keys();
        let all: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(records)).await?;
        all.iter().map(|(_, json)| parse_record(json)).collect()
    }

    async fn save_key(
        &self,
        record: &KeyRecord,
        expected: Option<u64>,
    ) -> StoreResult<WriteOutcome> {
        let [records, prefixes, version] = self.table_keys();
        let expected = expected.map(|r| r.to_string()).unwrap_or_default();
        let mut args = vec![record.key_id.clone(), to_json(record)?, expected];
        args.extend(record.secrets.iter().map(|s| s.prefix.clone()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer: i64 = self
            .script(&SAVE, &[&records, &prefixes, &version], &args)
            .await?;
        Ok(match answer {
            1 => WriteOutcome::Written,
            0 => WriteOutcome::Conflict,
            _ => WriteOutcome::Missing,
        })
    }

    async fn delete_key(&self, key_id: &str) -> StoreResult<bool> {
        let [records, prefixes, version] = self.table_keys();
        let answer: i64 = self
            .script(&DELETE, &[&records, &prefixes, &version], &[key_id])
            .await?;
        Ok(answer == 1)
    }

    async fn add_client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        record: &ClientTokenRecord,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (meta, ctok) = (self.session_key(at, "meta"), self.session_key(at, "ctok"));
        let answer: i64 = self
            .script(
                &ADD_TOKEN,
                &[&meta, &ctok],
                &[digest, &to_json(record)?, &now_ms.to_string()],
            )
            .await?;
        Ok(answer == 1)
    }

    async fn client_token(
        &self,
        at: &SessionKey,
        digest: &str,
        now_ms: i64,
    ) -> StoreResult<Option<ClientTokenRecord>> {
        let ctok = self.session_key(at, "ctok");
        let raw: Value = self.query(redis::cmd("HGET").arg(ctok).arg(digest)).await?;
        let Value::BulkString(json) = raw else {
            return Ok(None);
        };
        let record: ClientTokenRecord = serde_json::from_slice(&json)
            .map_err(|e| StoreError::Corrupt(format!("client token: {e}")))?;
        // The hash dies with its session, so a stored token means a live session.
        Ok((record.expires_at_ms > now_ms).then_some(record))
    }
}
