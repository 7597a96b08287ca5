//! Liveness, readiness and the authenticated status probe.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(healthz)
        .service(readyz)
        .service(status)
        .service(metrics);
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "See API.md")))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready means the store answers: a load balancer stops sending traffic otherwise.
#[utoipa::path(tag = "operations", responses((status = 200, description = "See API.md")))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.is_set() {
        return Ok(HttpResponse::ServiceUnavailable().json(json!({ "status": "draining" })));
    }
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.kind() })))
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "See API.md")))]
#[get("/v1/status")]
async fn status(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    // Reading the key's spend checks the store, as the ping did before it.
    let key = crate::metering::key_status(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "store": state.store.kind(),
        "version": env!("CARGO_PKG_VERSION"),
        // This instance's circuit breakers: "closed" | "open" | "half_open" per model.
        "models": state.router.states(),
        "key": key,
    })))
}

/// Prometheus text format, unauthenticated like the probes (it carries no ids, keys or
/// content). With `server.metrics_listen` it is served on that address only.
#[utoipa::path(tag = "operations", responses((status = 200, description = "See API.md")))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.settings.server.metrics_listen.is_some() {
        return Err(ApiError::RouteNotFound);
    }
    Ok(crate::metrics::exposition(&state.store))
}
