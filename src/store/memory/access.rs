//! The memory store's own state for keys, client tokens, rate buckets, budgets and usage.
//!
//! It has its own mutex. When both are needed (client tokens check their session), the
//! session mutex is taken first, always, so the two can never deadlock.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use chrono::{DateTime, Utc};

use crate::domain::scope::SessionKey;

use crate::store::{
    StoreError, StoreResult,
    keys::{ClientTokenRecord, KeyRecord},
    metering::UsageRow,
};

#[derive(Default)]
pub struct Access {
    state: Mutex<AccessState>,
}

#[derive(Default)]
pub(super) struct AccessState {
    pub version: u64,
    pub keys: BTreeMap<String, KeyRecord>,
    /// Public prefix of a secret → key id.
    pub prefixes: HashMap<String, String>,
    /// Session id → token digest → the grant and its session's creation time: a session
    /// deleted and made again under the same id (an import) does not revive old tokens.
    pub tokens: HashMap<SessionKey, HashMap<String, (ClientTokenRecord, DateTime<Utc>)>>,
    /// (key id, `req` | `tok`) → bucket.
    pub buckets: HashMap<(String, &'static str), Bucket>,
    /// (key id, day) → spend.
    pub spend: HashMap<(String, String), Spend>,
    /// (tenant, day) → (key id, model) → counters.
    pub usage: HashMap<(String, String), BTreeMap<(String, String), UsageRow>>,
}

/// A token bucket in thousandths, as the Redis script keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub level: f64,
    pub at: Instant,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Spend {
    pub spent: u64,
    pub reserved: u64,
}

impl Access {
    pub(super) fn lock(&self) -> StoreResult<MutexGuard<'_, AccessState>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}
