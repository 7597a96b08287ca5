//! `Idempotency-Key` on imports: a per-tenant record of key → body fingerprint + answer.
//!
//! The first request claims the key (with a short lease it renews while it runs), imports,
//! then stores its fingerprint and answer for `sessions.idempotency_ttl_seconds`. A retry
//! with the same key and body gets that answer replayed and writes nothing; with another
//! body, 422; while the first still runs, 409. An import that failed as a whole, or whose
//! answer holds errors a retry could fix (store unavailable, session busy), gives the key
//! up instead, so the retry runs for real. A request that dies mid-import (its instance
//! killed) stops renewing, and its claim lapses after `import.idempotency_lease_seconds`.

use std::time::Duration;

use actix_web::web;
use tokio::task::JoinHandle;

use crate::{domain::session::new_id, error::ApiError, state::AppState, store::import::ImportKey};

pub enum Begin {
    /// The key is ours: run the import, then [`Claim::finish`].
    Run(Claim),
    /// A finished request with this key: its fingerprint and answer.
    Replay { fingerprint: String, result: String },
}

/// A held key; renewed in the background until it is settled or dropped.
pub struct Claim {
    state: web::Data<AppState>,
    tenant: String,
    key: String,
    token: String,
    renewer: JoinHandle<()>,
}

/// Validates the header's value: 1 to 255 visible ASCII characters, as on sends.
pub fn key_of(
    value: Option<&actix_web::http::header::HeaderValue>,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "1 to 255 visible ASCII characters"))
}

pub async fn begin(
    state: &web::Data<AppState>,
    tenant: &str,
    key: &str,
) -> Result<Begin, ApiError> {
    let token = new_id();
    let lease = Duration::from_secs(state.settings.import.idempotency_lease_seconds);
    let lease_ms = lease.as_millis() as u64;
    match state
        .store
        .import_key_claim(tenant, key, &token, lease_ms)
        .await?
    {
        ImportKey::InFlight => Err(ApiError::IdempotencyKeyInUse),
        ImportKey::Done {
            fingerprint,
            result,
        } => Ok(Begin::Replay {
            fingerprint,
            result,
        }),
        ImportKey::Claimed => {
            let (renew_state, t, k, tok) = (
                state.clone(),
                tenant.to_string(),
                key.to_string(),
                token.clone(),
            );
            let renewer = actix_web::rt::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let renewed = renew_state
                        .store
                        .import_key_renew(&t, &k, &tok, lease_ms)
                        .await;
                    if let Err(err) = renewed {
                        tracing::warn!(%err, "could not renew an import's idempotency claim");
                    }
                }
            });
            Ok(Begin::Run(Claim {
                state: state.clone(),
                tenant: tenant.to_string(),
                key: key.to_string(),
                token,
                renewer,
            }))
        }
    }
}

impl Claim {
    /// Records the answer for replay (`Some`), or gives the key up (`None`).
    pub async fn finish(self, done: Option<(&str, &str)>) -> Result<(), ApiError> {
        self.renewer.abort();
        let ttl_ms = self.state.settings.sessions.idempotency_ttl_seconds * 1000;
        self.state
            .store
            .import_key_settle(&self.tenant, &self.key, &self.token, done, ttl_ms)
            .await?;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A request cancelled mid-import stops renewing: its claim lapses by itself.
        self.renewer.abort();
    }
}
