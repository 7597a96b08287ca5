//! Configuration: one TOML file plus environment overrides.
//!
//! This is the only module that reads environment variables. Everything it hands out is
//! already resolved (secrets read from the variables the file names) and validated, so a
//! bad configuration fails at startup with a message naming the field, never later.

pub mod args;
mod compaction;
mod import;
mod routing;
mod sections;

use std::{collections::HashMap, fmt, path::Path};

use serde::Deserialize;

pub use compaction::CompactionSettings;
pub use import::ImportSettings;
pub use routing::RoutingSettings;
pub use sections::*;
use sections::{default_context_tokens, validate_origins};

/// A secret string that never shows itself in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub sessions: SessionSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub providers: Vec<ProviderSettings>,
    pub models: Vec<ModelSettings>,
    pub routing: RoutingSettings,
    pub import: ImportSettings,
    pub compaction: CompactionSettings,
}
/// The built-in model that needs no network and no key.
pub const ECHO_MODEL: &str = "echo";
const ECHO_PROVIDER: &str = "builtin-echo";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Environment variables that override single settings, for containers and CI.
const OVERRIDES: &[(&str, &str)] = &[
    ("SESSION_RELAY_LISTEN", "server.listen"),
    ("SESSION_RELAY_MAX_BODY_BYTES", "server.max_body_bytes"),
    ("SESSION_RELAY_METRICS_LISTEN", "server.metrics_listen"),
    ("REDIS_URL", "store.redis_url"),
    ("SESSION_RELAY_REDIS_MODE", "store.mode"),
    ("SESSION_RELAY_KEY_PREFIX", "store.key_prefix"),
    ("SESSION_RELAY_DEFAULT_MODEL", "sessions.default_model"),
    ("SESSION_RELAY_LOG_FORMAT", "log.format"),
    ("SESSION_RELAY_LOG_LEVEL", "log.level"),
    (
        "SESSION_RELAY_ROTATION_GRACE_SECONDS",
        "auth.rotation_grace_seconds",
    ),
    (
        "SESSION_RELAY_IMPORT_MAX_BODY_BYTES",
        "import.max_body_bytes",
    ),
];

impl Settings {
    /// Reads the file named by `--config` or `SESSION_RELAY_CONFIG` (if any), applies the
    /// environment overrides, resolves secrets and validates.
    pub fn load(cli_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let path = cli_path
            .map(Path::to_path_buf)
            .or_else(|| env.get("SESSION_RELAY_CONFIG").map(Into::into));
        let text = match path {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?,
            None => String::new(),
        };
        Settings::from_toml(&text, &env)
    }

    /// Pure core of [`Settings::load`], so tests can pass their own file and environment.
    pub fn from_toml(text: &str, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        for (var, dotted) in OVERRIDES {
            if let Some(value) = env.get(*var) {
                set_dotted(&mut table, dotted, value);
            }
        }
        let mut settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.to_string()))?;
        settings.resolve_secrets(env)?;
        settings.add_builtin_echo();
        settings.validate()?;
        Ok(settings)
    }

    fn resolve_secrets(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(Secret::new);
        self.auth.admin_key = non_empty("SESSION_RELAY_ADMIN_KEY");
        // One key straight from the environment, for containers that carry no config file.
        if let Some(key) = non_empty("SESSION_RELAY_API_KEY") {
            self.auth.keys.push(StaticKeySettings {
                name: "env".into(),
                tenant: env
                    .get("SESSION_RELAY_API_TENANT")
                    .cloned()
                    .unwrap_or_else(|| "default".into()),
                key_env: "SESSION_RELAY_API_KEY".into(),
                key: Some(key),
            });
        }
        for (i, key) in self.auth.keys.iter_mut().enumerate() {
            key.key = Some(non_empty(&key.key_env).ok_or_else(|| {
                ConfigError(format!(
                    "auth.keys[{i}].key_env: environment variable {} is not set",
                    key.key_env
                ))
            })?);
        }
        for provider in &mut self.providers {
            provider.api_key = provider.api_key_env.as_deref().and_then(non_empty);
        }
        Ok(())
    }

    fn add_builtin_echo(&mut self) {
        if !self.providers.iter().any(|p| p.name == ECHO_PROVIDER) {
            self.providers.push(ProviderSettings {
                name: ECHO_PROVIDER.into(),
                kind: ProviderKind::Echo,
                base_url: None,
                api_key_env: None,
                api_key: None,
            });
        }
        if !self.models.iter().any(|m| m.name == ECHO_MODEL) {
            self.models.push(ModelSettings {
                name: ECHO_MODEL.into(),
                provider: ECHO_PROVIDER.into(),
                upstream_name: None,
                context_tokens: default_context_tokens(),
                input_usd_per_mtok: 0.0,
                output_usd_per_mtok: 0.0,
                fallbacks: Vec::new(),
                tokenizer: None,
                aliases: Vec::new(),
                ..ModelSettings::default()
            });
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.routing.validate()?;
        self.import.validate()?;
        self.auth.validate()?;
        self.compaction.validate(|name| {
            (self.models.iter()).any(|m| m.name == name || m.aliases.iter().any(|a| a == name))
                || name == ECHO_MODEL
        })?;
        validate_origins(&self.server.cors_allowed_origins)?;
        let fail = |msg: String| Err(ConfigError(msg));
        let listens = [
            ("listen", Some(&self.server.listen)),
            ("metrics_listen", self.server.metrics_listen.as_ref()),
        ];
        for (field, value) in listens {
            if let Some(addr) = value
                && addr.parse::<std::net::SocketAddr>().is_err()
            {
                return fail(format!("server.{field}: `{addr}` is not host:port"));
            }
        }
        if self.server.metrics_listen.as_ref() == Some(&self.server.listen) {
            return fail("server.metrics_listen: must differ from server.listen".into());
        }
        let timeouts = [
            (
                "client_request_timeout_ms",
                self.server.client_request_timeout_ms,
            ),
            ("body_idle_timeout_ms", self.server.body_idle_timeout_ms),
            ("body_timeout_ms", self.server.body_timeout_ms),
        ];
        if let Some((field, _)) = timeouts.iter().find(|(_, ms)| *ms == 0) {
            return fail(format!("server.{field}: must be at least 1"));
        }
        if self.store.key_prefix.is_empty()
            || !self
                .store
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return fail("store.key_prefix: use letters, digits and - _ . : only".into());
        }
        if self.store.pool_size == 0 {
            return fail("store.pool_size: must be at least 1".into());
        }
        let ttl = &self.sessions;
        if ttl.lease_renew_seconds == 0 || ttl.lease_renew_seconds >= ttl.lease_seconds {
            return fail(
                "sessions.lease_renew_seconds: must be at least 1 and less than lease_seconds"
                    .into(),
            );
        }
        if ttl.default_ttl_seconds == 0 || ttl.default_ttl_seconds > ttl.max_ttl_seconds {
            return fail(
                "sessions.default_ttl_seconds: must be between 1 and max_ttl_seconds".into(),
            );
        }
        for (i, key) in self.auth.keys.iter().enumerate() {
            if !is_name(&key.tenant) {
                return fail(format!(
                    "auth.keys[{i}].tenant: use letters, digits, - and _ only"
                ));
            }
        }
        validate_model_names(&self.models)?;
        for (i, model) in self.models.iter().enumerate() {
            if !self.providers.iter().any(|p| p.name == model.provider) {
                return fail(format!(
                    "models[{i}].provider: no provider named `{}`",
                    model.provider
                ));
            }
            if let Some(tokenizer) = &model.tokenizer
                && crate::domain::tokens::Tokenizer::from_name(tokenizer).is_none()
            {
                return fail(format!(
                    "models[{i}].tokenizer: unknown tokenizer `{tokenizer}`"
                ));
            }
            let timeouts = [
                ("attempt_timeout_ms", model.attempt_timeout_ms),
                ("first_byte_timeout_ms", model.first_byte_timeout_ms),
                ("first_token_timeout_ms", model.first_token_timeout_ms),
            ];
            if let Some((field, _)) = timeouts.iter().find(|(_, ms)| *ms == Some(0)) {
                return fail(format!("models[{i}].{field}: must be at least 1"));
            }
            for fallback in &model.fallbacks {
                if !self
                    .models
                    .iter()
                    .any(|m| &m.name == fallback || m.aliases.contains(fallback))
                {
                    return fail(format!(
                        "models[{i}].fallbacks: no model named `{fallback}`"
                    ));
                }
            }
        }
        for (i, provider) in self.providers.iter().enumerate() {
            if provider.kind != ProviderKind::Echo && provider.base_url.is_none() {
                return fail(format!(
                    "providers[{i}].base_url: required for kind {:?}",
                    provider.kind
                ));
            }
        }
        if !self
            .models
            .iter()
            .any(|m| m.name == self.sessions.default_model)
        {
            return fail(format!(
                "sessions.default_model: no model named `{}`",
                self.sessions.default_model
            ));
        }
        Ok(())
    }
}

/// Every name and alias a client may send must name one model only.
fn validate_model_names(models: &[ModelSettings]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, model) in models.iter().enumerate() {
        if !seen.insert(model.name.as_str()) {
            return Err(ConfigError(format!(
                "models[{i}].name: `{}` is configured twice",
                model.name
            )));
        }
    }
    for (i, model) in models.iter().enumerate() {
        for alias in &model.aliases {
            if !seen.insert(alias.as_str()) {
                return Err(ConfigError(format!(
                    "models[{i}].aliases: `{alias}` already names a model or another alias"
                )));
            }
        }
    }
    Ok(())
}

/// Tenant and key names: short, printable, safe inside Redis keys and logs.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Sets `a.b` in a TOML table from an environment string, keeping numbers numeric.
fn set_dotted(table: &mut toml::Table, dotted: &str, value: &str) {
    let Some((section, key)) = dotted.split_once('.') else {
        return;
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(inner) = entry {
        let parsed = value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
        inner.insert(key.to_string(), parsed);
    }
}

#[cfg(test)]
mod tests;
