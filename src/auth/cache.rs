//! An in-process cache of API key records, so that a request does not need a store read
//! to authenticate.
//!
//! Why it cannot serve a revoked key for long: every change to the key table bumps a
//! version counter in the store, and the cache compares its version with the store's
//! whenever it is more than [`FRESH_FOR`] old, forgetting everything on a mismatch. A
//! revocation therefore reaches every instance within `FRESH_FOR` plus one store read.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::store::{Store, StoreError, StoreResult, keys::KeyRecord};

pub const FRESH_FOR: Duration = Duration::from_millis(400);
/// Unknown prefixes are cached too (a flood of made-up keys must not reach the store each
/// time); past this size nothing more is cached until the next change.
const MAX_ENTRIES: usize = 10_000;

type Entry = Option<Arc<KeyRecord>>;

#[derive(Default)]
pub struct KeyCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    version: Option<u64>,
    checked: Option<Instant>,
    by_prefix: HashMap<String, Entry>,
    by_id: HashMap<String, Entry>,
}

#[derive(Clone, Copy)]
enum By {
    Prefix,
    Id,
}

impl CacheState {
    fn map(&mut self, by: By) -> &mut HashMap<String, Entry> {
        match by {
            By::Prefix => &mut self.by_prefix,
            By::Id => &mut self.by_id,
        }
    }
}

impl KeyCache {
    fn lock(&self) -> StoreResult<MutexGuard<'_, CacheState>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("key cache lock poisoned".into()))
    }

    /// Forgets everything: this instance sees its own changes at once.
    pub fn clear(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = CacheState::default();
        }
    }

    pub async fn by_prefix(&self, store: &dyn Store, prefix: &str) -> StoreResult<Entry> {
        self.get(store, By::Prefix, prefix).await
    }

    pub async fn by_id(&self, store: &dyn Store, key_id: &str) -> StoreResult<Entry> {
        self.get(store, By::Id, key_id).await
    }

    async fn get(&self, store: &dyn Store, by: By, name: &str) -> StoreResult<Entry> {
        let version = self.sync(store).await?;
        if let Some(hit) = self.lock()?.map(by).get(name) {
            return Ok(hit.clone());
        }
        let found = match by {
            By::Prefix => store.key_by_prefix(name).await?,
            By::Id => store.key(name).await?,
        }
        .map(Arc::new);
        let mut state = self.lock()?;
        // A change that landed meanwhile makes this answer suspect: not cached.
        if state.version == Some(version) {
            let map = state.map(by);
            if map.len() < MAX_ENTRIES {
                map.insert(name.to_string(), found.clone());
            }
        }
        Ok(found)
    }

    /// Confirms the cached version with the store when it is stale; returns it.
    async fn sync(&self, store: &dyn Store) -> StoreResult<u64> {
        {
            let state = self.lock()?;
            if let (Some(version), Some(checked)) = (state.version, state.checked)
                && checked.elapsed() < FRESH_FOR
            {
                return Ok(version);
            }
        }
        let asked = Instant::now();
        let version = store.keys_version().await?;
        let mut state = self.lock()?;
        if state.version != Some(version) {
            state.by_prefix.clear();
            state.by_id.clear();
            state.version = Some(version);
        }
        // The answer is as old as the question, not as the reply.
        state.checked = Some(asked);
        Ok(version)
    }
}
