//! Rate buckets, daily budgets and usage in the memory store: the same arithmetic as the
//! Redis scripts, on this process' monotonic clock.

use std::time::Instant;

use async_trait::async_trait;

use super::{
    MemoryStore,
    access::{AccessState, Bucket, Spend},
};
use crate::store::{
    StoreResult,
    metering::{DaySpend, MeterStore, Reservation, ReserveOutcome, Settlement, UsageRow},
};

/// Past this many buckets, full ones (the same as none) are dropped.
const MAX_BUCKETS: usize = 10_000;

/// A bucket of `limit` per minute, in thousandths, refilled up to `now`.
fn level(bucket: Option<&Bucket>, limit: u32, now: Instant) -> f64 {
    let capacity = f64::from(limit) * 1000.0;
    match bucket {
        None => capacity,
        Some(b) => {
            let micros = now.saturating_duration_since(b.at).as_micros() as f64;
            (b.level + micros * f64::from(limit) / 60_000.0).min(capacity)
        }
    }
}

impl AccessState {
    fn prune_buckets(&mut self, now: Instant) {
        if self.buckets.len() < MAX_BUCKETS {
            return;
        }
        // The limit a bucket was made with is not kept; a minute untouched refills any bucket
        // that is not in debt, and debts are rare.
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at).as_secs() < 60 || b.level < 0.0);
    }
}

#[async_trait]
impl MeterStore for MemoryStore {
    async fn reserve(&self, r: &Reservation<'_>) -> StoreResult<ReserveOutcome> {
        let mut access = self.access.lock()?;
        let now = Instant::now();
        let spend_key = (r.key_id.to_string(), r.day.to_string());
        if let Some(budget) = r.daily_budget_nano_usd {
            let spend = access.spend.get(&spend_key).copied().unwrap_or_default();
            if spend.spent + spend.reserved + r.cost_nano_usd > budget {
                return Ok(ReserveOutcome::OverBudget {
                    spent_nano_usd: spend.spent,
                });
            }
        }
        let mut wait_ms: u64 = 0;
        let mut take = Vec::new();
        for (name, limit, amount) in [
            ("req", r.rpm, u64::from(r.requests)),
            ("tok", r.tpm, r.tokens),
        ] {
            let Some(limit) = limit.filter(|l| *l > 0 && amount > 0) else {
                continue;
            };
            let bucket_key = (r.key_id.to_string(), name);
            let balance = level(access.buckets.get(&bucket_key), limit, now);
            // More than a whole bucket passes once the bucket is full, leaving a debt.
            let need = amount.min(u64::from(limit)) as f64 * 1000.0;
            if balance < need {
                let ms = ((need - balance) * 60.0 / f64::from(limit)).ceil();
                wait_ms = wait_ms.max(ms as u64);
            } else {
                take.push((bucket_key, balance - amount as f64 * 1000.0));
            }
        }
        if wait_ms > 0 {
            return Ok(ReserveOutcome::RateLimited {
                retry_after_ms: wait_ms,
            });
        }
        access.prune_buckets(now);
        for (bucket_key, level) in take {
            access.buckets.insert(bucket_key, Bucket { level, at: now });
        }
        if r.daily_budget_nano_usd.is_some() && r.cost_nano_usd > 0 {
            // Days other than this one are settled or over: only a late settlement reads them.
            access.spend.retain(|(_, day), _| day.as_str() >= r.day);
            access.spend.entry(spend_key).or_default().reserved += r.cost_nano_usd;
        }
        Ok(ReserveOutcome::Reserved)
    }

    async fn settle(&self, s: &Settlement) -> StoreResult<()> {
        let mut access = self.access.lock()?;
        let now = Instant::now();
        if let Some(limit) = s.tpm.filter(|l| *l > 0)
            && s.reserved_tokens != s.used_tokens
        {
            let bucket_key = (s.key_id.clone(), "tok");
            let delta = s.reserved_tokens as f64 - s.used_tokens as f64;
            let level = (level(access.buckets.get(&bucket_key), limit, now) + delta * 1000.0)
                .min(f64::from(limit) * 1000.0);
            access.buckets.insert(bucket_key, Bucket { level, at: now });
        }
        if s.budgeted {
            let spend: &mut Spend = access
                .spend
                .entry((s.key_id.clone(), s.day.clone()))
                .or_default();
            spend.reserved = spend.reserved.saturating_sub(s.reserved_cost_nano_usd);
            spend.spent += s.used_cost_nano_usd;
        }
        Ok(())
    }

    async fn record_usage(&self, tenant: &str, row: &UsageRow) -> StoreResult<()> {
        let mut access = self.access.lock()?;
        let line = access
            .usage
            .entry((tenant.to_string(), row.day.clone()))
            .or_default()
            .entry((row.key_id.clone(), row.model.clone()))
            .or_insert_with(|| UsageRow {
                day: row.day.clone(),
                key_id: row.key_id.clone(),
                model: row.model.clone(),
                ..UsageRow::default()
            });
        line.requests += 1;
        line.prompt_tokens += row.prompt_tokens;
        line.completion_tokens += row.completion_tokens;
        line.cost_nano_usd += row.cost_nano_usd;
        Ok(())
    }

    async fn day_spend(&self, key_id: &str, day: &str) -> StoreResult<DaySpend> {
        let access = self.access.lock()?;
        let spend = access.spend.get(&(key_id.to_string(), day.to_string()));
        Ok(spend.map_or_else(DaySpend::default, |s| DaySpend {
            spent: s.spent,
            reserved: s.reserved,
        }))
    }

    async fn usage(&self, tenant: &str, days: &[String]) -> StoreResult<Vec<UsageRow>> {
        let access = self.access.lock()?;
        Ok(days
            .iter()
            .filter_map(|day| access.usage.get(&(tenant.to_string(), day.clone())))
            .flat_map(|lines| lines.values().cloned())
            .collect())
    }
}
