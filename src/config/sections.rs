//! The plain sections of the file: server, store, sessions, auth, log, providers, models.

use serde::Deserialize;

use super::{ConfigError, ECHO_MODEL, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body accepted; larger ones get 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Overall deadline of a request that calls an upstream model.
    pub request_timeout_seconds: u64,
    /// On SIGTERM, how long in-flight requests (streams included) may take to finish.
    pub shutdown_grace_seconds: u64,
    /// On SIGTERM, how long `/readyz` reports 503 before the listener closes.
    pub drain_delay_ms: u64,
    /// Connect timeout of the shared upstream HTTP client.
    pub upstream_connect_timeout_ms: u64,
    /// Browser origins allowed to call the API (CORS), e.g. `https://app.example.com`;
    /// `*` allows any. Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// A separate address for `GET /metrics` (e.g. on a private interface); when set, the
    /// main listener no longer serves it.
    pub metrics_listen: Option<String>,
    /// How long a client has to send a request's head once connected (or once its
    /// previous request ended); then the connection is closed.
    pub client_request_timeout_ms: u64,
    /// How long a closing connection may take to shut down cleanly.
    pub client_disconnect_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive_seconds: u64,
    /// The longest silence while a request body is being read (uploads included); a
    /// stalled upload is answered 408 and its connection closed.
    pub body_idle_timeout_ms: u64,
    /// Bound on reading a whole JSON body (every route but the streamed import).
    pub body_timeout_ms: u64,
    /// Open connections one client address may hold; past it, a request is refused with
    /// 429 and its connection closed. Behind a reverse proxy every client shares the
    /// proxy's address: raise it, or 0 turns the bound off.
    pub max_connections_per_peer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `None`: the in-process memory store (development only). In cluster mode, one or
    /// more nodes to discover the cluster from, separated by commas; in sentinel mode,
    /// the sentinels.
    pub redis_url: Option<String>,
    pub mode: StoreMode,
    /// In sentinel mode, the name the sentinels monitor the primary by.
    pub sentinel_master: String,
    pub key_prefix: String,
    pub pool_size: usize,
    /// Bound on every Redis command; past it the connection is discarded and the caller gets 503.
    pub command_timeout_ms: u64,
    /// Bound on waiting for, creating or recycling a pooled connection.
    pub pool_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub default_model: String,
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    /// Completion tokens reserved when a session does not say `max_tokens`.
    pub default_max_tokens: u32,
    /// How long a send's lease on its session lasts unless renewed: what a session waits
    /// for when its holder can no longer give it back (an instance died, or Redis
    /// restarted with the lease in its append-only file).
    pub lease_seconds: u64,
    /// How often a running send renews its lease; less than `lease_seconds`.
    pub lease_renew_seconds: u64,
    pub idempotency_ttl_seconds: u64,
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub keys: Vec<StaticKeySettings>,
    /// Filled from `SESSION_RELAY_ADMIN_KEY` only; never read from the file.
    #[serde(skip)]
    pub admin_key: Option<Secret>,
    /// How long the old secret of a rotated key keeps working, unless the rotation says.
    pub rotation_grace_seconds: u64,
    /// Lifetime of a client token whose request names none.
    pub client_token_ttl_seconds: u64,
    /// The longest lifetime a client token may ask for.
    pub client_token_max_ttl_seconds: u64,
    /// Bound on the delay added to repeated 401 answers to one address; 0 turns it off.
    pub failed_auth_max_delay_ms: u64,
}

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_token_ttl_seconds == 0
            || self.client_token_ttl_seconds > self.client_token_max_ttl_seconds
        {
            return Err(ConfigError(
                "auth.client_token_ttl_seconds: must be between 1 and client_token_max_ttl_seconds"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Origins are `scheme://host[:port]` with nothing after, as browsers send them.
pub(super) fn validate_origins(origins: &[String]) -> Result<(), ConfigError> {
    for (i, origin) in origins.iter().enumerate() {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let well_formed = origin == "*"
            || rest.is_some_and(|host| {
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            });
        if !well_formed {
            return Err(ConfigError(format!(
                "server.cors_allowed_origins[{i}]: `{origin}` is not an origin like https://app.example.com"
            )));
        }
    }
    Ok(())
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            keys: Vec::new(),
            admin_key: None,
            rotation_grace_seconds: 24 * 3600,
            client_token_ttl_seconds: 3600,
            client_token_max_ttl_seconds: 24 * 3600,
            failed_auth_max_delay_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeySettings {
    pub name: String,
    pub tenant: String,
    pub key_env: String,
    #[serde(skip)]
    pub key: Option<Secret>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `session_relay=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Echo,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(skip)]
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub upstream_name: Option<String>,
    #[serde(default = "default_context_tokens")]
    pub context_tokens: u32,
    #[serde(default)]
    pub input_usd_per_mtok: f64,
    #[serde(default)]
    pub output_usd_per_mtok: f64,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// `o200k_base` or `cl100k_base`; omitted: chosen from the model name.
    #[serde(default)]
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// This model's own attempt settings, each overriding `[routing]`'s.
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub attempt_timeout_ms: Option<u64>,
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    #[serde(default)]
    pub first_token_timeout_ms: Option<u64>,
    /// Whether this model may finish an answer whose stream broke on the model before it
    /// in the chain (see [`crate::conversation::stream`]); omitted: yes.
    #[serde(default)]
    pub continue_streams: Option<bool>,
}

pub(super) fn default_context_tokens() -> u32 {
    8192
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 120,
            shutdown_grace_seconds: 30,
            drain_delay_ms: 0,
            upstream_connect_timeout_ms: 3000,
            cors_allowed_origins: Vec::new(),
            metrics_listen: None,
            client_request_timeout_ms: 5000,
            client_disconnect_timeout_ms: 1000,
            keep_alive_seconds: 5,
            body_idle_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections_per_peer: 256,
        }
    }
}

/// What `redis_url` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreMode {
    /// One server (a primary).
    #[default]
    Single,
    /// Nodes of a Redis Cluster.
    Cluster,
    /// Redis Sentinels, which name the primary.
    Sentinel,
}

impl StoreSettings {
    /// The nodes `redis_url` names: one URL, or in cluster and sentinel mode several,
    /// comma-separated.
    pub fn redis_urls(&self) -> Vec<&str> {
        let Some(url) = &self.redis_url else {
            return Vec::new();
        };
        match self.mode {
            StoreMode::Single => vec![url.as_str()],
            StoreMode::Cluster | StoreMode::Sentinel => url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect(),
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            redis_url: None,
            mode: StoreMode::Single,
            sentinel_master: "mymaster".into(),
            key_prefix: "sr".into(),
            pool_size: 64,
            command_timeout_ms: 500,
            pool_timeout_ms: 500,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            default_model: ECHO_MODEL.into(),
            default_ttl_seconds: 1800,
            max_ttl_seconds: 30 * 24 * 3600,
            default_max_tokens: 1024,
            lease_seconds: 15,
            lease_renew_seconds: 5,
            idempotency_ttl_seconds: 24 * 3600,
            max_message_bytes: 256 * 1024,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}
