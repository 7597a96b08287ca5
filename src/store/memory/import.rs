//! Bulk imports in the memory store, with the Redis store's semantics: each session in
//! one mutex section, the batch's sessions independent of each other.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{Entry, MemoryStore, State};
use crate::{
    domain::{
        message::Turn,
        scope::SessionKey,
        session::{StoredSession, UsageTotals},
        transfer::ImportMode,
    },
    store::{
        StoreError, StoreResult,
        import::{ImportKey, ImportOutcome, ImportStore, ImportWrite, SessionHead},
    },
};

/// (tenant, key) → record and when it lapses.
type KeyTable = HashMap<(String, String), (KeyRecord, Instant)>;

#[derive(Default)]
pub(super) struct ImportKeys(Mutex<KeyTable>);

#[derive(Clone)]
enum KeyRecord {
    Running(String),
    Done(String, String),
}

fn config_json(config: &crate::domain::session::SessionConfig) -> StoreResult<String> {
    serde_json::to_string(config).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_turns(write: &ImportWrite) -> StoreResult<Vec<Turn>> {
    write
        .turns
        .iter()
        .map(|json| {
            serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("turn: {e}")))
        })
        .collect()
}

impl State {
    fn import_one(&mut self, write: &ImportWrite, turns: Vec<Turn>) -> StoreResult<ImportOutcome> {
        let at = write.key();
        let entry = self.live(&at);
        if write.mode == ImportMode::Create {
            if entry.is_some() {
                return Ok(ImportOutcome::Exists);
            }
        } else {
            let Some(entry) = entry else {
                return Ok(ImportOutcome::Missing);
            };
            let Some(expected) = &write.expected else {
                return Ok(ImportOutcome::Changed);
            };
            if config_json(&entry.session.config)? != expected.config_json {
                return Ok(ImportOutcome::Changed);
            }
            if entry.lease_holder().is_some() {
                return Ok(ImportOutcome::Busy);
            }
            if write.mode == ImportMode::Append
                && entry.turns.len() as u64 != expected.message_count
            {
                return Ok(ImportOutcome::Changed);
            }
        }
        match (write.mode, self.live(&at)) {
            (ImportMode::Append, Some(entry)) => {
                entry.session.message_count += turns.len() as u64;
                entry.turns.extend(turns);
                entry.refresh(write.now_ms);
            }
            (_, existing) => {
                let revision = existing.as_ref().map_or(0, |e| e.session.revision) + 1;
                // A replaced history voids the summary; the generation keeps counting so
                // that a job that read the old one commits nothing.
                let summary_generation = existing.map_or(0, |e| e.session.summary_generation + 1);
                if let Some(old) = self.sessions.remove(&at) {
                    self.unindex(&write.id, &old.session.config);
                }
                let mut entry = Entry {
                    session: StoredSession {
                        id: write.id.clone(),
                        config: write.config.clone(),
                        revision,
                        last_activity_ms: write.now_ms,
                        message_count: turns.len() as u64,
                        usage: UsageTotals::default(),
                        summary: write.summary.clone(),
                        summary_generation,
                    },
                    expires: Instant::now(),
                    turns,
                    lease: None,
                    compaction_lease: None,
                    idempotency: HashMap::new(),
                };
                entry.refresh(write.now_ms);
                self.sessions.insert(at, entry);
                self.index(&write.id, &write.config);
            }
        }
        Ok(ImportOutcome::Written)
    }
}

#[async_trait]
impl ImportStore for MemoryStore {
    async fn import_heads(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Option<SessionHead>>> {
        let mut state = self.lock()?;
        ids.iter()
            .map(|id| {
                state
                    .live(&SessionKey::new(tenant, id))
                    .map(|e| {
                        Ok(SessionHead {
                            config: e.session.config.clone(),
                            config_json: config_json(&e.session.config)?,
                            message_count: e.turns.len() as u64,
                        })
                    })
                    .transpose()
            })
            .collect()
    }

    async fn import_sessions(&self, writes: &[ImportWrite]) -> StoreResult<Vec<ImportOutcome>> {
        let parsed: Vec<Vec<Turn>> = writes.iter().map(parse_turns).collect::<Result<_, _>>()?;
        // Session mutex first, then the access mutex: the one order used everywhere.
        let mut state = self.lock()?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for (write, turns) in writes.iter().zip(parsed) {
            outcomes.push(state.import_one(write, turns)?);
        }
        let mut access = self.access.lock()?;
        for (write, outcome) in writes.iter().zip(&outcomes) {
            // A new or replaced conversation does not inherit the old one's client tokens.
            if *outcome == ImportOutcome::Written && write.mode != ImportMode::Append {
                access.tokens.remove(&write.key());
            }
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
        let mut keys = self.imports.lock()?;
        let now = Instant::now();
        keys.retain(|_, (_, until)| *until > now);
        let slot = (tenant.to_string(), key.to_string());
        Ok(match keys.get(&slot) {
            Some((KeyRecord::Running(_), _)) => ImportKey::InFlight,
            Some((KeyRecord::Done(fingerprint, result), _)) => ImportKey::Done {
                fingerprint: fingerprint.clone(),
                result: result.clone(),
            },
            None => {
                let until = now + Duration::from_millis(lease_ms);
                keys.insert(slot, (KeyRecord::Running(token.to_string()), until));
                ImportKey::Claimed
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
        let mut keys = self.imports.lock()?;
        if let Some((KeyRecord::Running(holder), until)) =
            keys.get_mut(&(tenant.to_string(), key.to_string()))
            && holder == token
            && *until > Instant::now()
        {
            *until = Instant::now() + Duration::from_millis(lease_ms);
        }
        Ok(())
    }

    async fn import_key_settle(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        done: Option<(&str, &str)>,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        let mut keys = self.imports.lock()?;
        let slot = (tenant.to_string(), key.to_string());
        let holds = matches!(keys.get(&slot), Some((KeyRecord::Running(holder), until))
            if holder == token && *until > Instant::now());
        if !holds {
            return Ok(());
        }
        match done {
            Some((fingerprint, result)) => {
                let record = KeyRecord::Done(fingerprint.to_string(), result.to_string());
                keys.insert(
                    slot,
                    (record, Instant::now() + Duration::from_millis(ttl_ms)),
                );
            }
            None => {
                keys.remove(&slot);
            }
        }
        Ok(())
    }
}

impl ImportKeys {
    fn lock(&self) -> StoreResult<std::sync::MutexGuard<'_, KeyTable>> {
        self.0
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}
