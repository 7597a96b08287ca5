//! The admin API (admin key only): make, list, revoke and rotate API keys.
//!
//! The plaintext of a key is in the answer to its creation or rotation and nowhere else:
//! the store keeps digests, lists show the public prefix.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, ApiQuery};
use crate::{
    auth::{Admin, api_keys},
    config::is_name,
    error::ApiError,
    state::AppState,
    store::{WriteOutcome, keys::KeyRecord},
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(create)
        .service(list)
        .service(revoke)
        .service(rotate);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    tenant: String,
    rate_limit_rpm: Option<u32>,
    rate_limit_tpm: Option<u32>,
    daily_budget_usd: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
}

impl NewKey {
    fn validate(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        if self.name.is_empty() || self.name.len() > 100 || self.name.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "name",
                "1 to 100 characters, no control characters",
            ));
        }
        if !is_name(&self.tenant) {
            return Err(ApiError::invalid(
                "tenant",
                "1 to 64 letters, digits, - or _",
            ));
        }
        for (field, value) in [
            ("rate_limit_rpm", self.rate_limit_rpm),
            ("rate_limit_tpm", self.rate_limit_tpm),
        ] {
            if value == Some(0) {
                return Err(ApiError::invalid(
                    field,
                    "must be at least 1 (omit it for no limit)",
                ));
            }
        }
        if self
            .daily_budget_usd
            .is_some_and(|b| !b.is_finite() || b < 0.0)
        {
            return Err(ApiError::invalid(
                "daily_budget_usd",
                "must be a non-negative number",
            ));
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiError::invalid("expires_at", "must be in the future"));
        }
        Ok(())
    }
}

/// A key as the admin API shows it: never its secret, except in the answer that made it.
#[derive(Serialize, utoipa::ToSchema)]
struct KeyView {
    /// Always `api_key`.
    object: &'static str,
    key_id: String,
    name: String,
    tenant: String,
    /// The public prefix of the current secret.
    prefix: Option<String>,
    rate_limit_rpm: Option<u32>,
    rate_limit_tpm: Option<u32>,
    daily_budget_usd: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
    expired: bool,
    created_at: DateTime<Utc>,
    /// Secrets replaced by a rotation, still working until `retires_at`.
    retiring: Vec<Retiring>,
    /// The plaintext key: in the answer to its creation or rotation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Retiring {
    prefix: String,
    retires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct KeyList {
    /// Always `list`.
    object: &'static str,
    data: Vec<KeyView>,
}

fn view(record: &KeyRecord, plaintext: Option<&str>, now: DateTime<Utc>) -> KeyView {
    let current = record.secrets.iter().rfind(|s| s.retires_at.is_none());
    let retiring = (record.secrets.iter())
        .filter(|s| s.retires_at.is_some_and(|at| at > now))
        .map(|s| Retiring {
            prefix: format!("sr_{}", s.prefix),
            retires_at: s.retires_at,
        })
        .collect();
    KeyView {
        object: "api_key",
        key_id: record.key_id.clone(),
        name: record.name.clone(),
        tenant: record.tenant.clone(),
        prefix: current.map(|s| format!("sr_{}", s.prefix)),
        rate_limit_rpm: record.rate_limit_rpm,
        rate_limit_tpm: record.rate_limit_tpm,
        daily_budget_usd: record.daily_budget_usd,
        expires_at: record.expires_at,
        expired: record.expires_at.is_some_and(|at| at <= now),
        created_at: record.created_at,
        retiring,
        key: plaintext.map(str::to_string),
    }
}

#[utoipa::path(tag = "admin", request_body = NewKey, responses((status = 201, description = "The key, its plaintext `key` included (this once)", body = KeyView)))]
#[post("/v1/admin/keys")]
async fn create(
    state: web::Data<AppState>,
    _admin: Admin,
    body: ApiJson<NewKey>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let input = body.value;
    input.validate(now)?;
    let secret = api_keys::generate(now);
    let record = KeyRecord {
        key_id: api_keys::new_key_id(),
        name: input.name,
        tenant: input.tenant,
        rate_limit_rpm: input.rate_limit_rpm,
        rate_limit_tpm: input.rate_limit_tpm,
        daily_budget_usd: input.daily_budget_usd,
        expires_at: input.expires_at,
        created_at: now,
        revision: 1,
        secrets: vec![secret.stored],
    };
    match state.store.save_key(&record, None).await? {
        WriteOutcome::Written => {
            state.keys.forget_cached_keys();
            tracing::info!(key_id = %record.key_id, tenant = %record.tenant, "API key created");
            Ok(HttpResponse::Created().json(view(&record, Some(&secret.plaintext), now)))
        }
        _ => Err(ApiError::Internal("API key id collision".into())),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the keys of this tenant.
    tenant: Option<String>,
}

#[utoipa::path(tag = "admin", params(ListQuery), responses((status = 200, description = "Every key, oldest first, without secrets", body = KeyList)))]
#[get("/v1/admin/keys")]
async fn list(
    state: web::Data<AppState>,
    _admin: Admin,
    query: ApiQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let mut keys = state.store.list_keys().await?;
    keys.retain(|k| query.tenant.as_ref().is_none_or(|t| &k.tenant == t));
    keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    let data = keys.iter().map(|k| view(k, None, now)).collect();
    Ok(HttpResponse::Ok().json(KeyList {
        object: "list",
        data,
    }))
}

#[utoipa::path(tag = "admin", responses((status = 204, description = "Revoked, on every instance within a second")))]
#[delete("/v1/admin/keys/{key_id}")]
async fn revoke(
    state: web::Data<AppState>,
    _admin: Admin,
    key_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !state.store.delete_key(&key_id).await? {
        return Err(ApiError::KeyNotFound);
    }
    state.keys.forget_cached_keys();
    tracing::info!(key_id = %key_id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rotation {
    grace_seconds: Option<u64>,
}

/// The longest grace period a rotation may ask for.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;
/// How often a rotation re-reads and retries when another change got in first.
const ROTATE_ATTEMPTS: usize = 5;

#[utoipa::path(tag = "admin", request_body = Rotation, responses((status = 200, description = "The key with its new secret (plaintext `key`, this once)", body = KeyView)))]
#[post("/v1/admin/keys/{key_id}/rotate")]
async fn rotate(
    state: web::Data<AppState>,
    _admin: Admin,
    key_id: web::Path<String>,
    body: ApiJson<Rotation>,
) -> Result<HttpResponse, ApiError> {
    let grace = body
        .value
        .grace_seconds
        .unwrap_or(state.settings.auth.rotation_grace_seconds);
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "grace_seconds",
            format!("at most {MAX_GRACE_SECONDS}"),
        ));
    }
    let grace = Duration::seconds(i64::try_from(grace).unwrap_or(i64::MAX));
    for _ in 0..ROTATE_ATTEMPTS {
        let record = state
            .store
            .key(&key_id)
            .await?
            .ok_or(ApiError::KeyNotFound)?;
        let now = Utc::now();
        let (rotated, plaintext) = api_keys::rotate(&record, grace, now);
        match state
            .store
            .save_key(&rotated, Some(record.revision))
            .await?
        {
            WriteOutcome::Written => {
                state.keys.forget_cached_keys();
                tracing::info!(key_id = %rotated.key_id, "API key rotated");
                return Ok(HttpResponse::Ok().json(view(&rotated, Some(&plaintext), now)));
            }
            WriteOutcome::Missing => return Err(ApiError::KeyNotFound),
            WriteOutcome::Conflict => continue,
        }
    }
    Err(ApiError::Internal("key rotation kept conflicting".into()))
}
