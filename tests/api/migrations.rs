//! Key-layout migrations at startup: several instances at once, a rerun, a newer layout.

use redis::AsyncCommands;
use session_relay::{
    domain::session::new_id,
    store::{
        StoreError,
        migrate::{SCHEMA_VERSION, migrate},
    },
};

use crate::{redis_server::RedisServer, store_suite::unprepared_redis_store};

#[tokio::test]
async fn instances_starting_at_once_migrate_once_and_a_newer_layout_is_refused() {
    let prefix = format!("mig{}", &new_id()[..12]);
    let mut instances = Vec::new();
    for _ in 0..6 {
        instances.push(unprepared_redis_store(&prefix).await);
    }
    let results = futures_util::future::join_all(instances.iter().map(migrate)).await;
    for result in results {
        assert_eq!(result.unwrap(), SCHEMA_VERSION);
    }
    let mut conn = RedisServer::shared()
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let version_key = format!("{prefix}:schema_version");
    let stored: u32 = conn.get(&version_key).await.unwrap();
    assert_eq!(stored, SCHEMA_VERSION);
    // A restart finds nothing to do.
    assert_eq!(migrate(&instances[0]).await.unwrap(), SCHEMA_VERSION);

    // A newer build migrated this Redis: an older one must not read or write it.
    let () = conn.set(&version_key, SCHEMA_VERSION + 1).await.unwrap();
    match migrate(&instances[0]).await {
        Err(StoreError::Corrupt(reason)) => assert!(
            reason.contains(&format!("layout {}", SCHEMA_VERSION + 1)),
            "{reason}"
        ),
        other => panic!("a newer layout was accepted: {other:?}"),
    }
    let after: u32 = conn.get(&version_key).await.unwrap();
    assert_eq!(after, SCHEMA_VERSION + 1, "the refusal changed nothing");
}

/// Data written by the first key layout: every turn as `{"id","role","content",
/// "created_at","tokens"}`. Migration 2 rewrites it compactly, and the API reads the same
/// before and after.
#[tokio::test]
async fn turns_of_the_first_layout_are_rewritten_compactly_and_read_the_same() {
    use reqwest::Method;
    use serde_json::{Value, json};

    use crate::helpers::{Backend, spawn_app};

    let app = spawn_app(Backend::Redis).await;
    let id = app.new_session_id().await;
    for text in ["first question", "second question"] {
        let sent = app
            .call(
                Method::POST,
                &format!("/v1/sessions/{id}/messages"),
                Some(json!({"content": text})),
            )
            .await;
        assert_eq!(sent.status, 200, "{}", sent.body);
    }
    let mut conn = app.redis().await;
    let list = format!("{}:{{{id}}}:turns", app.prefix);
    let version_key = format!("{}:schema_version", app.prefix);
    // Put the turns back as the first layout wrote them, and the marker at version 1.
    let compact: Vec<String> = conn.lrange(&list, 0, -1).await.unwrap();
    for (index, turn) in compact.iter().enumerate() {
        let t: Value = serde_json::from_str(turn).unwrap();
        let nanos = t["t"].as_i64().unwrap();
        let time = chrono::DateTime::from_timestamp_nanos(nanos)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let old = json!({"id": t["i"], "role": t["r"], "content": t["c"], "created_at": time, "tokens": t["n"]});
        let () = conn
            .lset(&list, index as isize, old.to_string())
            .await
            .unwrap();
    }
    let () = conn.set(&version_key, 1).await.unwrap();
    let history = |app: &crate::helpers::TestApp| {
        let path = format!("/v1/sessions/{id}/messages");
        let app = app.as_tenant(&app.key);
        async move { app.call(Method::GET, &path, None).await.body }
    };
    let before = history(&app).await;
    assert_eq!(before["data"].as_array().unwrap().len(), 4, "{before}");

    let store = unprepared_redis_store(&app.prefix).await;
    assert_eq!(migrate(&store).await.unwrap(), SCHEMA_VERSION);
    let stored: Vec<String> = conn.lrange(&list, 0, -1).await.unwrap();
    assert_eq!(
        stored, compact,
        "rewritten exactly as the current layout writes them"
    );
    let after = history(&app).await;
    assert_eq!(after, before, "the API reads the same before and after");
    let version: u32 = conn.get(&version_key).await.unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // A second run finds nothing left to rewrite.
    assert_eq!(migrate(&store).await.unwrap(), SCHEMA_VERSION);
}
