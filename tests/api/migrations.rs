//! Key-layout migrations at startup: several instances at once, a rerun, a newer layout.

use redis::AsyncCommands;
use session_relay::{
    domain::{scope::tenant_scope, session::new_id},
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
    let list = format!("{}:{{{}:{id}}}:turns", app.prefix, tenant_scope("acme"));
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

/// Sessions written by layout 3 (`<prefix>:{<id>}:<part>`) are moved to their tenant's
/// keys by migration 4 and read the same, TTLs kept; afterwards another tenant can hold
/// the same id.
#[tokio::test]
async fn sessions_of_layout_3_move_to_their_tenants_keys() {
    use reqwest::Method;
    use serde_json::json;

    use crate::helpers::{Backend, GLOBEX_KEY, spawn_app};

    let app = spawn_app(Backend::Redis).await;
    let id = app.new_session_id().await;
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": "kept across the move"})),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let history = format!("/v1/sessions/{id}/messages");
    let before = app.call(Method::GET, &history, None).await.body;

    // Put the session back where layout 3 kept it, and the marker at 3.
    let mut conn = app.redis().await;
    let scope = tenant_scope("acme");
    for part in ["meta", "turns", "idem", "ctok"] {
        let new = format!("{}:{{{scope}:{id}}}:{part}", app.prefix);
        let old = format!("{}:{{{id}}}:{part}", app.prefix);
        let exists: bool = conn.exists(&new).await.unwrap();
        if exists {
            let () = conn.rename(&new, &old).await.unwrap();
        }
    }
    let version_key = format!("{}:schema_version", app.prefix);
    let () = conn.set(&version_key, 3).await.unwrap();
    let old_meta = format!("{}:{{{id}}}:meta", app.prefix);
    let ttl_before: i64 = conn.pttl(&old_meta).await.unwrap();
    assert!(ttl_before > 0);
    let unread = app.call(Method::GET, &history, None).await;
    assert_eq!(unread.status, 404, "layout 4 does not read layout 3's keys");

    let store = unprepared_redis_store(&app.prefix).await;
    assert_eq!(migrate(&store).await.unwrap(), SCHEMA_VERSION);
    let after = app.call(Method::GET, &history, None).await.body;
    assert_eq!(after, before, "the API reads the same before and after");
    let left: bool = conn.exists(&old_meta).await.unwrap();
    assert!(!left, "the old keys are gone");
    let new_meta = format!("{}:{{{scope}:{id}}}:meta", app.prefix);
    let ttl_after: i64 = conn.pttl(&new_meta).await.unwrap();
    assert!(ttl_after > 0 && ttl_after <= ttl_before, "the TTL is kept");
    // A second run finds nothing to move.
    assert_eq!(migrate(&store).await.unwrap(), SCHEMA_VERSION);

    let globex = app.as_tenant(GLOBEX_KEY);
    let theirs = globex
        .call(
            Method::POST,
            "/v1/sessions/import",
            Some(json!({"sessions": [{"session_id": id, "messages": []}]})),
        )
        .await;
    assert_eq!(theirs.body["imported"], 1, "{}", theirs.body);
    let mine = app.call(Method::GET, &history, None).await.body;
    assert_eq!(
        mine, before,
        "the other tenant's session is another session"
    );
}
