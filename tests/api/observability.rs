//! `/metrics` and `Server-Timing`: the figures operators read, with no ids in labels.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_never_by_id() {
    let app = spawn_app(Backend::Redis).await;
    let id = app.new_session_id().await;
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": "count me"})),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let timing = sent.headers["server-timing"].to_str().unwrap().to_string();
    for part in ["store;dur=", "upstream;dur=", "total;dur="] {
        assert!(timing.contains(part), "{timing}");
    }

    let text = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "http_requests_total{",
        "route=\"/v1/sessions/{id}/messages\"",
        "http_request_duration_seconds_bucket",
        "request_overhead_seconds",
        "redis_command_duration_seconds",
        "upstream_attempts_total{",
        "tokens_total{",
        "sessions_created_total",
        "upstream_breaker_state{",
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}");
    }
    assert!(!text.contains(&id), "a session id leaked into a label");
}

#[tokio::test]
async fn error_bodies_do_not_echo_request_content_or_keys() {
    let app = spawn_app(Backend::Memory).await;
    let canary = "canary-7f3e9b";
    let id = app.new_session_id().await;
    // Model names are echoed on purpose ("unknown model `x`"): they are not content.
    let bad_bodies = [
        ("/v1/sessions", json!({"ttl_seconds": canary})),
        (
            "/v1/sessions",
            json!({"temperature": canary, "metadata": {"k": canary}}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo", "messages": [{"role": canary, "content": canary}]}),
        ),
    ];
    for (path, body) in bad_bodies {
        let reply = app.call(Method::POST, path, Some(body)).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(
            !reply.body.to_string().contains(canary),
            "{path} echoed content: {}",
            reply.body
        );
    }
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": 42})),
        )
        .await;
    assert_eq!(sent.status, 400);
    let wrong_key = app
        .as_tenant(canary)
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(wrong_key.status, 401);
    assert!(!wrong_key.body.to_string().contains(canary));
}
