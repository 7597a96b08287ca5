//! Key-layout migrations at startup: several instances at once, a rerun, a newer layout.

use redis::AsyncCommands;
use session_relay::{
    domain::session::new_id,
    store::{
        StoreError,
        migrate::{SCHEMA_VERSION, migrate},
    },
};

use crate::{redis_server::RedisServer, store_suite::redis_store_on};

#[tokio::test]
async fn instances_starting_at_once_migrate_once_and_a_newer_layout_is_refused() {
    let prefix = format!("mig{}", &new_id()[..12]);
    let mut instances = Vec::new();
    for _ in 0..6 {
        instances.push(redis_store_on(&prefix).await);
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
