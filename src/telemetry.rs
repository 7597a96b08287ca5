//! Structured logs: JSON for production, readable lines locally.
//!
//! What is never logged: message content, API keys, `Authorization` headers, user ids,
//! query strings, User-Agents. Request spans carry the method, route pattern, the path with
//! its user id redacted, status, request id, tenant and model; inside them, a `redis` span
//! per store call and an `upstream` span per attempt.
//!
//! Refusals (4xx) are the client's business and can come by the thousand (a scanner, a
//! client with a revoked key): each is a `debug` event; at `info` they are only counted,
//! in one line per [`REFUSAL_SUMMARY_EVERY`] at most. Failures (5xx) are logged as errors
//! where they are answered (`error.rs`).

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use actix_web::HttpMessage;
use tracing::{Span, field::Empty};
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; a second call (tests) keeps the first one.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    drop(result);
}

/// The request span, with `tenant` and `model` filled in by [`record_tenant`] and
/// [`record_model`] once they are known. Its fields are tracing-actix-web's, less the
/// User-Agent, the client address and the query string, with user ids redacted.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern();
        let target = route
            .as_deref()
            .map(|route| redacted(route, request.path()));
        let id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string());
        tracing::info_span!(
            "HTTP request",
            http.method = %crate::metrics::method_label(request.method()),
            http.route = route.as_deref().unwrap_or("unmatched"),
            http.target = target.as_deref().unwrap_or(""),
            request_id = id.as_deref().unwrap_or(""),
            tenant = Empty,
            model = Empty,
            http.status_code = Empty,
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
        let status = match outcome {
            Ok(response) => response.status(),
            Err(err) => err.as_response_error().status_code(),
        };
        if status.is_client_error() {
            tracing::debug!(status = status.as_u16(), "request refused");
            REFUSALS.count(status.as_u16());
        }
    }
}

/// The path, with every segment the route calls `{user_id}` replaced: user ids are the
/// caller's data. A route whose pattern does not line up segment by segment (a `{name:.*}`
/// tail) is logged as its pattern.
fn redacted(route: &str, path: &str) -> String {
    if route.split('/').count() != path.split('/').count() {
        return route.to_string();
    }
    let segments = route.split('/').zip(path.split('/'));
    let kept: Vec<&str> = segments
        .map(|(pattern, segment)| {
            if pattern == "{user_id}" {
                pattern
            } else {
                segment
            }
        })
        .collect();
    kept.join("/")
}

/// How often, at most, the count of refused requests is logged at `info`.
pub const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(60);

static REFUSALS: Refusals = Refusals(Mutex::new(None));

/// Refused requests by status since the last summary line.
struct Refusals(Mutex<Option<(Instant, BTreeMap<u16, u64>)>>);

impl Refusals {
    fn count(&self, status: u16) {
        let Ok(mut window) = self.0.lock() else {
            return;
        };
        let (since, counts) = window.get_or_insert_with(|| (Instant::now(), BTreeMap::new()));
        *counts.entry(status).or_default() += 1;
        if since.elapsed() < REFUSAL_SUMMARY_EVERY {
            return;
        }
        let by_status: Vec<String> = counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let total: u64 = counts.values().sum();
        let seconds = since.elapsed().as_secs();
        tracing::info!(parent: None, total, "{total} requests refused in the last {seconds} s ({})", by_status.join(", "));
        *window = Some((Instant::now(), BTreeMap::new()));
    }
}

/// Called where the request span is the current one (authentication, before any
/// child span is entered).
pub fn record_tenant(tenant: &str) {
    Span::current().record("tenant", tenant);
}

/// The first model of the chain; each attempt's own model is on its `upstream` span.
pub fn record_model(model: &str) {
    Span::current().record("model", model);
}
