//! Usage and cost writes that the store refused, kept until it takes them.
//!
//! Once a model answered, its cost was incurred: the usage record and the settlement of the
//! key's reservation must not be lost because Redis is out of memory, a replica, or out of
//! reach. A write that certainly did not happen ([`StoreError::nothing_written`]: an OOM or
//! READONLY answer comes before the script's first write, and an unreachable store was sent
//! nothing) is kept in memory, at most [`MAX_PENDING`] of them, and written again every
//! second, oldest first, until the store takes it. A write whose outcome is unknown (a
//! timeout after it was sent) is not repeated: it may have been counted already.
//!
//! Metrics: `usage_writes_deferred_total` (kept for later), `usage_writes_pending` (kept
//! now), `usage_writes_lost_total{reason}` (`outcome_unknown`, `backlog_full`, `shutdown`).

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use crate::store::{
    Store, StoreError,
    metering::{Settlement, UsageRow},
};

/// About 200 bytes each: the backlog holds at most a few megabytes.
pub const MAX_PENDING: usize = 10_000;
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One write of the metering, as it will be made again.
#[derive(Debug, Clone)]
pub enum Deferred {
    Usage { tenant: String, row: UsageRow },
    Settlement(Settlement),
}

impl Deferred {
    async fn write(&self, store: &dyn Store) -> Result<(), StoreError> {
        match self {
            Deferred::Usage { tenant, row } => store.record_usage(tenant, row).await,
            Deferred::Settlement(settlement) => store.settle(settlement).await,
        }
    }
}

/// A usage write given up on: logged and counted, by why.
fn lost(reason: &'static str, err: &StoreError) {
    tracing::warn!(%err, reason, "a usage write is lost");
    metrics::counter!("usage_writes_lost_total", "reason" => reason).increment(1);
}

#[derive(Default)]
pub struct Backlog {
    pending: Mutex<VecDeque<Deferred>>,
}

impl Backlog {
    /// Makes the write now; if the store refuses it, keeps it for later.
    pub async fn write(&self, store: &dyn Store, write: Deferred) {
        if let Err(err) = write.write(store).await {
            self.keep(write, &err);
        }
    }

    fn keep(&self, write: Deferred, err: &StoreError) {
        if !err.nothing_written() {
            return lost("outcome_unknown", err);
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() >= MAX_PENDING {
            return lost("backlog_full", err);
        }
        if pending.is_empty() {
            tracing::warn!(%err, "the store refuses usage writes: keeping them until it takes them");
        }
        pending.push_back(write);
        metrics::counter!("usage_writes_deferred_total").increment(1);
        metrics::gauge!("usage_writes_pending").set(pending.len() as f64);
    }

    fn take(&self) -> Option<Deferred> {
        self.pending.lock().ok()?.pop_front()
    }

    fn put_back(&self, write: Deferred) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push_front(write);
        }
    }

    /// Writes what is kept, oldest first, until the store refuses one again.
    pub async fn flush(&self, store: &dyn Store) {
        while let Some(write) = self.take() {
            match write.write(store).await {
                Ok(()) => {}
                Err(err) if err.nothing_written() => {
                    self.put_back(write);
                    break;
                }
                Err(err) => lost("outcome_unknown", &err),
            }
        }
        if let Ok(pending) = self.pending.lock() {
            metrics::gauge!("usage_writes_pending").set(pending.len() as f64);
        }
    }

    /// At shutdown: what is still kept is lost with the process; it is counted and logged.
    pub fn give_up(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if !pending.is_empty() {
            tracing::error!(
                count = pending.len(),
                "usage writes lost at shutdown: the store refused them"
            );
            metrics::counter!("usage_writes_lost_total", "reason" => "shutdown")
                .increment(pending.len() as u64);
            pending.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.pending.lock().map_or(0, |pending| pending.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes every second, for as long as the runtime lives.
    pub fn retry_in_background(self: std::sync::Arc<Self>, store: std::sync::Arc<dyn Store>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                if !self.is_empty() {
                    self.flush(store.as_ref()).await;
                }
            }
        });
    }
}
