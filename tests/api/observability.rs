//! `/metrics` and `Server-Timing`: the figures operators read, with no ids in labels.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use session_relay::domain::session::new_id;

use crate::{
    helpers::{Backend, TestApp, spawn_app, spawn_binary},
    redis_cluster::RedisCluster,
    redis_server::RedisServer,
};

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

    let text = app.get_text("/metrics").await;
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

/// `sessions_expired_total`, for both stores: Redis reports its expiries through keyspace
/// notifications; the memory store counts the expired sessions it finds. Each store runs
/// in a service process of its own, so that the count is this test's alone (here, other
/// tests' sessions expire too).
/// Twelve sessions: on a cluster they are all but certainly spread over its three
/// primaries, and each primary publishes only its own keys' expiries.
#[tokio::test]
async fn expired_sessions_are_counted() {
    for (store, env) in stores("exp") {
        let service = spawn_binary(&env).await;
        let app = &service.app;
        assert_eq!(expired_total(app).await, 0, "{store}");
        let mut ids = Vec::new();
        for _ in 0..12 {
            let created = app.create_session(json!({"ttl_seconds": 1})).await;
            ids.push(created["session_id"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The memory store notices on sight; Redis expires the keys by itself.
        for id in &ids {
            let read = app
                .call(Method::GET, &format!("/v1/sessions/{id}"), None)
                .await;
            assert_eq!(read.status, StatusCode::NOT_FOUND, "{store}");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut counted = expired_total(app).await;
        while counted < 12 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            counted = expired_total(app).await;
        }
        assert_eq!(counted, 12, "{store}");
    }
}

/// The environment of a service process on each store: one Redis, a Redis Cluster and
/// memory; the Redis ones under a key prefix of their own.
fn stores(prefix: &str) -> [(&'static str, Vec<(&'static str, String)>); 3] {
    let prefix = || {
        (
            "SESSION_RELAY_KEY_PREFIX",
            format!("{prefix}{}", &new_id()[..10]),
        )
    };
    let redis = vec![("REDIS_URL", RedisServer::shared().url()), prefix()];
    let cluster = vec![
        ("REDIS_URL", RedisCluster::shared().seeds()),
        ("SESSION_RELAY_REDIS_MODE", "cluster".into()),
        prefix(),
    ];
    [
        ("redis", redis),
        ("redis cluster", cluster),
        ("memory", vec![]),
    ]
}

async fn expired_total(app: &TestApp) -> u64 {
    app.metric("sessions_expired_total").await as u64
}

/// `sessions_live` (counted by the store when scraped) and `messages_total` (turns stored
/// by sends), for both stores, each in a process of its own so the figures are its own.
#[tokio::test]
async fn live_sessions_and_stored_messages_are_measured() {
    for (store, env) in stores("live") {
        let service = spawn_binary(&env).await;
        let app = &service.app;
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(app.new_session_id().await);
        }
        for id in &ids[..2] {
            let sent = app
                .call(
                    Method::POST,
                    &format!("/v1/sessions/{id}/messages"),
                    Some(json!({"content": "hi"})),
                )
                .await;
            assert_eq!(sent.status, StatusCode::OK, "{store}: {}", sent.body);
        }
        // The first scrape starts the count; a later one shows it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = app.get_text("/metrics").await;
            if text.contains("sessions_live ") || std::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(text.contains("sessions_live 12\n"), "{store}:\n{text}");
        for role in ["user", "assistant"] {
            assert!(
                text.contains(&format!("messages_total{{role=\"{role}\"}} 2\n")),
                "{store}: {role}\n{text}"
            );
        }
    }
}
