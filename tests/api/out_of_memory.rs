//! Redis out of memory (`maxmemory` reached, `noeviction`): the usage and cost of answers
//! given meanwhile are kept and written once Redis takes writes again.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{TestApp, spawn_binary},
    redis_server::{RedisServer, free_port},
};

async fn config_set(redis: &RedisServer, name: &str, value: &str) {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn requests_recorded(app: &TestApp) -> u64 {
    let reply = app.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["total"]["requests"].as_u64().unwrap()
}

#[tokio::test]
async fn usage_refused_while_redis_is_out_of_memory_is_written_once_it_has_room() {
    let redis = RedisServer::start_on(free_port());
    // A process of its own: the metrics below are this test's alone.
    let service = spawn_binary(&[("REDIS_URL", redis.url())]).await;
    let app = &service.app;
    config_set(&redis, "maxmemory-policy", "noeviction").await;
    config_set(&redis, "maxmemory", "1").await;

    let answered = app
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    assert_eq!(
        requests_recorded(app).await,
        0,
        "Redis refused the usage write"
    );
    assert_eq!(app.metric("usage_writes_deferred_total").await, 1.0);
    assert_eq!(app.metric("usage_writes_pending").await, 1.0);

    config_set(&redis, "maxmemory", "0").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests_recorded(app).await == 0 {
        assert!(Instant::now() < deadline, "the kept usage was not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(requests_recorded(app).await, 1, "written once");
    assert_eq!(app.metric("usage_writes_pending").await, 0.0);
}
