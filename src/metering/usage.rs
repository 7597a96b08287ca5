//! A tenant's usage between two days, summed by model, key or day.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{domain::session::nano_usd_to_usd, store::metering::UsageRow};

/// The longest range one query may cover.
pub const MAX_DAYS: u64 = 366;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Model,
    Key,
    Day,
}

impl GroupBy {
    /// The field that names a line's group.
    fn field(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Key => "key_id",
            GroupBy::Day => "day",
        }
    }

    fn of(self, row: &UsageRow) -> &str {
        match self {
            GroupBy::Model => &row.model,
            GroupBy::Key => &row.key_id,
            GroupBy::Day => &row.day,
        }
    }
}

/// Every day from `from` to `to`, both included, as the store keys them.
pub fn days(from: NaiveDate, to: NaiveDate) -> Vec<String> {
    from.iter_days()
        .take_while(|day| *day <= to)
        .take(MAX_DAYS as usize)
        .map(|day| day.format("%Y-%m-%d").to_string())
        .collect()
}

/// The earliest day a range ending on `to` may start.
pub fn earliest_from(to: NaiveDate) -> NaiveDate {
    to.checked_sub_days(Days::new(MAX_DAYS - 1))
        .unwrap_or(NaiveDate::MIN)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sum {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_nano_usd: u64,
}

impl Sum {
    fn add(&mut self, row: &UsageRow) {
        self.requests += row.requests;
        self.prompt_tokens += row.prompt_tokens;
        self.completion_tokens += row.completion_tokens;
        self.cost_nano_usd += row.cost_nano_usd;
    }

    fn to_json(self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("requests".into(), self.requests.into());
        map.insert("prompt_tokens".into(), self.prompt_tokens.into());
        map.insert("completion_tokens".into(), self.completion_tokens.into());
        map.insert(
            "total_tokens".into(),
            (self.prompt_tokens + self.completion_tokens).into(),
        );
        map.insert(
            "cost_usd".into(),
            nano_usd_to_usd(self.cost_nano_usd).into(),
        );
        map
    }
}

/// One line per group, in the group's order, and the total of them all.
pub fn summarize(rows: &[UsageRow], group_by: GroupBy) -> (Vec<Value>, Value) {
    let mut groups: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut total = Sum::default();
    for row in rows {
        groups.entry(group_by.of(row)).or_default().add(row);
        total.add(row);
    }
    let lines = groups
        .into_iter()
        .map(|(name, sum)| {
            let mut line = Map::new();
            line.insert(group_by.field().into(), name.into());
            line.extend(sum.to_json());
            Value::Object(line)
        })
        .collect();
    (lines, Value::Object(total.to_json()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn row(day: &str, key: &str, model: &str, tokens: u64) -> UsageRow {
        UsageRow {
            day: day.into(),
            key_id: key.into(),
            model: model.into(),
            requests: 1,
            prompt_tokens: tokens,
            completion_tokens: 1,
            cost_nano_usd: 500_000_000,
        }
    }

    #[test]
    fn groups_and_totals() {
        let rows = [
            row("2025-01-01", "k1", "a", 10),
            row("2025-01-02", "k2", "a", 5),
            row("2025-01-02", "k1", "b", 1),
        ];
        let (lines, total) = summarize(&rows, GroupBy::Model);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["model"], "a");
        assert_eq!(lines[0]["prompt_tokens"], 15);
        assert_eq!(total["requests"], 3);
        assert_eq!(total["cost_usd"], json!(1.5));
        let (by_day, _) = summarize(&rows, GroupBy::Day);
        assert_eq!(by_day[1]["day"], "2025-01-02");
        assert_eq!(by_day[1]["total_tokens"], 8);
    }

    #[test]
    fn days_are_inclusive_and_bounded() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            days(d("2024-02-28"), d("2024-03-01")),
            ["2024-02-28", "2024-02-29", "2024-03-01"]
        );
        assert_eq!(
            days(d("2020-01-01"), d("2024-01-01")).len(),
            MAX_DAYS as usize
        );
        assert!(days(d("2024-01-02"), d("2024-01-01")).is_empty());
    }
}
