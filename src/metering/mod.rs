//! Rate limits, spending caps and the usage record of each answered request.
//!
//! - Every authenticated request takes one from its key's requests-per-minute bucket
//!   ([`take_request`], run by the `Caller` extractor).
//! - A send checks the session's `max_cost_usd` ([`check_session_budget`]) and reserves
//!   its worst case from the key's tokens-per-minute bucket and daily budget
//!   ([`Metering::reserve`]) before any upstream call. The worst case is the prompt as
//!   counted plus the completion tokens reserved, priced at the dearest model of the chain,
//!   so a cap is never passed on our own count.
//! - Once a model answered, [`Metering::settle`] replaces the reservation with the actual
//!   use, priced for the model that answered, and records it. A send that fails gives its
//!   reservation back: failed attempts cost nothing.

pub mod backlog;
pub mod usage;

use std::sync::Arc;

use chrono::Utc;

use crate::{
    auth::{Caller, api_keys::usd_to_nano},
    domain::session::{StoredSession, nano_usd_to_usd},
    error::ApiError,
    llm::{Usage, registry::Model},
    metering::backlog::{Backlog, Deferred},
    state::AppState,
    store::{
        Store,
        metering::{Reservation, ReserveOutcome, Settlement, UsageRow},
    },
};

/// The UTC day that budgets and usage are kept by.
pub fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

fn refused(outcome: ReserveOutcome, budget_nano_usd: Option<u64>) -> Option<ApiError> {
    match outcome {
        ReserveOutcome::Reserved => None,
        ReserveOutcome::RateLimited { retry_after_ms } => Some(ApiError::RateLimited {
            // Rounded up: waiting this long is always enough.
            retry_after: retry_after_ms.div_ceil(1000).max(1),
        }),
        ReserveOutcome::OverBudget { spent_nano_usd } => Some(ApiError::BudgetExceeded {
            limit_usd: nano_usd_to_usd(budget_nano_usd.unwrap_or(0)),
            spent_usd: nano_usd_to_usd(spent_nano_usd),
        }),
    }
}

/// Takes one request from the caller's per-minute limit, if its key has one.
pub async fn take_request(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if caller.limits.rpm.is_none() {
        return Ok(());
    }
    let day = today();
    let reservation = Reservation {
        key_id: &caller.key_id,
        day: &day,
        rpm: caller.limits.rpm,
        requests: 1,
        ..Reservation::default()
    };
    let outcome = state.store.reserve(&reservation).await?;
    refused(outcome, None).map_or(Ok(()), Err)
}

/// What `GET /v1/status` tells a caller about its own key.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    pub key_id: String,
    pub name: String,
    pub tenant: String,
    pub rate_limit_rpm: Option<u32>,
    pub rate_limit_tpm: Option<u32>,
    pub daily_budget_usd: Option<f64>,
    pub today: DayStatus,
}

/// The key's spending on the current UTC day.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DayStatus {
    pub day: String,
    /// What answered requests cost today (for a key with a daily budget, as the budget
    /// counts it).
    pub spent_usd: f64,
    /// The worst case of this key's requests still in flight, held against the budget.
    pub reserved_usd: f64,
    /// What the budget still allows: limit − spent − reserved; `None` without a budget.
    pub remaining_usd: Option<f64>,
}

/// The caller's limits and today's spend. A key with a daily budget is read from its
/// budget counter (the figure the budget check uses); any other from today's usage.
pub async fn key_status(state: &AppState, caller: &Caller) -> Result<KeyStatus, ApiError> {
    let day = today();
    let limits = caller.limits;
    let (spent, reserved) = match limits.daily_budget_nano_usd {
        Some(_) => {
            let spend = state.store.day_spend(&caller.key_id, &day).await?;
            (spend.spent, spend.reserved)
        }
        None => {
            let rows = state
                .store
                .usage(&caller.tenant, std::slice::from_ref(&day))
                .await?;
            let own = rows.iter().filter(|row| row.key_id == caller.key_id);
            (own.map(|row| row.cost_nano_usd).sum(), 0)
        }
    };
    let remaining = (limits.daily_budget_nano_usd)
        .map(|budget| nano_usd_to_usd(budget.saturating_sub(spent).saturating_sub(reserved)));
    Ok(KeyStatus {
        key_id: caller.key_id.clone(),
        name: caller.key_name.clone(),
        tenant: caller.tenant.clone(),
        rate_limit_rpm: limits.rpm,
        rate_limit_tpm: limits.tpm,
        daily_budget_usd: limits.daily_budget_nano_usd.map(nano_usd_to_usd),
        today: DayStatus {
            day,
            spent_usd: nano_usd_to_usd(spent),
            reserved_usd: nano_usd_to_usd(reserved),
            remaining_usd: remaining,
        },
    })
}

/// The most a call may use: the prompt as counted plus every completion token reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub tokens: u64,
    pub cost_nano_usd: u64,
}

impl Estimate {
    /// Priced at the dearest model of the chain, since any of them may answer.
    pub fn for_chain(chain: &[Arc<Model>], prompt_tokens: u32, max_tokens: u32) -> Estimate {
        Estimate {
            tokens: u64::from(prompt_tokens) + u64::from(max_tokens),
            cost_nano_usd: chain
                .iter()
                .map(|m| m.cost_nano_usd(prompt_tokens, max_tokens))
                .max()
                .unwrap_or(0),
        }
    }
}

/// 402 when the session's spend plus this call's worst case would pass its `max_cost_usd`.
/// `session` is read together with taking the send lease, so its spend is current: no
/// other send of the session can add to it while this one runs.
pub fn check_session_budget(session: &StoredSession, estimate: &Estimate) -> Result<(), ApiError> {
    let Some(limit_usd) = session.config.max_cost_usd else {
        return Ok(());
    };
    let spent = session.usage.cost_nano_usd;
    if spent.saturating_add(estimate.cost_nano_usd) > usd_to_nano(limit_usd) {
        return Err(ApiError::BudgetExceeded {
            limit_usd,
            spent_usd: nano_usd_to_usd(spent),
        });
    }
    Ok(())
}

/// A send's reservation, held until it is settled. Dropped unsettled (the call failed or
/// the client went away), it gives the reservation back.
pub struct Metering {
    store: Arc<dyn Store>,
    /// Where writes the store refused wait to be made again.
    backlog: Arc<Backlog>,
    tenant: String,
    key_id: String,
    day: String,
    tpm: Option<u32>,
    budgeted: bool,
    estimate: Estimate,
    /// Whether the store holds a reservation that is not settled yet.
    holding: bool,
}

impl Metering {
    /// Reserves `estimate` from the caller's tokens-per-minute and daily budget.
    pub async fn reserve(
        state: &AppState,
        caller: &Caller,
        estimate: &Estimate,
    ) -> Result<Metering, ApiError> {
        let limits = caller.limits;
        let mut metering = Metering {
            store: state.store.clone(),
            backlog: state.usage_backlog.clone(),
            tenant: caller.tenant.clone(),
            key_id: caller.key_id.clone(),
            day: today(),
            tpm: limits.tpm,
            budgeted: limits.daily_budget_nano_usd.is_some(),
            estimate: *estimate,
            holding: false,
        };
        if limits.tpm.is_none() && !metering.budgeted {
            return Ok(metering);
        }
        let reservation = Reservation {
            key_id: &metering.key_id,
            day: &metering.day,
            tpm: limits.tpm,
            tokens: estimate.tokens,
            daily_budget_nano_usd: limits.daily_budget_nano_usd,
            cost_nano_usd: estimate.cost_nano_usd,
            ..Reservation::default()
        };
        let outcome = state.store.reserve(&reservation).await?;
        if let Some(err) = refused(outcome, limits.daily_budget_nano_usd) {
            return Err(err);
        }
        metering.holding = true;
        Ok(metering)
    }

    /// Replaces the reservation with what `model` actually used, and records it. A store
    /// failure here is not returned: the answer exists and the client should get it; what
    /// the store refused is written again later (see [`backlog`]).
    pub async fn settle(&mut self, model: &Model, usage: Usage, cost_nano_usd: u64) {
        self.settle_parts(&[(model, usage, cost_nano_usd)]).await;
    }

    /// [`Metering::settle`] for an answer several models wrote a part of (a stream that
    /// broke and was continued): the reservation is replaced by their sum, and each is
    /// recorded against its own model.
    pub async fn settle_parts(&mut self, parts: &[(&Model, Usage, u64)]) {
        let store = self.store.as_ref();
        if self.holding {
            self.holding = false;
            let (used_tokens, used_cost) = parts.iter().fold((0, 0), |(t, c), (_, u, cost)| {
                let tokens = u64::from(u.prompt_tokens) + u64::from(u.completion_tokens);
                (t + tokens, c + cost)
            });
            let settlement = self.settlement(used_tokens, used_cost);
            self.backlog
                .write(store, Deferred::Settlement(settlement))
                .await;
        }
        for &(model, usage, cost_nano_usd) in parts {
            record_metrics(model, usage, cost_nano_usd);
            let row = UsageRow {
                day: today(),
                key_id: self.key_id.clone(),
                model: model.name.clone(),
                requests: 1,
                prompt_tokens: u64::from(usage.prompt_tokens),
                completion_tokens: u64::from(usage.completion_tokens),
                cost_nano_usd,
            };
            let tenant = self.tenant.clone();
            self.backlog
                .write(store, Deferred::Usage { tenant, row })
                .await;
        }
    }

    fn settlement(&self, used_tokens: u64, used_cost_nano_usd: u64) -> Settlement {
        let tracked = |n: u64| if self.tpm.is_some() { n } else { 0 };
        Settlement {
            key_id: self.key_id.clone(),
            day: self.day.clone(),
            tpm: self.tpm,
            reserved_tokens: tracked(self.estimate.tokens),
            used_tokens: tracked(used_tokens),
            budgeted: self.budgeted,
            reserved_cost_nano_usd: self.estimate.cost_nano_usd,
            used_cost_nano_usd,
        }
    }
}

impl Drop for Metering {
    fn drop(&mut self) {
        if !self.holding {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, backlog) = (self.store.clone(), self.backlog.clone());
        let refund = Deferred::Settlement(self.settlement(0, 0));
        runtime.spawn(async move { backlog.write(store.as_ref(), refund).await });
    }
}

/// Tokens and cost by model, for session sends and relay calls alike.
fn record_metrics(model: &Model, usage: Usage, cost_nano_usd: u64) {
    let name = model.name.clone();
    metrics::counter!("tokens_total", "model" => name.clone(), "kind" => "prompt")
        .increment(u64::from(usage.prompt_tokens));
    metrics::counter!("tokens_total", "model" => name.clone(), "kind" => "completion")
        .increment(u64::from(usage.completion_tokens));
    metrics::counter!("cost_nano_usd_total", "model" => name).increment(cost_nano_usd);
}
