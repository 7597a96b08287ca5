//! Applies the key-layout migrations in `migrations/` at startup.

use super::{
    StoreError, StoreResult,
    redis::{RedisStore, SESSION_PARTS},
};
use crate::domain::{message::Turn, scope::SessionKey, session::SessionConfig};

/// How a migration changes the layout.
enum Step {
    /// One atomic, idempotent script over the schema marker (see `migrations/README.md`).
    Script(&'static str),
    /// Re-encodes every stored turn, one list chunk per run of this script, then records
    /// the version (see `migrations/0002_compact_turns.lua`).
    ReencodeTurns(&'static str),
    /// Moves every session of layout 3 to its tenant's hash tag, then runs the script,
    /// which records the version (see `migrations/0004_tenant_ids.lua`).
    RetagSessions(&'static str),
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
    (
        4,
        Step::RetagSessions(include_str!("../../migrations/0004_tenant_ids.lua")),
    ),
];

/// Sets the version unless it is already at or past it: the first migration's script,
/// which does only that.
const RECORD_VERSION: &str = include_str!("../../migrations/0001_initial.lua");

/// The layout version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 4;

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
            Step::RetagSessions(record) => {
                let moved = retag_sessions(store).await?;
                tracing::info!(moved, "moved sessions to their tenant's keys");
                record
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

/// Every session of layout 3 (`<prefix>:{<id>}:…`, no `:` in the tag), moved key by key
/// to `<prefix>:{<scope>:<id>}:…` with its remaining TTL; the old `meta` goes last, so
/// that a run cut short is finished by the next.
async fn retag_sessions(store: &RedisStore) -> StoreResult<u64> {
    let prefix = format!("{}:{{", store.prefix());
    let mut moved = 0;
    for meta in store.scan_keys(&format!("{prefix}*}}:meta")).await? {
        let Some(id) = meta
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("}:meta"))
            .filter(|id| !id.contains(':'))
        else {
            continue;
        };
        let cfg: Option<String> = store
            .prepare_query(redis::cmd("HGET").arg(&meta).arg("cfg"))
            .await?;
        let Some(cfg) = cfg else {
            continue;
        };
        let config: SessionConfig = serde_json::from_str(&cfg)
            .map_err(|e| StoreError::Corrupt(format!("session config in {meta}: {e}")))?;
        let at = SessionKey::new(&config.tenant, id);
        // `meta` last: while it is there the session is not moved yet.
        for part in SESSION_PARTS.iter().rev() {
            let old = store.key(id, part);
            move_key(store, &old, &store.session_key(&at, part)).await?;
        }
        moved += 1;
    }
    Ok(moved)
}

async fn move_key(store: &RedisStore, old: &str, new: &str) -> StoreResult<()> {
    let dump: Option<Vec<u8>> = store.prepare_query(redis::cmd("DUMP").arg(old)).await?;
    let ttl: i64 = store.prepare_query(redis::cmd("PTTL").arg(old)).await?;
    let (Some(dump), true) = (dump, ttl != -2) else {
        return Ok(());
    };
    // -1: no expiry (a lease always has one; a session's keys always do).
    let ttl = ttl.max(0);
    let () = store
        .prepare_query(
            redis::cmd("RESTORE")
                .arg(new)
                .arg(ttl)
                .arg(dump)
                .arg("REPLACE"),
        )
        .await?;
    let _: i64 = store.prepare_query(redis::cmd("DEL").arg(old)).await?;
    Ok(())
}
