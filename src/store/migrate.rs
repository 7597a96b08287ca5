//! Applies the key-layout migrations in `migrations/` at startup.

use super::{StoreError, StoreResult, redis::RedisStore};
use crate::domain::message::Turn;

/// How a migration changes the layout.
enum Step {
    /// One atomic, idempotent script over the schema marker (see `migrations/README.md`).
    Script(&'static str),
    /// Re-encodes every stored turn, one list chunk per run of this script, then records
    /// the version (see `migrations/0002_compact_turns.lua`).
    ReencodeTurns(&'static str),
}

/// Every migration this build knows, in order.
const MIGRATIONS: &[(u32, Step)] = &[
    (
        1,
        Step::Script(include_str!("../../migrations/0001_initial.lua")),
    ),
    (
        2,
        Step::ReencodeTurns(include_str!("../../migrations/0002_compact_turns.lua")),
    ),
    (
        3,
        Step::Script(include_str!("../../migrations/0003_index_incarnations.lua")),
    ),
];

/// Sets the version unless it is already at or past it: the first migration's script,
/// which does only that.
const RECORD_VERSION: &str = include_str!("../../migrations/0001_initial.lua");

/// The layout version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 3;

/// Turns read and rewritten per script run: a few hundred kilobytes at most.
const CHUNK: usize = 256;

/// Runs every pending migration; each is idempotent, so instances starting at once are
/// safe. Refuses a store that a newer build already migrated past us.
pub async fn migrate(store: &RedisStore) -> StoreResult<u32> {
    let version_key = format!("{}:schema_version", store.prefix());
    let mut version = store.schema_version(&version_key).await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "Redis holds key layout {version}, this build knows only up to {SCHEMA_VERSION}"
        )));
    }
    for (target, step) in MIGRATIONS {
        if *target <= version {
            continue;
        }
        let script: &str = match step {
            Step::Script(source) => source,
            Step::ReencodeTurns(chunk_script) => {
                let rewritten = reencode_turns(store, chunk_script).await?;
                tracing::info!(rewritten, "re-encoded stored turns");
                RECORD_VERSION
            }
        };
        version = store.run_migration(script, &version_key, *target).await?;
        tracing::info!(version, "applied key-layout migration");
    }
    Ok(version)
}

/// Every turn list, chunk by chunk: a turn that reads back differently when written
/// again is replaced (if it is still there) by its compact form.
async fn reencode_turns(store: &RedisStore, chunk_script: &str) -> StoreResult<u64> {
    let pattern = format!("{}:{{*}}:turns", store.prefix());
    let mut rewritten = 0;
    for key in store.scan_keys(&pattern).await? {
        let mut start = 0;
        loop {
            let raw = store.list_range(&key, start, CHUNK).await?;
            let mut args = vec![start.to_string()];
            for old in &raw {
                let turn: Turn = serde_json::from_str(old)
                    .map_err(|e| StoreError::Corrupt(format!("turn in {key}: {e}")))?;
                let new =
                    serde_json::to_string(&turn).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if new != *old {
                    args.extend([old.clone(), new]);
                }
            }
            if args.len() > 1 {
                rewritten += store.run_chunk_script(chunk_script, &key, &args).await?;
            }
            if raw.len() < CHUNK {
                break;
            }
            start += CHUNK;
        }
    }
    Ok(rewritten)
}
