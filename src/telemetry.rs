//! Structured logs: JSON for production, readable lines locally.
//!
//! What is never logged: message content, API keys, `Authorization` headers, user ids.
//! Request spans carry the method, route pattern, status, request id, tenant and model;
//! inside them, a `redis` span per store call and an `upstream` span per attempt.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
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

/// The request span: tracing-actix-web's own, plus `tenant` and `model`, filled in by
/// [`record_tenant`] and [`record_model`] once they are known.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(
            request,
            tenant = tracing::field::Empty,
            model = tracing::field::Empty
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
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
