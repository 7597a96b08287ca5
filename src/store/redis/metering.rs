//! Rate limits, daily budgets and usage in Redis.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sr:{key:<key id>}:rate` | hash | `req`, `tok` bucket levels (thousandths) and their `_at` times (µs, Redis clock) |
//! | `sr:{key:<key id>}:spend:<day>` | hash | `spent`, `reserved` (nano-USD) of a key with a daily budget |
//! | `sr:{usage:<tenant>}:<day>` | hash | `<key id>␟<model>␟n|pt|ct|cost` → counters |
//!
//! A key's buckets and budget share its hash tag, so one script changes them together.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::Value;

use super::RedisStore;
use crate::store::metering::{
    DaySpend, MeterStore, Reservation, ReserveOutcome, SPEND_RETENTION_MS, Settlement,
    USAGE_RETENTION_DAYS, UsageRow,
};
use crate::store::{StoreError, StoreResult};

lua!(RESERVE, "lua/reserve.lua");
lua!(SETTLE, "lua/settle.lua");
lua!(RECORD, "lua/usage_record.lua");

/// Separates key id, model and counter inside a usage field (no name contains it).
const SEP: char = '\u{1f}';

impl RedisStore {
    fn limit_keys(&self, key_id: &str, day: &str) -> [String; 2] {
        let tag = format!("key:{key_id}");
        [
            self.key(&tag, "rate"),
            self.key(&tag, &format!("spend:{day}")),
        ]
    }

    fn usage_key(&self, tenant: &str, day: &str) -> String {
        self.key(&format!("usage:{tenant}"), day)
    }
}

fn limit(value: Option<u32>) -> String {
    value.unwrap_or(0).to_string()
}

#[async_trait]
impl MeterStore for RedisStore {
    async fn reserve(&self, r: &Reservation<'_>) -> StoreResult<ReserveOutcome> {
        let [rate, spend] = self.limit_keys(r.key_id, r.day);
        let args = [
            limit(r.rpm),
            r.requests.to_string(),
            limit(r.tpm),
            r.tokens.to_string(),
            r.daily_budget_nano_usd
                .map(|b| b.to_string())
                .unwrap_or_default(),
            r.cost_nano_usd.to_string(),
            SPEND_RETENTION_MS.to_string(),
        ];
        let answer: Vec<Value> = self
            .script(
                &RESERVE,
                &[&rate, &spend],
                &args.each_ref().map(String::as_str),
            )
            .await?;
        let number = || match answer.get(1) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        match answer.first() {
            Some(Value::BulkString(word)) if word.as_slice() == b"ok" => {
                Ok(ReserveOutcome::Reserved)
            }
            Some(Value::BulkString(word)) if word.as_slice() == b"rate" => {
                Ok(ReserveOutcome::RateLimited {
                    retry_after_ms: number(),
                })
            }
            Some(Value::BulkString(word)) if word.as_slice() == b"budget" => {
                Ok(ReserveOutcome::OverBudget {
                    spent_nano_usd: number(),
                })
            }
            _ => Err(StoreError::Corrupt("unexpected reserve answer".into())),
        }
    }

    async fn settle(&self, s: &Settlement) -> StoreResult<()> {
        let [rate, spend] = self.limit_keys(&s.key_id, &s.day);
        let args = [
            limit(s.tpm),
            s.reserved_tokens.to_string(),
            s.used_tokens.to_string(),
            if s.budgeted { "1" } else { "0" }.to_string(),
            s.reserved_cost_nano_usd.to_string(),
            s.used_cost_nano_usd.to_string(),
            SPEND_RETENTION_MS.to_string(),
        ];
        self.script::<i64>(
            &SETTLE,
            &[&rate, &spend],
            &args.each_ref().map(String::as_str),
        )
        .await
        .map(drop)
    }

    async fn record_usage(&self, tenant: &str, row: &UsageRow) -> StoreResult<()> {
        let key = self.usage_key(tenant, &row.day);
        let args = [
            format!("{}{SEP}{}{SEP}", row.key_id, row.model),
            row.prompt_tokens.to_string(),
            row.completion_tokens.to_string(),
            row.cost_nano_usd.to_string(),
            (USAGE_RETENTION_DAYS * 24 * 3600 * 1000).to_string(),
        ];
        self.script::<i64>(&RECORD, &[&key], &args.each_ref().map(String::as_str))
            .await
            .map(drop)
    }

    async fn day_spend(&self, key_id: &str, day: &str) -> StoreResult<DaySpend> {
        let [_, spend] = self.limit_keys(key_id, day);
        let mut read = redis::cmd("HMGET");
        read.arg(&spend).arg("spent").arg("reserved");
        let [spent, reserved]: [Option<u64>; 2] = self.query(&read).await?;
        Ok(DaySpend {
            spent: spent.unwrap_or(0),
            reserved: reserved.unwrap_or(0),
        })
    }

    async fn usage(&self, tenant: &str, days: &[String]) -> StoreResult<Vec<UsageRow>> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for day in days {
            pipe.cmd("HGETALL").arg(self.usage_key(tenant, day));
        }
        let per_day: Vec<Vec<(String, u64)>> = self.pipeline(&pipe).await?;
        Ok(days
            .iter()
            .zip(per_day)
            .flat_map(|(day, fields)| collect_day(day, &fields))
            .collect())
    }
}

/// Folds a day's counters (`<key id>␟<model>␟<counter>`) into one row per key and model.
fn collect_day(day: &str, fields: &[(String, u64)]) -> Vec<UsageRow> {
    let mut lines: BTreeMap<(&str, &str), UsageRow> = BTreeMap::new();
    for (field, value) in fields {
        let Some((key_id, rest)) = field.split_once(SEP) else {
            continue;
        };
        let Some((model, counter)) = rest.rsplit_once(SEP) else {
            continue;
        };
        let row = lines.entry((key_id, model)).or_insert_with(|| UsageRow {
            day: day.to_string(),
            key_id: key_id.to_string(),
            model: model.to_string(),
            ..UsageRow::default()
        });
        match counter {
            "n" => row.requests = *value,
            "pt" => row.prompt_tokens = *value,
            "ct" => row.completion_tokens = *value,
            "cost" => row.cost_nano_usd = *value,
            _ => {}
        }
    }
    lines.into_values().collect()
}
