//! Who is calling: `Authorization: Bearer <key>` → a [`Caller`] (or a refusal).
//!
//! A bearer is one of:
//! - a static key from the configuration, held only as a SHA-256 digest;
//! - an API key made through the admin API ([`api_keys`]), found by its public prefix
//!   through a cache that forgets within a second of any change ([`cache`]);
//! - a client token ([`client_tokens`]), which acts for one session only;
//! - the admin key, which opens the admin API ([`Admin`]) and nothing else.
//!
//! With no static key and no admin key configured the service runs in *loopback mode*: it
//! serves only clients on this machine, as the tenant `default` (like Redis' protected
//! mode). Authentication runs as middleware, before any handler reads the request
//! (`routes::auth`), which also takes the request from its key's per-minute limit
//! and answers repeated 401s from one address more and more slowly ([`throttle`]).

pub mod api_keys;
mod cache;
pub mod client_tokens;
mod throttle;

use std::{collections::HashMap, net::IpAddr};

use chrono::Utc;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::AuthSettings, domain::scope::SessionKey, error::ApiError, store::Store};

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub key_name: String,
    /// Limits, budgets and usage are kept per key id: `key_…` for keys made through the
    /// admin API, `static:<name>` for configured ones, `loopback` in loopback mode.
    pub key_id: String,
    pub limits: KeyLimits,
    /// Set for a client token: the one session it acts for.
    pub session_scope: Option<String>,
}

impl Caller {
    /// The caller's session `id`: ids are per tenant, so a foreign tenant's session of the
    /// same id is never reached.
    pub fn session(&self, id: &str) -> SessionKey {
        SessionKey::new(&self.tenant, id)
    }
}

/// What a key may use; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub daily_budget_nano_usd: Option<u64>,
}

pub const LOOPBACK_TENANT: &str = "default";
const LOOPBACK_KEY_ID: &str = "loopback";

pub struct KeyRing {
    by_digest: HashMap<[u8; 32], Caller>,
    admin: Option<[u8; 32]>,
    cache: cache::KeyCache,
    throttle: throttle::Throttle,
}

/// What authentication needs of a request.
pub struct Presented {
    pub bearer: Option<String>,
    pub peer: Option<IpAddr>,
}

impl KeyRing {
    pub fn from_settings(settings: &AuthSettings) -> KeyRing {
        let by_digest = settings
            .keys
            .iter()
            .filter_map(|k| {
                let caller = Caller {
                    tenant: k.tenant.clone(),
                    key_name: k.name.clone(),
                    key_id: format!("static:{}", k.name),
                    limits: KeyLimits::default(),
                    session_scope: None,
                };
                k.key
                    .as_ref()
                    .map(|secret| (digest(secret.expose()), caller))
            })
            .collect();
        KeyRing {
            by_digest,
            admin: settings.admin_key.as_ref().map(|k| digest(k.expose())),
            cache: cache::KeyCache::default(),
            throttle: throttle::Throttle::new(settings.failed_auth_max_delay_ms),
        }
    }

    /// True when neither a static key nor the admin key is configured: only loopback
    /// clients are served (no key can be made without the admin key).
    pub fn is_loopback_mode(&self) -> bool {
        self.by_digest.is_empty() && self.admin.is_none()
    }

    pub async fn authenticate(
        &self,
        store: &dyn Store,
        req: &Presented,
    ) -> Result<Caller, ApiError> {
        if self.is_loopback_mode() {
            return match req.peer {
                Some(ip) if ip.is_loopback() => Ok(loopback_caller()),
                _ => Err(ApiError::Forbidden),
            };
        }
        let key = req.bearer.as_deref().ok_or(ApiError::InvalidApiKey)?;
        if let Some(caller) = self.by_digest.get(&digest(key)) {
            return Ok(caller.clone());
        }
        if self.is_admin(key) {
            return Err(ApiError::Forbidden);
        }
        if let Some(session) = client_tokens::session_of(key) {
            return self.client_token(store, key, session).await;
        }
        let prefix = api_keys::prefix_of(key).ok_or(ApiError::InvalidApiKey)?;
        match self.cache.by_prefix(store, prefix).await? {
            Some(record) if api_keys::verify(&record, key, Utc::now()) => {
                Ok(api_keys::caller(&record))
            }
            _ => Err(ApiError::InvalidApiKey),
        }
    }

    /// An unknown, expired or orphaned token (its session or issuing key gone) is 401;
    /// where a valid one may go is the [`Caller`] extractor's business.
    async fn client_token(
        &self,
        store: &dyn Store,
        token: &str,
        session: SessionKey,
    ) -> Result<Caller, ApiError> {
        let digest = api_keys::digest_hex(token);
        let now = Utc::now();
        let grant = store
            .client_token(&session, &digest, now.timestamp_millis())
            .await?
            .ok_or(ApiError::InvalidApiKey)?;
        // The grant is stored beside its session, so its tenant is the token's scope's.
        let issuer = self
            .issuer(store, &grant.key_id)
            .await?
            .filter(|issuer| {
                issuer.tenant == grant.tenant && issuer.session(session.id()) == session
            })
            .ok_or(ApiError::InvalidApiKey)?;
        Ok(Caller {
            session_scope: Some(session.id().to_string()),
            ..issuer
        })
    }

    /// The key that issued a client token, if it still exists and is in force.
    async fn issuer(&self, store: &dyn Store, key_id: &str) -> Result<Option<Caller>, ApiError> {
        if let Some(caller) = self.by_digest.values().find(|c| c.key_id == key_id) {
            return Ok(Some(caller.clone()));
        }
        let record = self.cache.by_id(store, key_id).await?;
        let now = Utc::now();
        Ok(record
            .filter(|r| r.expires_at.is_none_or(|at| at > now))
            .map(|r| api_keys::caller(&r)))
    }

    /// Called after a change to the key table, so this instance applies it at once
    /// (the others within a second).
    pub fn forget_cached_keys(&self) {
        self.cache.clear();
    }

    /// Slows the next 401s to an address that keeps failing (see [`throttle`]).
    pub async fn failed_attempt(&self, peer: Option<IpAddr>) {
        self.throttle.failed(peer).await;
    }

    pub fn is_admin(&self, key: &str) -> bool {
        self.admin
            .is_some_and(|admin| bool::from(admin.ct_eq(&digest(key))))
    }
}

fn loopback_caller() -> Caller {
    Caller {
        tenant: LOOPBACK_TENANT.into(),
        key_name: "loopback".into(),
        key_id: LOOPBACK_KEY_ID.into(),
        limits: KeyLimits::default(),
        session_scope: None,
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The holder of the admin key. Any other valid key gets 403, an invalid one 401.
#[derive(Debug)]
pub struct Admin;
