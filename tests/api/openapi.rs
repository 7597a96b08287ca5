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

/// Bodies, parameters, answers, errors and security come from the handlers' own types:
/// every operation that reads a body documents it, every answer has a schema, and every
/// authenticated operation names the bearer scheme and the contract's errors.
#[tokio::test]
async fn every_operation_documents_its_body_parameters_answers_and_errors() {
    let (_, doc) = document().await;
    let bodies = [
        ("post", "/v1/sessions", "CreateSession"),
        ("patch", "/v1/sessions/{id}", "PatchSession"),
        ("post", "/v1/sessions/{id}/messages", "SendBody"),
        ("post", "/v1/chat/completions", "ChatCompletionRequest"),
        ("post", "/v1/admin/keys", "NewKey"),
        ("post", "/v1/sessions/import", "JsonBody"),
    ];
    for (method, path, schema) in bodies {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert_eq!(
            body["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{method} {path}"
        );
    }
    let send = &doc["components"]["schemas"]["SendBody"]["properties"];
    for field in ["content", "messages", "model", "stream", "tools"] {
        assert!(send[field].is_object(), "SendBody.{field}");
    }
    let queries = [
        ("/v1/sessions/{id}/messages", "after"),
        ("/v1/users/{user_id}/sessions", "limit"),
        ("/v1/usage", "group_by"),
        ("/v1/sessions/import", "mode"),
        ("/v1/admin/keys", "tenant"),
    ];
    for (path, name) in queries {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .or(doc["paths"][path]["post"]["parameters"].as_array())
            .unwrap_or_else(|| panic!("{path}: no parameters"));
        assert!(
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "{path}: {name}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let public = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/playground",
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let label = format!("{method} {path}");
            // The Responses and Conversations routes describe their answers in the README
            // for now; every route of API.md has its schema.
            let in_contract = CONTRACT.iter().any(|(m, p)| m == method && p == path);
            let responses = operation["responses"].as_object().unwrap();
            let (success, answer) = responses.iter().find(|(s, _)| s.starts_with('2')).unwrap();
            if in_contract && success != "204" {
                assert!(
                    answer["content"].is_object(),
                    "{label}: its answer has no schema"
                );
            }
            if public.iter().any(|p| path.starts_with(p)) {
                assert!(operation["security"].is_null(), "{label} needs no key");
                continue;
            }
            assert_eq!(
                operation["security"][0]["bearer"],
                serde_json::json!([]),
                "{label}"
            );
            let openai = [
                "/v1/chat/",
                "/v1/models",
                "/v1/responses",
                "/v1/conversations",
            ];
            let shape = if openai.iter().any(|prefix| path.starts_with(prefix)) {
                "OpenAiErrorBody"
            } else {
                "ErrorBody"
            };
            for status in ["400", "401", "403", "404", "429", "503"] {
                let error = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    error,
                    &format!("#/components/schemas/{shape}"),
                    "{label}: {status}"
                );
            }
        }
    }
}
