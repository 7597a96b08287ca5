//! Summaries in Redis: fields of the session's meta hash.
//!
//! | field | holds |
//! |---|---|
//! | `sum` | the summary (JSON) |
//! | `sgen` | its generation, bumped by every write |
//! | `cl`, `clx` | the compaction lease: holder's token, until when (ms, Redis' clock) |

use async_trait::async_trait;
use redis::Value;

use super::{RedisStore, text, to_json};
use crate::domain::scope::SessionKey;
use crate::{
    domain::compaction::Summary,
    store::{
        StoreError, StoreResult,
        compaction::{Claim, CompactionStore, SummaryCommit, SummaryOutcome},
    },
};

lua!(CLAIM, "lua/compaction_claim.lua");
lua!(COMMIT, "lua/compaction_commit.lua");
lua!(RELEASE, "lua/compaction_release.lua");
lua!(PUT, "lua/summary_put.lua");

#[async_trait]
impl CompactionStore for RedisStore {
    async fn claim_compaction(
        &self,
        at: &SessionKey,
        token: &str,
        lease_ms: u64,
        _now_ms: i64,
    ) -> StoreResult<Claim> {
        let meta = self.session_key(at, "meta");
        let mut answer: Vec<Value> = self
            .script(&CLAIM, &[&meta], &[token, &lease_ms.to_string()])
            .await?;
        match text(answer.first()).as_str() {
            "claimed" => {
                let fields = answer
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("claim: short answer".into()))?;
                let fields = redis::from_redis_value(fields)
                    .map_err(|e| StoreError::Corrupt(format!("claim: {e}")))?;
                let session = self
                    .parse_session(at.id(), fields)?
                    .ok_or_else(|| StoreError::Corrupt("claim: no session fields".into()))?;
                Ok(Claim::Claimed(Box::new(session)))
            }
            "busy" => Ok(Claim::Busy),
            _ => Ok(Claim::Missing),
        }
    }

    async fn commit_summary(
        &self,
        at: &SessionKey,
        commit: &SummaryCommit<'_>,
    ) -> StoreResult<SummaryOutcome> {
        let meta = self.session_key(at, "meta");
        let args = [
            commit.lease_token.to_string(),
            commit.expected_generation.to_string(),
            to_json(commit.summary)?,
            commit.summary.upto.to_string(),
            commit.usage.prompt_tokens.to_string(),
            commit.usage.completion_tokens.to_string(),
            commit.usage.cost_nano_usd.to_string(),
            commit.lease_ms.to_string(),
        ];
        let answer: i64 = self
            .script(&COMMIT, &[&meta], &args.each_ref().map(String::as_str))
            .await?;
        Ok(match answer {
            1 => SummaryOutcome::Committed,
            0 => SummaryOutcome::Missing,
            _ => SummaryOutcome::Stale,
        })
    }

    async fn release_compaction(&self, at: &SessionKey, token: &str) -> StoreResult<()> {
        let meta = self.session_key(at, "meta");
        self.script::<i64>(&RELEASE, &[&meta], &[token])
            .await
            .map(drop)
    }

    async fn put_summary(
        &self,
        at: &SessionKey,
        summary: Option<&Summary>,
    ) -> StoreResult<Option<u64>> {
        let meta = self.session_key(at, "meta");
        let json = summary.map(to_json).transpose()?.unwrap_or_default();
        let answer: i64 = self.script(&PUT, &[&meta], &[&json]).await?;
        Ok(u64::try_from(answer).ok())
    }
}
