//! `GET /v1/usage?from=&to=&group_by=model|key|day`: the caller's tenant's tokens and cost.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::extract::ApiQuery;
use crate::{
    auth::Caller,
    error::ApiError,
    metering::usage::{GroupBy, MAX_DAYS, days, earliest_from, summarize},
    state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(usage);
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// First UTC day (`YYYY-MM-DD` or an RFC 3339 timestamp); default: 29 days before `to`.
    from: Option<String>,
    /// Last UTC day, included; default: today.
    to: Option<String>,
    group_by: Option<GroupBy>,
}

/// The tenant's usage over the days asked for.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct UsageReport {
    /// Always `usage`.
    object: &'static str,
    from: NaiveDate,
    to: NaiveDate,
    group_by: GroupBy,
    /// One line per group: its `model`, `key_id` or `day`, then `requests`,
    /// `prompt_tokens`, `completion_tokens`, `total_tokens` and `cost_usd`.
    #[schema(value_type = Vec<Object>)]
    data: Vec<Value>,
    /// The same counters over every line.
    #[schema(value_type = Object)]
    total: Value,
}

/// A day (`2025-01-31`) or a timestamp (RFC 3339), taken as its UTC day.
fn day(field: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .or_else(|_| {
            DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc).date_naive())
        })
        .map_err(|_| ApiError::invalid(field, "a day (YYYY-MM-DD) or an RFC 3339 timestamp"))
}

#[utoipa::path(tag = "usage", params(UsageQuery), responses((status = 200, description = "Tokens and cost of the caller's tenant", body = UsageReport)))]
#[get("/v1/usage")]
async fn usage(
    state: web::Data<AppState>,
    caller: Caller,
    query: ApiQuery<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let to = match &query.to {
        Some(value) => day("to", value)?,
        None => Utc::now().date_naive(),
    };
    // By default the last 30 days, today included.
    let from = match &query.from {
        Some(value) => day("from", value)?,
        None => to.checked_sub_days(Days::new(29)).unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::invalid("from", "must not be after `to`"));
    }
    if from < earliest_from(to) {
        return Err(ApiError::invalid(
            "from",
            format!("at most {MAX_DAYS} days before `to`"),
        ));
    }
    let group_by = query.group_by.unwrap_or_default();
    let rows = state.store.usage(&caller.tenant, &days(from, to)).await?;
    let (data, total) = summarize(&rows, group_by);
    Ok(HttpResponse::Ok().json(UsageReport {
        object: "usage",
        from,
        to,
        group_by,
        data,
        total,
    }))
}
