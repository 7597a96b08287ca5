//! The session half of the Redis store: create, read, change, expire, delete, the
//! send lease and its atomic commit, and the user index.

use async_trait::async_trait;
use redis::Value;

use super::{
    RedisStore, scripts, text, to_json,
    users::{IndexEntry, incarnation, refreshed},
};
use crate::{
    domain::{
        message::Turn,
        scope::SessionKey,
        session::{SessionConfig, StoredSession},
    },
    store::{
        Admission, AdmitRequest, Admitted, Commit, CommitOutcome, Store, StoreError, StoreResult,
        WriteOutcome,
    },
};

fn status(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn from_value<T: redis::FromRedisValue>(value: Value) -> StoreResult<T> {
    redis::from_redis_value(value).map_err(|e| StoreError::Corrupt(format!("reply: {e}")))
}

fn parse_turns(raw: Vec<Vec<u8>>) -> StoreResult<Vec<Turn>> {
    raw.iter()
        .map(|bytes| {
            serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("turn: {e}")))
        })
        .collect()
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.writable().await
    }

    /// One `SCAN` pass over the session keys, each call bounded like any command: about one
    /// round trip per thousand keys of the database.
    async fn count_sessions(&self) -> StoreResult<u64> {
        self.readiness.gate()?;
        let mut count = 0u64;
        self.scan_each(&self.key("*:*", "meta"), 1000, |keys| {
            count += keys.len() as u64
        })
        .await?;
        Ok(count)
    }

    async fn create_session(
        &self,
        id: &str,
        config: &SessionConfig,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let ttl_ms = config.ttl_seconds.saturating_mul(1000);
        let uidx = match &config.user_id {
            Some(user) => self.user_key(&config.tenant, user),
            None => String::new(),
        };
        let fresh = incarnation();
        let args = [
            to_json(config)?,
            ttl_ms.to_string(),
            now_ms.to_string(),
            uidx.clone(),
            fresh.clone(),
        ];
        let at = SessionKey::new(&config.tenant, id);
        let meta = self.session_key(&at, "meta");
        let created: i64 = self
            .script(
                &scripts::CREATE,
                &[&meta],
                &args.each_ref().map(String::as_str),
            )
            .await?;
        if created != 1 {
            // The id is taken: its owner's index must not learn about this caller.
            return Ok(false);
        }
        // A session missing from its user's index would survive logout: if the index
        // cannot be written, the session is taken back and the caller sees the failure.
        let entry = IndexEntry {
            index: &uidx,
            id,
            incarnation: &fresh,
        };
        let indexed = self
            .refresh_user_index(&entry, config.created_at.timestamp_micros(), ttl_ms)
            .await;
        if let Err(err) = indexed {
            let _ = self.delete_session(&at).await;
            return Err(err);
        }
        Ok(true)
    }

    async fn get_session(&self, at: &SessionKey) -> StoreResult<Option<StoredSession>> {
        let fields: Vec<(String, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(self.session_key(at, "meta")))
            .await?;
        self.parse_session(at.id(), fields)
    }

    async fn update_config(
        &self,
        at: &SessionKey,
        config: &SessionConfig,
        expected_revision: u64,
        now_ms: i64,
    ) -> StoreResult<WriteOutcome> {
        let [meta, turns, _, idem, ctok] = self.session_keys(at);
        let ttl_ms = config.ttl_seconds.saturating_mul(1000);
        let args = [
            to_json(config)?,
            expected_revision.to_string(),
            ttl_ms.to_string(),
            now_ms.to_string(),
        ];
        let answer: Value = self
            .script(
                &scripts::UPDATE,
                &[&meta, &turns, &idem, &ctok],
                &args.each_ref().map(String::as_str),
            )
            .await?;
        match (refreshed(&answer), status(&answer)) {
            (Some(done), _) => {
                let created_us = config.created_at.timestamp_micros();
                self.refresh_user_index(&done.entry(at.id()), created_us, done.ttl_ms)
                    .await?;
                Ok(WriteOutcome::Written)
            }
            (None, Some(0)) => Ok(WriteOutcome::Conflict),
            _ => Ok(WriteOutcome::Missing),
        }
    }

    async fn touch(&self, at: &SessionKey, now_ms: i64) -> StoreResult<bool> {
        let [meta, turns, _, idem, ctok] = self.session_keys(at);
        let answer: Value = self
            .script(
                &scripts::TOUCH,
                &[&meta, &turns, &idem, &ctok],
                &[&now_ms.to_string()],
            )
            .await?;
        let Some(done) = refreshed(&answer) else {
            return Ok(false);
        };
        // The index only needs a TTL at least as long as the session's: creation time is kept.
        self.refresh_user_index(&done.entry(at.id()), now_ms * 1000, done.ttl_ms)
            .await?;
        Ok(true)
    }

    async fn delete_session(&self, at: &SessionKey) -> StoreResult<bool> {
        let keys = self.session_keys(at);
        let answer: Value = self
            .script(&scripts::DELETE, &keys.each_ref().map(String::as_str), &[])
            .await?;
        let Value::Array(owner) = &answer else {
            return Ok(false);
        };
        let (index, held) = (text(owner.first()), text(owner.get(1)));
        if !index.is_empty() {
            let entry = IndexEntry {
                index: &index,
                id: at.id(),
                incarnation: &held,
            };
            let () = self
                .query(redis::cmd("ZREM").arg(&index).arg(entry.name()))
                .await?;
        }
        Ok(true)
    }

    async fn turns(&self, at: &SessionKey, start: u64, limit: usize) -> StoreResult<Vec<Turn>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(limit as u64 - 1);
        let raw = self
            .query(
                redis::cmd("LRANGE")
                    .arg(self.session_key(at, "turns"))
                    .arg(start)
                    .arg(stop),
            )
            .await?;
        parse_turns(raw)
    }

    async fn recent_turns(&self, at: &SessionKey, count: usize) -> StoreResult<Vec<Turn>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let start = -i64::try_from(count).unwrap_or(i64::MAX);
        let raw = self
            .query(
                redis::cmd("LRANGE")
                    .arg(self.session_key(at, "turns"))
                    .arg(start)
                    .arg(-1),
            )
            .await?;
        parse_turns(raw)
    }

    async fn replace_turns(
        &self,
        at: &SessionKey,
        changes: &[(u64, Turn, Turn)],
    ) -> StoreResult<bool> {
        let mut args = Vec::with_capacity(changes.len() * 3);
        for (index, old, new) in changes {
            args.extend([index.to_string(), to_json(old)?, to_json(new)?]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let list = self.session_key(at, "turns");
        let replaced: i64 = self
            .script(&scripts::REPLACE_TURNS, &[&list], &args)
            .await?;
        Ok(replaced == 1)
    }

    async fn admit(&self, at: &SessionKey, request: &AdmitRequest<'_>) -> StoreResult<Admission> {
        let [meta, turns, lease, idem, ctok] = self.session_keys(at);
        let (key, fingerprint, ttl) = match request.claim {
            Some(c) => (c.key.as_str(), c.fingerprint.as_str(), c.ttl_ms),
            None => ("", "", 0),
        };
        let numbers = [
            request.lease_ms.to_string(),
            request.now_ms.to_string(),
            ttl.to_string(),
            request.tail.to_string(),
            request.hold_ms.to_string(),
        ];
        let args = [
            request.lease_token,
            &numbers[0],
            &numbers[1],
            key,
            fingerprint,
            &numbers[2],
            request.tenant,
            &numbers[3],
            &numbers[4],
        ];
        let keys = [&meta, &lease, &idem, &turns, &ctok].map(String::as_str);
        let mut answer: Vec<Value> = self.fenced_script(&scripts::ADMIT, &keys, &args).await?;
        // Every answer ends with Redis' clock, which the next fences are computed by.
        if let Some(Value::Int(clock)) = answer.pop() {
            self.clock.observe(clock);
        }
        let word = |i: usize| text(answer.get(i));
        Ok(match word(0).as_str() {
            "admitted" => {
                let mut parts = answer.drain(1..);
                let (Some(fields), Some(tail)) = (parts.next(), parts.next()) else {
                    return Err(StoreError::Corrupt("admit: short answer".into()));
                };
                let session = self
                    .parse_session(at.id(), from_value(fields)?)?
                    .ok_or_else(|| StoreError::Corrupt("admit: no session fields".into()))?;
                let tail = parse_turns(from_value(tail)?)?;
                Admission::Admitted(Box::new(Admitted { session, tail }))
            }
            "missing" => Admission::Missing,
            "replay" => Admission::Replay(word(1)),
            "in_use" => Admission::KeyInUse,
            "reused" => Admission::KeyReused,
            "late" => {
                return Err(StoreError::Unavailable(
                    "redis ran an admission after its deadline".into(),
                ));
            }
            _ => Admission::Busy {
                retry_after_ms: answer
                    .get(1)
                    .and_then(status)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(1000),
            },
        })
    }

    async fn renew(&self, at: &SessionKey, lease_token: &str, lease_ms: u64) -> StoreResult<bool> {
        let lease = self.session_key(at, "lease");
        let renewed: i64 = self
            .script(
                &scripts::RENEW,
                &[&lease],
                &[lease_token, &lease_ms.to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    async fn release(
        &self,
        at: &SessionKey,
        lease_token: &str,
        idempotency_key: Option<&str>,
    ) -> StoreResult<()> {
        let [_, _, lease, idem, _] = self.session_keys(at);
        let key = idempotency_key.unwrap_or("");
        self.script::<i64>(&scripts::RELEASE, &[&lease, &idem], &[lease_token, key])
            .await
            .map(drop)
    }

    async fn commit(&self, at: &SessionKey, commit: &Commit) -> StoreResult<CommitOutcome> {
        let keys = self.session_keys(at);
        let (idem_key, idem_record) = match &commit.idempotency {
            Some((claim, response)) => (
                claim.key.clone(),
                serde_json::json!({"state": "done", "fp": claim.fingerprint, "at": commit.now_ms, "response": response})
                    .to_string(),
            ),
            None => (String::new(), String::new()),
        };
        let mut args = vec![
            commit.lease_token.clone(),
            commit.expected_len.to_string(),
            commit.now_ms.to_string(),
            commit.usage.prompt_tokens.to_string(),
            commit.usage.completion_tokens.to_string(),
            commit.usage.cost_nano_usd.to_string(),
            idem_key,
            idem_record,
        ];
        for turn in &commit.turns {
            args.push(to_json(turn)?);
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer: Value = self
            .fenced_script(
                &scripts::COMMIT,
                &keys.each_ref().map(String::as_str),
                &arg_refs,
            )
            .await?;
        match (refreshed(&answer), status(&answer)) {
            (Some(done), _) => {
                self.extend_user_index_soon(at, done.index, done.ttl_ms, commit.now_ms);
                Ok(CommitOutcome::Committed)
            }
            (None, Some(0)) => Ok(CommitOutcome::Missing),
            // Nothing stored, and never will be: the client may retry.
            (None, Some(-2)) => Err(StoreError::Unavailable(
                "redis ran a commit after its deadline".into(),
            )),
            _ => Ok(CommitOutcome::LeaseLost),
        }
    }

    async fn user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        _now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        self.list_user(tenant, user_id).await
    }

    async fn delete_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        _now_ms: i64,
    ) -> StoreResult<u64> {
        self.logout_user(tenant, user_id).await
    }
}
