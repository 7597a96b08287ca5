//! A send whose Redis calls arrive late, and a send that outlasts its session's TTL.
//!
//! `DEBUG SLEEP` blocks Redis; what was sent meanwhile runs when it wakes, even on
//! connections the service has given up on and closed: exactly what a service that stopped
//! waiting must not be surprised by. A late admission must not leave a lease nobody holds,
//! and a late commit must not store turns after the client was told 503 (a retry would
//! store them twice).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    helpers::{BACKENDS, Backend, TestApp, spawn_with, test_settings},
    limits::{send, with_upstream},
    redis_server::{RedisServer, free_port},
};

async fn app_on(backend: Backend, redis: Option<&RedisServer>, fake: &FakeUpstream) -> TestApp {
    let settings = test_settings(backend, redis.map(RedisServer::url));
    spawn_with(with_upstream(settings, &fake.base_url)).await
}

async fn session(app: &TestApp, ttl_seconds: u64) -> String {
    let created = app
        .create_session(json!({"model": "fake-gpt", "ttl_seconds": ttl_seconds}))
        .await;
    created["session_id"].as_str().unwrap().to_string()
}

async fn history_len(app: &TestApp, id: &str) -> usize {
    let reply = app
        .call(Method::GET, &format!("/v1/sessions/{id}/messages"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().len()
}

/// Several pooled connections, all used just now, as on a busy instance: a call made in
/// the next second takes one of them without a check, and is sent at once.
async fn warm_pool(app: &TestApp, id: &str) {
    let path = format!("/v1/sessions/{id}");
    let reads = (0..8).map(|_| app.call(Method::GET, &path, None));
    for reply in futures_util::future::join_all(reads).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_send_longer_than_the_remaining_ttl_keeps_its_session() {
    for backend in BACKENDS {
        let fake = FakeUpstream::start().await;
        fake.set(Behaviour::slow_echo(Duration::from_millis(2500)));
        let app = app_on(backend, None, &fake).await;
        let id = session(&app, 1).await;
        let reply = send(&app, &id, json!({"content": "take your time"})).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{backend:?}: the upstream answered after the 1 s TTL: {}",
            reply.body
        );
        assert_eq!(history_len(&app, &id).await, 2, "{backend:?}");
    }
}

#[tokio::test]
async fn a_commit_that_runs_after_the_service_gave_up_stores_nothing() {
    let redis = RedisServer::start_with(free_port(), "--enable-debug-command local");
    let fake = FakeUpstream::start().await;
    fake.set(Behaviour::slow_echo(Duration::from_millis(800)));
    let app = app_on(Backend::Redis, Some(&redis), &fake).await;
    let id = session(&app, 600).await;

    let sending = {
        let (app, id) = (app.as_tenant(&app.key), id.clone());
        tokio::spawn(async move { send(&app, &id, json!({"content": "once"})).await })
    };
    warm_pool(&app, &id).await;
    // The upstream is answering: Redis stops answering before the commit is sent.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let stalled = redis.stall(2.5).await;
    let reply = sending.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.error_code(), "store_unavailable");

    // Redis wakes and runs what it was sent, the late commit included.
    stalled.await.unwrap().unwrap();
    assert_eq!(
        history_len(&app, &id).await,
        0,
        "a send answered 503 must not be stored afterwards"
    );
    let retried = send(&app, &id, json!({"content": "once"})).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(history_len(&app, &id).await, 2, "the retry is stored once");
}

#[tokio::test]
async fn an_admission_that_runs_after_the_service_gave_up_takes_no_lease() {
    let redis = RedisServer::start_with(free_port(), "--enable-debug-command local");
    let fake = FakeUpstream::start().await;
    let app = app_on(Backend::Redis, Some(&redis), &fake).await;
    let id = session(&app, 600).await;

    warm_pool(&app, &id).await;
    let stalled = redis.stall(2.0).await;
    let reply = send(&app, &id, json!({"content": "hello?"})).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(fake.calls(), 0, "nothing went upstream");

    stalled.await.unwrap().unwrap();
    let next = send(&app, &id, json!({"content": "hello?"})).await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "the late admission must not hold the session: {}",
        next.body
    );
    assert_eq!(history_len(&app, &id).await, 2);
}
