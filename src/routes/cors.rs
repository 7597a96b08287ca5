//! CORS for browser apps holding client tokens, from `server.cors_allowed_origins`.

use actix_cors::Cors;
use actix_web::http::{Method, header};

/// `None` when no origin is configured: then no CORS header is ever sent, and browsers
/// keep other origins out by themselves.
pub fn cors(origins: &[String]) -> Option<Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(600);
    for origin in origins {
        // Origins were checked when the configuration loaded.
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    Some(cors)
}
