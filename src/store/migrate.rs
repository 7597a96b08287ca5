//! Applies the key-layout migrations in `migrations/` at startup.

use super::{StoreError, StoreResult, redis::RedisStore};

/// Every migration this build knows, in order: (version, Lua source).
const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../migrations/0001_initial.lua"))];

/// The layout version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Runs every pending migration; each is atomic and idempotent, so instances starting at
/// once are safe. Refuses a store that a newer build already migrated past us.
pub async fn migrate(store: &RedisStore) -> StoreResult<u32> {
    let version_key = format!("{}:schema_version", store.prefix());
    let mut version = store.schema_version(&version_key).await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "Redis holds key layout {version}, this build knows only up to {SCHEMA_VERSION}"
        )));
    }
    for (target, source) in MIGRATIONS {
        if *target > version {
            version = store.run_migration(source, &version_key, *target).await?;
            tracing::info!(version, "applied key-layout migration");
        }
    }
    Ok(version)
}
