//! Liveness, readiness and the authenticated status probe.

use actix_web::{HttpResponse, get, web};
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::docs::ErrorBody;
use crate::{
    auth::Caller, error::ApiError, llm::breaker::BreakerState, metering::KeyStatus, state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(healthz)
        .service(readyz)
        .service(status)
        .service(metrics);
}

/// What a probe reads.
#[derive(Serialize, ToSchema)]
struct Probe {
    /// `ok` (liveness), `ready`, or `draining` (shutting down).
    status: &'static str,
    /// `redis` or `memory`, when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is alive", body = Probe)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Probe {
        status: "ok",
        store: None,
    })
}

/// Ready means the store answers: a load balancer stops sending traffic otherwise.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "Ready: the store answers", body = Probe),
    (status = 503, description = "Draining (`status: draining`) or the store is unavailable (`store_unavailable`)",
        content((Probe = "application/json"), (ErrorBody = "application/json"))),
))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.is_set() {
        let draining = Probe {
            status: "draining",
            store: None,
        };
        return Ok(HttpResponse::ServiceUnavailable().json(draining));
    }
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(Probe {
        status: "ready",
        store: Some(state.store.kind()),
    }))
}

/// `GET /v1/status`: the instance, and what the calling key may still spend today.
#[derive(Serialize, ToSchema)]
struct Status {
    /// Always `ok`.
    status: &'static str,
    store: &'static str,
    version: &'static str,
    /// This instance's circuit breaker of each model.
    models: BTreeMap<String, BreakerState>,
    key: KeyStatus,
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "The key is good; its limits and today's spend", body = Status)))]
#[get("/v1/status")]
async fn status(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    // Reading the key's spend checks the store, as the ping did before it.
    let key = crate::metering::key_status(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(Status {
        status: "ok",
        store: state.store.kind(),
        version: env!("CARGO_PKG_VERSION"),
        models: state.router.states(),
        key,
    }))
}

/// Prometheus text format, unauthenticated like the probes (it carries no ids, keys or
/// content). With `server.metrics_listen` it is served on that address only.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
    (status = 404, description = "Served on `server.metrics_listen` instead", body = ErrorBody),
))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.settings.server.metrics_listen.is_some() {
        return Err(ApiError::RouteNotFound);
    }
    Ok(crate::metrics::exposition(&state.store))
}
