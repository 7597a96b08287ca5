//! `session-relay check-config`: loads the configuration exactly as `serve` would (file,
//! environment overrides, secrets, validation) and prints what it resolved to. A bad
//! configuration exits 1 with the message naming the field, as startup would.

use std::{fmt::Write as _, process::ExitCode};

use crate::{
    config::{ProviderKind, Settings, StoreMode, args::ConfigArgs},
    domain::tokens::Tokenizer,
    llm::timing::{Overrides, Timing},
};

pub fn run(args: &ConfigArgs) -> ExitCode {
    match Settings::load(args.config.as_deref()) {
        Ok(settings) => {
            print!("{}", report(&settings));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("session-relay: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The resolved configuration as tables. Secrets never appear: only whether each one is set.
pub fn report(s: &Settings) -> String {
    let mut out = String::from("configuration OK\n\n");
    let rows = vec![
        vec!["server.listen".into(), s.server.listen.clone()],
        vec![
            "server.metrics_listen".into(),
            s.server
                .metrics_listen
                .clone()
                .unwrap_or_else(|| "(the main listener)".into()),
        ],
        vec!["store".into(), store_line(s)],
        vec!["auth".into(), auth_line(s)],
        vec![
            "sessions.default_model".into(),
            s.sessions.default_model.clone(),
        ],
    ];
    table(&mut out, "service", &["setting", "value"], rows);
    let providers = s
        .providers
        .iter()
        .map(|p| {
            let key = match (&p.api_key_env, &p.api_key) {
                (None, _) => "-".to_string(),
                (Some(var), Some(_)) => format!("{var} (set)"),
                (Some(var), None) => format!("{var} (NOT SET)"),
            };
            let kind = match p.kind {
                ProviderKind::Openai => "openai",
                ProviderKind::Anthropic => "anthropic",
                ProviderKind::Echo => "echo",
            };
            vec![
                p.name.clone(),
                kind.into(),
                p.base_url.clone().unwrap_or_else(|| "-".into()),
                key,
            ]
        })
        .collect();
    table(
        &mut out,
        "providers",
        &["name", "kind", "base url", "api key"],
        providers,
    );
    let models = s
        .models
        .iter()
        .map(|m| {
            let upstream = m.upstream_name.clone().unwrap_or_else(|| m.name.clone());
            let tokenizer = m
                .tokenizer
                .as_deref()
                .and_then(Tokenizer::from_name)
                .unwrap_or_else(|| Tokenizer::for_model(&upstream));
            vec![
                m.name.clone(),
                m.provider.clone(),
                upstream,
                m.context_tokens.to_string(),
                format!("{:.3}", m.input_usd_per_mtok),
                format!("{:.3}", m.output_usd_per_mtok),
                tokenizer.name().into(),
            ]
        })
        .collect();
    let model_headers = [
        "name",
        "provider",
        "upstream",
        "context",
        "in $/Mtok",
        "out $/Mtok",
        "tokenizer",
    ];
    table(&mut out, "models", &model_headers, models);
    let aliases = (s.models.iter())
        .flat_map(|m| m.aliases.iter().map(|a| vec![a.clone(), m.name.clone()]))
        .collect();
    table(&mut out, "aliases", &["alias", "model"], aliases);
    let chains = (s.models.iter())
        .filter(|m| !m.fallbacks.is_empty())
        .map(|m| {
            let chain = std::iter::once(&m.name).chain(&m.fallbacks);
            vec![
                m.name.clone(),
                chain.cloned().collect::<Vec<_>>().join(" → "),
            ]
        })
        .collect();
    table(&mut out, "fallback chains", &["model", "chain"], chains);
    let attempt_headers = [
        "model",
        "attempt ms",
        "first byte ms",
        "first token ms",
        "retries",
    ];
    table(&mut out, "attempts", &attempt_headers, attempts(s));
    table(&mut out, "limits", &["limit", "value"], limits(s));
    out
}

/// Each model's attempt settings: its own where it has them, else `[routing]`'s.
fn attempts(s: &Settings) -> Vec<Vec<String>> {
    let routing = Timing::from_routing(&s.routing);
    (s.models.iter())
        .map(|m| {
            let own = routing.with(&Overrides::from_model(m));
            let ms = |d: std::time::Duration| d.as_millis().to_string();
            vec![
                m.name.clone(),
                ms(own.attempt),
                ms(own.first_byte),
                ms(own.first_token),
                own.max_retries.to_string(),
            ]
        })
        .collect()
}

fn store_line(s: &Settings) -> String {
    let urls: Vec<String> = s
        .store
        .redis_urls()
        .into_iter()
        .map(without_password)
        .collect();
    let kind = match s.store.mode {
        StoreMode::Single => "redis",
        StoreMode::Cluster => "redis cluster",
        StoreMode::Sentinel => "redis sentinel",
    };
    match urls.is_empty() {
        false if s.store.mode == StoreMode::Sentinel => format!(
            "{kind} {} (primary `{}`, key prefix `{}`)",
            urls.join(","),
            s.store.sentinel_master,
            s.store.key_prefix
        ),
        false => format!(
            "{kind} {} (key prefix `{}`)",
            urls.join(","),
            s.store.key_prefix
        ),
        true => "memory (development only: nothing survives a restart)".into(),
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

fn auth_line(s: &Settings) -> String {
    let admin = if s.auth.admin_key.is_some() {
        "set"
    } else {
        "not set"
    };
    if s.auth.keys.is_empty() && s.auth.admin_key.is_none() {
        return "no key: loopback clients only, as tenant `default`".into();
    }
    let keys: Vec<String> = (s.auth.keys.iter())
        .map(|k| format!("{} → {}", k.name, k.tenant))
        .collect();
    format!("static keys: [{}]; admin key {admin}", keys.join(", "))
}

fn limits(s: &Settings) -> Vec<Vec<String>> {
    let (server, sessions, import) = (&s.server, &s.sessions, &s.import);
    [
        ("server.max_body_bytes", server.max_body_bytes.to_string()),
        (
            "server.request_timeout_seconds",
            server.request_timeout_seconds.to_string(),
        ),
        (
            "server.client_request_timeout_ms",
            server.client_request_timeout_ms.to_string(),
        ),
        (
            "server.body_idle_timeout_ms",
            server.body_idle_timeout_ms.to_string(),
        ),
        (
            "server.max_connections_per_peer",
            server.max_connections_per_peer.to_string(),
        ),
        (
            "sessions.default_ttl_seconds",
            sessions.default_ttl_seconds.to_string(),
        ),
        (
            "sessions.max_ttl_seconds",
            sessions.max_ttl_seconds.to_string(),
        ),
        (
            "sessions.max_message_bytes",
            sessions.max_message_bytes.to_string(),
        ),
        (
            "sessions.default_max_tokens",
            sessions.default_max_tokens.to_string(),
        ),
        ("import.max_body_bytes", import.max_body_bytes.to_string()),
        (
            "import.max_session_bytes",
            import.max_session_bytes.to_string(),
        ),
        (
            "routing.attempt_timeout_ms",
            s.routing.attempt_timeout_ms.to_string(),
        ),
        (
            "routing.first_byte_timeout_ms",
            s.routing.first_byte_timeout_ms.to_string(),
        ),
        (
            "routing.first_token_timeout_ms",
            s.routing.first_token_timeout_ms.to_string(),
        ),
        ("routing.max_retries", s.routing.max_retries.to_string()),
        (
            "routing.breaker_consecutive_failures",
            s.routing.breaker_consecutive_failures.to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| vec![name.to_string(), value])
    .collect()
}

/// A titled table with columns padded to their widest cell; `(none)` when it has no rows.
fn table(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)\n");
        return;
    }
    let head: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            std::iter::once(&head)
                .chain(&rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out.push('\n');
}
