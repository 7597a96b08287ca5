//! Redis going away, coming back, and stalling: the service answers 503 `store_unavailable`
//! quickly (never a hang) and recovers by itself, without a restart.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, Reply, TestApp, spawn_with, test_settings},
    redis_server::{RedisServer, free_port},
};

/// "Never a hang": every answer during an outage comes within this bound.
const BOUND: Duration = Duration::from_millis(1500);

/// One request, timed; a request that does not answer within 10 s fails the test.
async fn timed(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        app.call(method.clone(), path, body),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer within 10 s"));
    (reply, started.elapsed())
}

fn assert_unavailable(what: &str, reply: &Reply, elapsed: Duration) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: answered after {elapsed:?}: {}",
        reply.body
    );
    assert_eq!(reply.error_code(), "store_unavailable", "{what}");
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
    assert!(
        reply.body["retry_after"].as_u64().is_some_and(|s| s >= 1),
        "{what}: retry_after in {}",
        reply.body
    );
    assert!(
        reply.headers.get("retry-after").is_some(),
        "{what}: Retry-After header"
    );
    assert!(
        reply.headers.get("x-request-id").is_some(),
        "{what}: X-Request-Id"
    );
    assert!(
        elapsed < BOUND,
        "{what}: answered after {elapsed:?}, the bound is {BOUND:?}"
    );
}

#[tokio::test]
async fn redis_down_answers_503_fast_and_recovers_on_the_same_port() {
    let port = free_port();
    let server = RedisServer::start_on(port);
    let app = spawn_with(test_settings(Backend::Redis, Some(server.url()))).await;
    let id = app.new_session_id().await;
    let ready = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);

    drop(server); // stops redis-server and waits until the port refuses connections
    let requests = [
        (Method::GET, format!("/v1/sessions/{id}"), None),
        (Method::POST, "/v1/sessions".to_string(), Some(json!({}))),
        (Method::GET, "/readyz".to_string(), None),
        (Method::GET, "/v1/status".to_string(), None),
        (
            Method::PATCH,
            format!("/v1/sessions/{id}"),
            Some(json!({"temperature": 1})),
        ),
        (Method::POST, format!("/v1/sessions/{id}/touch"), None),
        (Method::GET, format!("/v1/sessions/{id}/messages"), None),
        (Method::DELETE, format!("/v1/sessions/{id}"), None),
        (Method::GET, "/v1/users/someone/sessions".to_string(), None),
    ];
    // Twice: the second round must not be slower for what the first one left in the pool.
    for round in 0..2 {
        for (method, path, body) in &requests {
            let (reply, elapsed) = timed(&app, method.clone(), path, body.clone()).await;
            assert_unavailable(&format!("round {round}: {method} {path}"), &reply, elapsed);
        }
    }
    let live = app.call(Method::GET, "/healthz", None).await;
    assert_eq!(
        live.status,
        StatusCode::OK,
        "liveness does not depend on Redis"
    );

    // Redis comes back on the same address: the running app recovers by itself.
    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        let (reply, elapsed) = timed(&app, Method::POST, "/v1/sessions", Some(json!({}))).await;
        assert!(elapsed < BOUND, "create while recovering took {elapsed:?}");
        match reply.status {
            StatusCode::CREATED => break reply.body,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("no recovery within 10 s: {other} {}", reply.body),
        }
    };
    let new_id = created["session_id"].as_str().unwrap();
    let read = app
        .call(Method::GET, &format!("/v1/sessions/{new_id}"), None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["session_id"], new_id);
    let ready = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    // The restarted server has no persistence: the old session is gone, and says so.
    let old = app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
    assert_eq!(old.error_code(), "session_not_found");
}

#[tokio::test]
async fn slow_redis_answers_503_in_time_and_timed_out_connections_are_not_reused() {
    let port = free_port();
    let server = RedisServer::start_with(port, "--enable-debug-command local");
    let app = spawn_with(test_settings(Backend::Redis, Some(server.url()))).await;
    let a = app.create_session(json!({"metadata": {"name": "a"}})).await["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.create_session(json!({"metadata": {"name": "b"}})).await["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    // A warm pool, as in production: several idle connections.
    let paths: Vec<String> = (0..16)
        .map(|i| format!("/v1/sessions/{}", if i % 2 == 0 { &a } else { &b }))
        .collect();
    let warm = join_all(paths.iter().map(|p| app.call(Method::GET, p, None))).await;
    assert!(warm.iter().all(|r| r.status == StatusCode::OK));

    // Redis stalls for 2 s (DEBUG SLEEP blocks the whole server), from its own connection.
    let sleeper = server.stall(2.0).await;

    // Requests in flight during the stall (on several connections at once).
    let stalled = join_all([
        timed(&app, Method::GET, &format!("/v1/sessions/{a}"), None),
        timed(&app, Method::GET, &format!("/v1/sessions/{b}"), None),
        timed(&app, Method::POST, "/v1/sessions", Some(json!({}))),
        timed(&app, Method::GET, "/readyz", None),
    ])
    .await;
    for (i, (reply, elapsed)) in stalled.iter().enumerate() {
        assert_unavailable(&format!("request {i} during DEBUG SLEEP"), reply, *elapsed);
    }

    sleeper
        .await
        .expect("sleeper task")
        .expect("DEBUG SLEEP is allowed");

    // Afterwards every reply belongs to its own request: no late answer of a timed-out
    // call reaches the next borrower of a connection.
    for round in 0..4 {
        for (id, name) in [(&b, "b"), (&a, "a")] {
            let reply = app
                .call(Method::GET, &format!("/v1/sessions/{id}"), None)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "round {round}: {}",
                reply.body
            );
            assert_eq!(reply.body["session_id"], id.as_str(), "round {round}");
            assert_eq!(reply.body["metadata"]["name"], name, "round {round}");
        }
    }
    let ready = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let created = app.create_session(json!({"metadata": {"name": "c"}})).await;
    let c = created["session_id"].as_str().unwrap();
    let read = app
        .call(Method::GET, &format!("/v1/sessions/{c}"), None)
        .await;
    assert_eq!(read.body["metadata"]["name"], "c");
}
