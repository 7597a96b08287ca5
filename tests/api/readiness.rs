//! Readiness against the Redis it was given: not there yet at startup, or a replica.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_relay::{domain::session::new_id, store::migrate::SCHEMA_VERSION};

use crate::{
    helpers::{Backend, Reply, TestApp, spawn_with, test_settings},
    redis_server::{RedisServer, free_port},
};

fn assert_503(what: &str, reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        reply.body
    );
    assert_eq!(reply.error_code(), "store_unavailable", "{what}");
    assert_eq!(reply.body["retry_after"], 1, "{what}");
    assert!(reply.headers.get("retry-after").is_some(), "{what}");
}

#[tokio::test]
async fn redis_down_at_startup_the_service_listens_at_once_and_serves_once_it_answers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let app = tokio::time::timeout(
        Duration::from_secs(3),
        spawn_with(test_settings(Backend::Redis, Some(url))),
    )
    .await
    .expect("the service listens without waiting for Redis");
    assert!(started.elapsed() < Duration::from_secs(3));

    let live = app.call(Method::GET, "/healthz", None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_503("/readyz", &app.call(Method::GET, "/readyz", None).await);
    let routes = [
        (Method::POST, "/v1/sessions".to_string()),
        (Method::GET, "/v1/sessions/0123456789abcdef".to_string()),
        (Method::GET, "/v1/users/someone/sessions".to_string()),
        (Method::GET, "/v1/status".to_string()),
    ];
    for (method, path) in &routes {
        let reply = app.call(method.clone(), path, Some(json!({}))).await;
        assert_503(&format!("{method} {path}"), &reply);
    }

    // Redis comes up late: the service prepares it (migrations included) and serves.
    let redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.call(Method::GET, "/readyz", None).await.status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "not ready 10 s after Redis came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = app.create_session(json!({"user_id": "late"})).await;
    assert!(created["session_id"].is_string());
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let version: u32 = redis::cmd("GET")
        .arg(format!("{}:schema_version", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        version, SCHEMA_VERSION,
        "the migrations ran once Redis answered"
    );
}

/// The app on `redis`, under `prefix`.
async fn app_on(redis: &RedisServer, prefix: &str) -> TestApp {
    let mut settings = test_settings(Backend::Redis, Some(redis.url()));
    settings.store.key_prefix = prefix.to_string();
    spawn_with(settings).await
}

/// Waits until `replica` holds `key` (replication is asynchronous).
async fn replicated(replica: &RedisServer, key: &str) {
    let mut conn = replica
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            return;
        }
        assert!(Instant::now() < deadline, "{key} did not reach the replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn says_read_only(reply: &Reply) -> bool {
    reply.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("read-only"))
}

#[tokio::test]
async fn a_replica_is_not_ready_and_its_refusals_say_it_is_read_only() {
    let primary = RedisServer::start_on(free_port());
    let replica_port = free_port();
    let replica = RedisServer::start_with(
        replica_port,
        &format!("--replicaof 127.0.0.1 {}", primary.port),
    );
    let prefix = format!("rep{}", &new_id()[..10]);
    let on_primary = app_on(&primary, &prefix).await;
    let id = on_primary.new_session_id().await;
    replicated(
        &replica,
        &crate::helpers::acme_session_key(&prefix, &id, "meta"),
    )
    .await;

    // Migrated through the primary: the replica's copy is prepared, and serves reads.
    let app = app_on(&replica, &prefix).await;
    let ready = app.call(Method::GET, "/readyz", None).await;
    assert_503("/readyz on a replica", &ready);
    assert!(says_read_only(&ready), "{}", ready.body);
    let read = app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    for (method, path) in [
        (Method::POST, "/v1/sessions".to_string()),
        (Method::POST, format!("/v1/sessions/{id}/touch")),
        (Method::DELETE, format!("/v1/sessions/{id}")),
    ] {
        let reply = app.call(method.clone(), &path, Some(json!({}))).await;
        assert_503(&format!("{method} {path} on a replica"), &reply);
        assert!(says_read_only(&reply), "{method} {path}: {}", reply.body);
    }

    // A key prefix never migrated: the replica cannot take the migration's write.
    let fresh = app_on(&replica, &format!("fresh{}", &new_id()[..10])).await;
    let ready = fresh.call(Method::GET, "/readyz", None).await;
    assert_503("/readyz on an unmigrated replica", &ready);
    assert!(says_read_only(&ready), "{}", ready.body);
    let create = fresh
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    assert_503("create on an unmigrated replica", &create);
    assert!(says_read_only(&create), "{}", create.body);
}
