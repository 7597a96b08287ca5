//! Bulk imports in Redis.
//!
//! A batch of sessions goes out as one pipeline: one `EVALSHA` of `import_write.lua` per
//! session, each atomic over that session's hash-tagged keys, so one round trip carries a
//! whole batch and one refused session never affects another. The user index lives under
//! another hash tag, so it is a second pipeline, written after the sessions (as in
//! `create_session`).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sr:import:<digest>` | string | an import's `Idempotency-Key` record, per tenant (see `import_key.lua`) |

use async_trait::async_trait;
use redis::Value;

use super::{
    RedisStore, ScriptBatch, scripts, text, to_json,
    users::{IndexEntry, incarnation},
};
use crate::{
    domain::{scope::SessionKey, session::SessionConfig, transfer::ImportMode},
    store::{
        StoreError, StoreResult,
        import::{ImportKey, ImportOutcome, ImportStore, ImportWrite, SessionHead},
        user_digest,
    },
};

lua!(WRITE, "lua/import_write.lua");
lua!(KEY, "lua/import_key.lua");

/// What the write script answered for one session: its user index and incarnation
/// before and after.
struct Written {
    old_uidx: String,
    old_incarnation: String,
    ttl_ms: String,
    uidx: String,
    incarnation: String,
}

impl RedisStore {
    fn import_key_name(&self, tenant: &str, key: &str) -> String {
        // The digest keeps any key text safe inside a Redis key, and tenants apart.
        format!("{}:import:{}", self.prefix, user_digest(tenant, key))
    }

    async fn key_op(&self, tenant: &str, key: &str, args: &[&str]) -> StoreResult<Value> {
        let name = self.import_key_name(tenant, key);
        self.script(&KEY, &[&name], args).await
    }

    /// The index pipeline for the written sessions; `false` where it failed.
    async fn index_written(
        &self,
        writes: &[ImportWrite],
        written: &[Option<Written>],
    ) -> Vec<bool> {
        let mut batch = ScriptBatch::new(&scripts::USER_INDEX);
        let mut slots = Vec::new();
        for (i, (write, done)) in writes.iter().zip(written).enumerate() {
            let Some(done) = done else { continue };
            let entry = |index, incarnation| IndexEntry {
                index,
                id: &write.id,
                incarnation,
            };
            let old = entry(&done.old_uidx, &done.old_incarnation).name();
            let new = entry(&done.uidx, &done.incarnation).name();
            // A replaced session is a new incarnation: its old entry goes (unless it is
            // the very entry written now: an append keeps index and incarnation).
            if !done.old_uidx.is_empty() && (done.old_uidx != done.uidx || old != new) {
                batch.cmd("ZREM").arg(&done.old_uidx).arg(old);
                slots.push(i);
            }
            if !done.uidx.is_empty() {
                batch
                    .call(std::slice::from_ref(&done.uidx))
                    .arg(new)
                    .arg(write.config.created_at.timestamp_micros())
                    .arg(&done.ttl_ms);
                slots.push(i);
            }
        }
        let mut ok = vec![true; writes.len()];
        if slots.is_empty() {
            return ok;
        }
        match self.run_scripts(&batch).await {
            Ok(replies) if replies.len() == slots.len() => {
                for (slot, reply) in slots.iter().zip(&replies) {
                    if matches!(reply, Value::ServerError(_)) {
                        ok[*slot] = false;
                    }
                }
            }
            _ => slots.iter().for_each(|slot| ok[*slot] = false),
        }
        ok
    }
}

fn write_args(write: &ImportWrite, uidx: &str, incarnation: &str) -> StoreResult<Vec<String>> {
    let (expected_cfg, expected_len) = match &write.expected {
        Some(head) => (head.config_json.clone(), head.message_count.to_string()),
        None => (String::new(), String::new()),
    };
    let summary = write.summary.as_ref().map(to_json).transpose()?;
    let mut args = Vec::with_capacity(9);
    args.extend([
        write.mode.as_str().to_string(),
        write.config_json.clone(),
        write.config.ttl_seconds.saturating_mul(1000).to_string(),
        write.now_ms.to_string(),
        uidx.to_string(),
        expected_cfg,
        expected_len,
        incarnation.to_string(),
        summary.unwrap_or_default(),
    ]);
    Ok(args)
}

fn outcome(reply: &Value) -> (ImportOutcome, Option<Written>) {
    let Value::Array(items) = reply else {
        if let Value::ServerError(err) = reply {
            // The script itself failed: a bug or an out-of-memory Redis. No content is logged.
            tracing::error!(code = ?err.code(), "import write refused by redis");
        }
        return (ImportOutcome::Unavailable, None);
    };
    match items.first() {
        Some(Value::Int(1)) => {
            let written = Written {
                old_uidx: text(items.get(1)),
                old_incarnation: text(items.get(2)),
                ttl_ms: text(items.get(3)),
                uidx: text(items.get(4)),
                incarnation: text(items.get(5)),
            };
            (ImportOutcome::Written, Some(written))
        }
        Some(Value::Int(0)) => (ImportOutcome::Exists, None),
        Some(Value::Int(-1)) => (ImportOutcome::Missing, None),
        Some(Value::Int(-2)) => (ImportOutcome::Busy, None),
        Some(Value::Int(-3)) => (ImportOutcome::Changed, None),
        _ => (ImportOutcome::Unavailable, None),
    }
}

#[async_trait]
impl ImportStore for RedisStore {
    async fn import_heads(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Option<SessionHead>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let at = SessionKey::new(tenant, id);
            pipe.cmd("HGET")
                .arg(self.session_key(&at, "meta"))
                .arg("cfg");
            pipe.cmd("LLEN").arg(self.session_key(&at, "turns"));
        }
        let replies: Vec<(Option<String>, u64)> = {
            let flat: Vec<Value> = self.pipeline(&pipe).await?;
            flat.chunks(2)
                .map(|pair| {
                    let cfg = match pair.first() {
                        Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                        _ => None,
                    };
                    let len = match pair.get(1) {
                        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                        _ => 0,
                    };
                    (cfg, len)
                })
                .collect()
        };
        replies
            .into_iter()
            .map(|(cfg, message_count)| {
                cfg.map(|config_json| {
                    let config: SessionConfig = serde_json::from_str(&config_json)
                        .map_err(|e| StoreError::Corrupt(format!("session config: {e}")))?;
                    Ok(SessionHead {
                        config,
                        config_json,
                        message_count,
                    })
                })
                .transpose()
            })
            .collect()
    }

    async fn import_sessions(&self, writes: &[ImportWrite]) -> StoreResult<Vec<ImportOutcome>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = ScriptBatch::new(&WRITE);
        for write in writes {
            let uidx = match (&write.mode, &write.config.user_id) {
                (ImportMode::Append, _) | (_, None) => String::new(),
                (_, Some(user)) => self.user_key(&write.config.tenant, user),
            };
            // Appending keeps the session's incarnation; the script ignores this one then.
            let args = write_args(write, &uidx, &incarnation())?;
            batch
                .call(&self.session_keys(&write.key()))
                .arg(args)
                .arg(&write.turns);
        }
        let replies = self.run_scripts(&batch).await?;
        if replies.len() != writes.len() {
            return Err(StoreError::Corrupt("import pipeline answer".into()));
        }
        let (mut outcomes, written): (Vec<_>, Vec<_>) = replies.iter().map(outcome).unzip();
        let indexed = self.index_written(writes, &written).await;
        for (i, ok) in indexed.into_iter().enumerate() {
            if ok || outcomes[i] != ImportOutcome::Written {
                continue;
            }
            // As in create_session: a session its user's logout would miss is taken back.
            if writes[i].mode == ImportMode::Create {
                let _ = crate::store::Store::delete_session(self, &writes[i].key()).await;
            }
            outcomes[i] = ImportOutcome::Unavailable;
        }
        Ok(outcomes)
    }

    async fn import_key_claim(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        lease_ms: u64,
    ) -> StoreResult<ImportKey> {
        let answer = self
            .key_op(tenant, key, &["claim", token, &lease_ms.to_string()])
            .await?;
        let Value::Array(items) = answer else {
            return Err(StoreError::Corrupt("import key answer".into()));
        };
        Ok(match text(items.first()).as_str() {
            "claimed" => ImportKey::Claimed,
            "in_flight" => ImportKey::InFlight,
            _ => {
                let record = text(items.get(1));
                let (fingerprint, result) = record
                    .strip_prefix("D:")
                    .and_then(|r| r.split_once(':'))
                    .ok_or_else(|| StoreError::Corrupt("import key record".into()))?;
                ImportKey::Done {
                    fingerprint: fingerprint.to_string(),
                    result: result.to_string(),
                }
            }
        })
    }

    async fn import_key_renew(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        lease_ms: u64,
    ) -> StoreResult<()> {
        self.key_op(tenant, key, &["renew", token, &lease_ms.to_string()])
            .await
            .map(drop)
    }

    async fn import_key_settle(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        done: Option<(&str, &str)>,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        let ttl = ttl_ms.to_string();
        let args: Vec<&str> = match done {
            Some((fingerprint, result)) => vec!["finish", token, &ttl, fingerprint, result],
            None => vec!["release", token, &ttl],
        };
        self.key_op(tenant, key, &args).await.map(drop)
    }
}
