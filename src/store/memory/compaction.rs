//! The memory twin of the Redis compaction scripts: same checks, one mutex section each.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use crate::domain::compaction::Summary;
use crate::domain::scope::SessionKey;
use crate::store::{
    StoreResult,
    compaction::{Claim, CompactionStore, SummaryCommit, SummaryOutcome},
};

#[async_trait]
impl CompactionStore for MemoryStore {
    async fn claim_compaction(
        &self,
        at: &SessionKey,
        token: &str,
        lease_ms: u64,
        _now_ms: i64,
    ) -> StoreResult<Claim> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(Claim::Missing);
        };
        let now = Instant::now();
        if entry
            .compaction_lease
            .as_ref()
            .is_some_and(|(_, until)| *until > now)
        {
            return Ok(Claim::Busy);
        }
        entry.compaction_lease = Some((token.to_string(), now + Duration::from_millis(lease_ms)));
        Ok(Claim::Claimed(Box::new(entry.session.clone())))
    }

    async fn commit_summary(
        &self,
        at: &SessionKey,
        commit: &SummaryCommit<'_>,
    ) -> StoreResult<SummaryOutcome> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(SummaryOutcome::Missing);
        };
        let now = Instant::now();
        let held = entry
            .compaction_lease
            .as_ref()
            .is_some_and(|(token, until)| token == commit.lease_token && *until > now);
        let session = &mut entry.session;
        if !held
            || session.summary_generation != commit.expected_generation
            || commit.summary.upto > session.message_count
        {
            return Ok(SummaryOutcome::Stale);
        }
        session.summary = Some(commit.summary.clone());
        session.summary_generation += 1;
        session.usage.prompt_tokens += commit.usage.prompt_tokens;
        session.usage.completion_tokens += commit.usage.completion_tokens;
        session.usage.cost_nano_usd += commit.usage.cost_nano_usd;
        entry.compaction_lease = Some((
            commit.lease_token.to_string(),
            now + Duration::from_millis(commit.lease_ms),
        ));
        Ok(SummaryOutcome::Committed)
    }

    async fn release_compaction(&self, at: &SessionKey, token: &str) -> StoreResult<()> {
        let mut state = self.lock()?;
        if let Some(entry) = state.live(at)
            && entry
                .compaction_lease
                .as_ref()
                .is_some_and(|(held, _)| held == token)
        {
            entry.compaction_lease = None;
        }
        Ok(())
    }

    async fn put_summary(
        &self,
        at: &SessionKey,
        summary: Option<&Summary>,
    ) -> StoreResult<Option<u64>> {
        let mut state = self.lock()?;
        let Some(entry) = state.live(at) else {
            return Ok(None);
        };
        entry.session.summary = summary.cloned();
        entry.session.summary_generation += 1;
        Ok(Some(entry.session.summary_generation))
    }
}
