//! What an unauthenticated or hostile client can do to the service: every metric label from a
//! closed set, wrong methods answered 405 with `Allow`, stalled uploads cut, non-object JSON
//! refused, no request content quoted back, refusals logged quietly.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_binary};

/// A method token and a path nobody registered, different on every call.
fn random_request(i: usize) -> (Method, String) {
    let token: String = (0..8)
        .map(|_| char::from(b'A' + rand::random::<u8>() % 26))
        .collect();
    let method = Method::from_bytes(format!("{token}{i}").as_bytes()).unwrap();
    let path = match i % 3 {
        0 => format!("/v1/sessions/{token}{i}/x"),
        1 => format!("/{token}/{i}"),
        _ => "/v1/sessions".to_string(),
    };
    (method, path)
}

async fn hammer(app: &TestApp, from: usize, count: usize) {
    for i in from..from + count {
        let (method, path) = random_request(i);
        let reply = app.call(method, &path, None).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
    }
}

/// Random methods and paths must not grow `/metrics` (nor the memory behind it): the service
/// runs as a process of its own, so its metrics are this test's alone.
#[tokio::test]
async fn random_methods_and_paths_leave_metrics_bounded() {
    let service = spawn_binary(&[]).await;
    let app = &service.app;
    // Every label value a refusal can have appears in the first round.
    hammer(app, 0, 60).await;
    let before = app.get_text("/metrics").await.len();
    hammer(app, 60, 600).await;
    let after = app.get_text("/metrics").await.len();
    assert!(
        after <= before + 2048,
        "/metrics grew from {before} to {after} bytes"
    );
    let text = app.get_text("/metrics").await;
    assert!(
        text.contains("method=\"other\""),
        "unknown methods share one label"
    );
}

#[tokio::test]
async fn a_known_path_with_a_wrong_method_is_405_with_allow() {
    let app = spawn_app(Backend::Memory).await;
    let id = app.new_session_id().await;
    let cases = [
        (Method::POST, "/healthz".to_string(), "GET"),
        (Method::PUT, "/v1/sessions".to_string(), "POST"),
        (
            Method::PUT,
            format!("/v1/sessions/{id}/messages"),
            "GET, POST",
        ),
        (
            Method::from_bytes(b"FROB").unwrap(),
            format!("/v1/sessions/{id}"),
            "DELETE, GET, PATCH",
        ),
        (Method::GET, "/v1/chat/completions".to_string(), "POST"),
    ];
    for (method, path, allow) in cases {
        let reply = app.call(method.clone(), &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.error_code(), "method_not_allowed", "{}", reply.body);
        assert!(reply.body["message"].is_string());
        assert!(reply.headers.contains_key("x-request-id"));
    }
    let unknown = app.call(Method::GET, "/v2/nothing", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
    assert!(!unknown.headers.contains_key("allow"));
    let sent = app
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    assert_eq!(
        sent.status,
        StatusCode::CREATED,
        "the right method still works"
    );
}
