//! The in-process store: the zero-setup default of `cargo run`, for development only.
//!
//! It mirrors the Redis store's semantics (sliding TTL, leases, fencing, idempotency) and
//! passes the same test suite. One mutex guards everything; no critical section awaits, so
//! the lock is never held across a suspension point.

mod access;
mod compaction;
mod import;
mod keys;
mod metering;
mod users;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{
    Admission, AdmitRequest, Admitted, Commit, CommitOutcome, Store, StoreError, StoreResult,
    WriteOutcome, tail_len,
};
use crate::domain::{
    message::Turn,
    scope::SessionKey,
    session::{SessionConfig, StoredSession, UsageTotals},
};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    access: access::Access,
    imports: import::ImportKeys,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionKey, Entry>,
    /// (tenant, user id) → creation time (µs) and session id, in creation order.
    users: HashMap<(String, String), BTreeMap<(i64, String), ()>>,
    writes: u64,
}

struct Entry {
    session: StoredSession,
    expires: Instant,
    turns: Vec<Turn>,
    lease: Option<(String, Instant)>,
    /// The compaction job's lease, independent of the send lease: sends go on meanwhile.
    compaction_lease: Option<(String, Instant)>,
    idempotency: HashMap<String, IdemRecord>,
}

struct IdemRecord {
    fingerprint: String,
    at_ms: i64,
    /// `None` while the request that claimed the key is in flight.
    response: Option<String>,
    lease: String,
}

impl Entry {
    fn refresh(&mut self, now_ms: i64) {
        self.session.last_activity_ms = now_ms;
        self.expires = Instant::now() + Duration::from_secs(self.session.config.ttl_seconds);
    }

    fn lease_holder(&self) -> Option<&str> {
        match &self.lease {
            Some((token, until)) if *until > Instant::now() => Some(token),
            _ => None,
        }
    }
}

impl State {
    /// A live session; an expired one is removed on sight, as Redis would have done.
    fn live(&mut self, at: &SessionKey) -> Option<&mut Entry> {
        if self
            .sessions
            .get(at)
            .is_some_and(|e| e.expires <= Instant::now())
        {
            self.sessions.remove(at);
            crate::metrics::record_sessions_expired(1);
        }
        self.sessions.get_mut(at)
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let before = self.sessions.len();
        self.sessions.retain(|_, e| e.expires > now);
        crate::metrics::record_sessions_expired((before - self.sessions.len()) as u64);
        let sessions = &self.sessions;
        for ((tenant, _), index) in &mut self.users {
            index.retain(|(_, id), _| sessions.contains_key(&SessionKey::new(tenant, id)));
        }
        self.users.retain(|_, index| !index.is_empty());
    }
}

const SWEEP_EVERY_WRITES: u64 = 1024;

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(drop)
    }

    async fn count_sessions(&self) -> StoreResult<u64> {
        let now = Instant::now();
        let state = self.lock()?;
        Ok(state.sessions.values().filter(|e| e.expires > now).count() as u64)
    }

    async fn create_session(
        &self,
        id: &str,
        config: &SessionConfig,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        state.writes += 1;
        if state.writes % SWEEP_EVERY_WRITES == 0 {
            state.sweep();
        }
        let at = SessionKey::new(&config.tenant, id);
        if state.live(&at).is_some() {
            return Ok(false);
        }
        state.index(id, config);
        let session = StoredSession {
            id: id.to_string(),
            config: config.clone(),
            revision: 1,
            last_activity_ms: now_ms,
            message_count: 0,
            usage: UsageTotals::default(),
            summary: None,
            summary_generation: 0,
        };
        let mut entry = Entry {
            session,
            expires: Instant::now(),
            turns: Vec::new(),
            lease: None,
            compaction_lease: None,
            idempotency: HashMap::new(),
        };
        entry.refresh(now_ms);
        state.sessions.insert(at, entry);
        Ok(true)
    }

    async fn get_session(&self, at: &SessionKey) -> StoreResult<Option<StoredSession>> {
        Ok(self.lock()?.live(at).map(|e| e.session.clone()))
    }

    async fn update_config(
        &self,
        at: &SessionKey,
        config: &SessionConfig,
        expected_revision: u64,
        now_ms: i64,
    ) -> StoreResult<WriteOutcome> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(WriteOutcome::Missing);
        };
        if entry.session.revision != expected_revision {
            return Ok(WriteOutcome::Conflict);
        }
        entry.session.config = config.clone();
        entry.session.revision += 1;
        entry.refresh(now_ms);
        Ok(WriteOutcome::Written)
    }

    async fn touch(&self, at: &SessionKey, now_ms: i64) -> StoreResult<bool> {
        let mut state = self.lock()?;
        Ok(state.live(at).map(|e| e.refresh(now_ms)).is_some())
    }

    async fn delete_session(&self, at: &SessionKey) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(false);
        };
        let config = entry.session.config.clone();
        state.sessions.remove(at);
        state.unindex(at.id(), &config);
        Ok(true)
    }

    async fn turns(&self, at: &SessionKey, start: u64, limit: usize) -> StoreResult<Vec<Turn>> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(Vec::new());
        };
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        Ok(entry
            .turns
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn recent_turns(&self, at: &SessionKey, count: usize) -> StoreResult<Vec<Turn>> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(Vec::new());
        };
        let from = entry.turns.len().saturating_sub(count);
        Ok(entry.turns[from..].to_vec())
    }

    async fn replace_turns(
        &self,
        at: &SessionKey,
        changes: &[(u64, Turn, Turn)],
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(false);
        };
        let still = |(index, old, _): &(u64, Turn, Turn)| {
            usize::try_from(*index)
                .ok()
                .and_then(|i| entry.turns.get(i))
                .is_some_and(|turn| turn == old)
        };
        if !changes.iter().all(still) {
            return Ok(false);
        }
        for (index, _, new) in changes {
            entry.turns[*index as usize] = new.clone();
        }
        Ok(true)
    }

    async fn admit(&self, at: &SessionKey, request: &AdmitRequest<'_>) -> StoreResult<Admission> {
        let AdmitRequest {
            lease_token,
            lease_ms,
            claim,
            now_ms,
            ..
        } = *request;
        let mut state = self.lock()?;
        let Some(entry) = state
            .live(at)
            .filter(|entry| entry.session.config.tenant == request.tenant)
        else {
            return Ok(Admission::Missing);
        };
        let holder = entry.lease_holder().map(str::to_string);
        // Run again with the same token, an admission answers as it did (see admit.lua).
        let ours = holder.as_deref() == Some(lease_token);
        if let Some(claim) = claim
            && !ours
            && let Some(record) = entry.idempotency.get(&claim.key)
        {
            let same = record.fingerprint == claim.fingerprint;
            let fresh = u64::try_from(now_ms - record.at_ms).unwrap_or(0) < claim.ttl_ms;
            match &record.response {
                Some(_) if fresh && !same => return Ok(Admission::KeyReused),
                Some(response) if fresh => return Ok(Admission::Replay(response.clone())),
                None if holder.as_deref() == Some(record.lease.as_str()) => {
                    return Ok(if same {
                        Admission::KeyInUse
                    } else {
                        Admission::KeyReused
                    });
                }
                _ => {}
            }
        }
        if holder.is_some() && !ours {
            let remaining = entry.lease.as_ref().map_or(Duration::ZERO, |(_, until)| {
                until.saturating_duration_since(Instant::now())
            });
            return Ok(Admission::Busy {
                retry_after_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            });
        }
        entry.lease = Some((
            lease_token.to_string(),
            Instant::now() + Duration::from_millis(lease_ms),
        ));
        let held = Instant::now() + Duration::from_millis(request.hold_ms);
        entry.expires = entry.expires.max(held);
        if let Some(claim) = claim {
            let record = IdemRecord {
                fingerprint: claim.fingerprint.clone(),
                at_ms: now_ms,
                response: None,
                lease: lease_token.to_string(),
            };
            entry.idempotency.insert(claim.key.clone(), record);
        }
        let from = entry
            .turns
            .len()
            .saturating_sub(tail_len(&entry.session.config, request.tail));
        Ok(Admission::Admitted(Box::new(Admitted {
            session: entry.session.clone(),
            tail: entry.turns[from..].to_vec(),
        })))
    }

    async fn renew(&self, at: &SessionKey, lease_token: &str, lease_ms: u64) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(false);
        };
        if entry.lease_holder() != Some(lease_token) {
            return Ok(false);
        }
        entry.lease = Some((
            lease_token.to_string(),
            Instant::now() + Duration::from_millis(lease_ms),
        ));
        Ok(true)
    }

    async fn release(
        &self,
        at: &SessionKey,
        lease_token: &str,
        idempotency_key: Option<&str>,
    ) -> StoreResult<()> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(());
        };
        if entry
            .lease
            .as_ref()
            .is_some_and(|(token, _)| token == lease_token)
        {
            entry.lease = None;
        }
        if let Some(key) = idempotency_key
            && entry
                .idempotency
                .get(key)
                .is_some_and(|r| r.response.is_none() && r.lease == lease_token)
        {
            entry.idempotency.remove(key);
        }
        Ok(())
    }

    async fn commit(&self, at: &SessionKey, commit: &Commit) -> StoreResult<CommitOutcome> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(CommitOutcome::Missing);
        };
        if entry.lease_holder() != Some(commit.lease_token.as_str())
            || entry.turns.len() as u64 != commit.expected_len
        {
            return Ok(CommitOutcome::LeaseLost);
        }
        entry.turns.extend(commit.turns.iter().cloned());
        let session = &mut entry.session;
        session.message_count += commit.turns.len() as u64;
        session.usage.prompt_tokens += commit.usage.prompt_tokens;
        session.usage.completion_tokens += commit.usage.completion_tokens;
        session.usage.cost_nano_usd += commit.usage.cost_nano_usd;
        if let Some((claim, response)) = &commit.idempotency {
            let record = IdemRecord {
                fingerprint: claim.fingerprint.clone(),
                at_ms: commit.now_ms,
                response: Some(response.clone()),
                lease: commit.lease_token.clone(),
            };
            entry.idempotency.insert(claim.key.clone(), record);
        }
        entry.lease = None;
        entry.refresh(commit.now_ms);
        Ok(CommitOutcome::Committed)
    }

    async fn user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        _now_ms: i64,
    ) -> StoreResult<Vec<String>> {
        Ok(self.lock()?.user_index(tenant, user_id))
    }

    async fn delete_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        _now_ms: i64,
    ) -> StoreResult<u64> {
        Ok(self.lock()?.logout(tenant, user_id))
    }
}
