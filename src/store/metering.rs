//! Persistence of what keys may still spend: rate-limit buckets, daily budgets, and the
//! usage record a tenant reads back.
//!
//! Rate limits are token buckets refilled continuously: a limit of N per minute holds at
//! most N and gains N/60 every second. The clock is the store's own (Redis `TIME`), so
//! every instance sharing a store shares one limit.

use async_trait::async_trait;

use super::StoreResult;

/// What one request takes from its key, all or nothing.
#[derive(Debug, Clone, Default)]
pub struct Reservation<'a> {
    pub key_id: &'a str,
    /// The UTC day (`YYYY-MM-DD`) whose budget is charged.
    pub day: &'a str,
    /// Requests per minute, and how many requests this takes (0 or 1).
    pub rpm: Option<u32>,
    pub requests: u32,
    /// Tokens per minute, and the tokens this may use at most.
    pub tpm: Option<u32>,
    pub tokens: u64,
    /// The day's budget in nano-USD, and what this may cost at most.
    pub daily_budget_nano_usd: Option<u64>,
    pub cost_nano_usd: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    /// Nothing was taken; enough comes back within this time.
    RateLimited {
        retry_after_ms: u64,
    },
    /// Nothing was taken; the day's spend so far.
    OverBudget {
        spent_nano_usd: u64,
    },
}

/// Settles a reservation once the actual use is known (zero after a failure).
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub key_id: String,
    /// The day the reservation was made on.
    pub day: String,
    pub tpm: Option<u32>,
    pub reserved_tokens: u64,
    pub used_tokens: u64,
    /// Whether the day's spend of this key is tracked (it has a daily budget).
    pub budgeted: bool,
    pub reserved_cost_nano_usd: u64,
    pub used_cost_nano_usd: u64,
}

/// One line of a tenant's usage: a day, a key and a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    pub day: String,
    pub key_id: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_nano_usd: u64,
}

/// A key's budget counter for one day, in nano-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaySpend {
    /// Settled: what answered requests cost.
    pub spent: u64,
    /// Held by requests still in flight (their worst case).
    pub reserved: u64,
}

#[async_trait]
pub trait MeterStore: Send + Sync {
    /// Takes the reservation from the key's buckets and budget, or nothing at all.
    async fn reserve(&self, reservation: &Reservation<'_>) -> StoreResult<ReserveOutcome>;
    /// Gives back what a reservation took beyond the actual use, or takes the excess.
    async fn settle(&self, settlement: &Settlement) -> StoreResult<()>;
    /// Adds one answered request to the tenant's usage (`row.requests` is ignored: one).
    async fn record_usage(&self, tenant: &str, row: &UsageRow) -> StoreResult<()>;
    /// The budget counter of a key with a daily budget (zero when nothing was spent).
    async fn day_spend(&self, key_id: &str, day: &str) -> StoreResult<DaySpend>;
    /// Every usage line of the tenant on the given days.
    async fn usage(&self, tenant: &str, days: &[String]) -> StoreResult<Vec<UsageRow>>;
}

/// Usage lines are kept this long.
pub const USAGE_RETENTION_DAYS: u64 = 400;
/// A day's budget counter outlives its day by this much, for reservations settled late.
pub const SPEND_RETENTION_MS: u64 = 2 * 24 * 3600 * 1000;
