//! Persistence of summaries: the compaction lease and the compare-and-set commit.
//!
//! The summary, its generation and the lease live in the session's own record (the meta
//! hash in Redis), so they expire and are deleted with it and need no keys of their own.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::scope::SessionKey;
use crate::domain::{
    compaction::Summary,
    session::{StoredSession, UsageTotals},
};

/// The answer to "may this job compact the session now?".
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The lease is ours: the session as of taking it.
    Claimed(Box<StoredSession>),
    /// Another job (on this or another instance) holds it.
    Busy,
    Missing,
}

/// A folded summary, written only on top of what the job read.
#[derive(Debug, Clone)]
pub struct SummaryCommit<'a> {
    pub lease_token: &'a str,
    /// The generation the job read; the commit makes it `expected_generation + 1`.
    pub expected_generation: u64,
    pub summary: &'a Summary,
    /// What the summarizer call cost, charged to the session.
    pub usage: UsageTotals,
    /// The lease is renewed for this long, for the next chunk.
    pub lease_ms: u64,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryOutcome {
    Committed,
    /// The generation moved (a PATCH, another job) or the lease lapsed: nothing written.
    Stale,
    Missing,
}

#[async_trait]
pub trait CompactionStore: Send + Sync {
    /// Takes the session's compaction lease under `token` unless a live one is held.
    async fn claim_compaction(
        &self,
        at: &SessionKey,
        token: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Claim>;

    /// Stores the summary, bumps the generation and adds the usage, all only if the
    /// generation is still the expected one, the lease is still `token`'s and the
    /// watermark is within the history.
    async fn commit_summary(
        &self,
        at: &SessionKey,
        commit: &SummaryCommit<'_>,
    ) -> StoreResult<SummaryOutcome>;

    /// Gives the lease back if `token` still holds it.
    async fn release_compaction(&self, at: &SessionKey, token: &str) -> StoreResult<()>;

    /// Replaces (or, with `None`, clears) the summary whatever its generation, bumping
    /// it so that a job in flight commits nothing. `Ok(None)`: no such session; else
    /// the new generation.
    async fn put_summary(
        &self,
        at: &SessionKey,
        summary: Option<&Summary>,
    ) -> StoreResult<Option<u64>>;
}
