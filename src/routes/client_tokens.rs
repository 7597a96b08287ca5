//! `POST /v1/sessions/{id}/client_tokens`: a token a browser may hold instead of an API key.

use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::{extract::ApiJson, owned_session};
use crate::{
    auth::{Caller, client_tokens},
    error::ApiError,
    state::AppState,
    store::keys::ClientTokenRecord,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(issue);
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// Lifetime; default `auth.client_token_ttl_seconds`.
    #[schema(minimum = 1)]
    ttl_seconds: Option<u64>,
}

/// A token a browser may hold instead of an API key: this session's read and send routes only.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ClientToken {
    /// Always `client_token`.
    object: &'static str,
    session_id: String,
    token: String,
    expires_at: DateTime<Utc>,
}

#[utoipa::path(tag = "client tokens", request_body = TokenRequest, responses((status = 201, description = "The token, shown this once", body = ClientToken)))]
#[post("/v1/sessions/{id}/client_tokens")]
async fn issue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let auth = &state.settings.auth;
    let ttl = body
        .value
        .ttl_seconds
        .unwrap_or(auth.client_token_ttl_seconds);
    if ttl == 0 || ttl > auth.client_token_max_ttl_seconds {
        let max = auth.client_token_max_ttl_seconds;
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!("must be between 1 and {max}"),
        ));
    }
    owned_session(&state, &caller, &id).await?;
    let now = Utc::now();
    let expires_at = now + Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX));
    let session = caller.session(&id);
    let issued = client_tokens::generate(&session);
    let grant = ClientTokenRecord {
        tenant: caller.tenant.clone(),
        key_id: caller.key_id.clone(),
        expires_at_ms: expires_at.timestamp_millis(),
    };
    let stored = state
        .store
        .add_client_token(&session, &issued.digest, &grant, now.timestamp_millis())
        .await?;
    if !stored {
        return Err(ApiError::SessionNotFound);
    }
    Ok(HttpResponse::Created().json(ClientToken {
        object: "client_token",
        session_id: id.into_inner(),
        token: issued.token,
        expires_at,
    }))
}
