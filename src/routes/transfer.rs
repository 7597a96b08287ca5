//! Bulk import and export: `POST /v1/sessions/import`, `GET /v1/sessions/{id}/export`,
//! `GET /v1/users/{user_id}/export`.
//!
//! The import route reads its body as a stream (`web::Payload`), so `server.max_body_bytes`
//! does not apply to it; the `[import]` limits do.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::{docs::ErrorBody, extract::ApiQuery, owned_session};
use crate::domain::session::now_ms;
use crate::{
    auth::Caller,
    domain::{session::is_user_id, transfer::ImportMode},
    error::ApiError,
    state::AppState,
    transfer::{self, export, idempotency, items::JsonBody, report::Report, source::Format},
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(import)
        .service(export_session)
        .service(export_user);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// `create` (default: an id that is taken fails its item), `append` or `replace`.
    mode: Option<ImportMode>,
}

#[utoipa::path(
    tag = "import",
    params(
        ImportQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body gets the recorded answer"),
    ),
    request_body(content(
        (JsonBody = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "One result per item, in order; each item is all-or-nothing", body = Report),
        (status = 409, description = "A request with this Idempotency-Key is still in flight", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key came with another body or mode", body = ErrorBody),
    )
)]
#[post("/v1/sessions/import")]
async fn import(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: ApiQuery<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE);
    let format = Format::of(content_type.and_then(|v| v.to_str().ok()).unwrap_or(""));
    let key = idempotency::key_of(req.headers().get("idempotency-key"))?;
    let limits = &state.settings.import;
    let limit = match format {
        Format::Ndjson => limits.max_body_bytes,
        Format::Json => limits.max_json_body_bytes as u64,
    };
    // A declared length over the limit is refused before anything is read or written.
    if declared_length(&req).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge {
            limit_bytes: usize::try_from(limit).unwrap_or(usize::MAX),
        });
    }
    let mode = query.mode.unwrap_or_default();
    let chunks = payload.boxed_local();
    let body = transfer::run_import(&state, &caller.tenant, mode, format, key, chunks).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn ndjson(lines: impl Stream<Item = Result<Bytes, ApiError>> + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(lines)
}

#[utoipa::path(tag = "import", responses((status = 200, description = "NDJSON, one line per session, in the import format", content_type = "application/x-ndjson", body = String)))]
#[get("/v1/sessions/{id}/export")]
async fn export_session(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    owned_session(&state, &caller, &id).await?;
    let ids = vec![id.into_inner()];
    Ok(ndjson(export::lines(
        state.clone(),
        caller.tenant,
        None,
        ids,
    )))
}

#[utoipa::path(tag = "import", responses((status = 200, description = "NDJSON, one line per live session of the user", content_type = "application/x-ndjson", body = String)))]
#[get("/v1/users/{user_id}/export")]
async fn export_user(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !is_user_id(&user_id) {
        return Err(ApiError::invalid(
            "user_id",
            "1 to 256 characters, no control characters",
        ));
    }
    let ids = state
        .store
        .user_sessions(&caller.tenant, &user_id, now_ms())
        .await?;
    let user_id = Some(user_id.into_inner());
    Ok(ndjson(export::lines(
        state.clone(),
        caller.tenant,
        user_id,
        ids,
    )))
}
