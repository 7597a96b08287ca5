//! The OpenAPI document is generated from the route registrations: every route of the
//! contract is in it, every documented operation is really served, and the docs page
//! needs nothing from outside the service.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app};

/// Every endpoint of API.md, as (method, path template).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("patch", "/v1/sessions/{id}"),
    ("delete", "/v1/sessions/{id}"),
    ("post", "/v1/sessions/{id}/touch"),
    ("get", "/v1/sessions/{id}/messages"),
    ("post", "/v1/sessions/{id}/messages"),
    ("get", "/v1/sessions/{id}/context"),
    ("get", "/v1/users/{user_id}/sessions"),
    ("delete", "/v1/users/{user_id}/sessions"),
    ("post", "/v1/sessions/import"),
    ("get", "/v1/sessions/{id}/export"),
    ("get", "/v1/users/{user_id}/export"),
    ("post", "/v1/chat/completions"),
    ("get", "/v1/models"),
    ("get", "/v1/status"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/v1/admin/keys"),
    ("get", "/v1/admin/keys"),
    ("delete", "/v1/admin/keys/{key_id}"),
    ("post", "/v1/admin/keys/{key_id}/rotate"),
    ("get", "/v1/usage"),
    ("post", "/v1/sessions/{id}/client_tokens"),
];

async fn document() -> (crate::helpers::TestApp, Value) {
    let app = spawn_app(Backend::Memory).await;
    let reply = app.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    (app, reply.body)
}

#[tokio::test]
async fn every_contract_route_is_documented() {
    let (_, doc) = document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let missing: Vec<_> = CONTRACT
        .iter()
        .filter(|(method, path)| doc["paths"][*path][*method].is_null())
        .collect();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let (app, doc) = document().await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{}", paths.len());
    for (template, item) in paths {
        let path = template
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{user_id}", "someone")
            .replace("{key_id}", "nokey")
            .replace("{model}", "echo");
        for method in ["get", "post", "patch", "delete"] {
            if item[method].is_null() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app.call(method.clone(), &path, None).await;
            assert_ne!(
                reply.error_code(),
                "not_found",
                "{method} {path} is documented but not served"
            );
            assert!(
                reply.status.as_u16() < 500 || reply.status == 503,
                "{method} {path}: {}",
                reply.status
            );
        }
    }
}

#[tokio::test]
async fn the_docs_page_loads_nothing_from_outside() {
    let (app, _) = document().await;
    let page = app.get_text("/docs").await;
    assert!(page.contains("/openapi.json"));
    assert_nothing_external(&page);
}

/// No reference to another origin in a page, script or stylesheet.
pub fn assert_nothing_external(text: &str) {
    for attribute in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "url(http",
        "//cdn",
    ] {
        assert!(!text.contains(attribute), "external asset: {attribute}");
    }
}
