//! Counts the sessions Redis expires (`sessions_expired_total`).
//!
//! Redis drops an expired session by itself; the service hears of it only through keyspace
//! notifications of expired keys, which the server publishes when `notify-keyspace-events`
//! includes `E` and `x`. At startup the service adds those two flags if they are missing (an
//! addition: other clients' notifications stay), and says in the log that expiries are not
//! counted if the server refuses `CONFIG` (as managed services may). Every instance hears
//! every expiry: aggregate the counter across instances with `max`, not `sum`.
//!
//! A cluster node publishes only the expiries of its own keys, so the service listens on
//! every primary, and looks again every few seconds for primaries it does not listen to
//! yet (a replica promoted by a failover, a node added).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use redis::RedisResult;

use super::{Nodes, RedisStore, cluster::Cluster, sentinel::Target};

/// After a lost connection (Redis restarting, say), listen again this much later; and
/// how often a cluster's primaries are looked up.
const RETRY: Duration = Duration::from_secs(5);

/// Listens for the expiries of the store's sessions for as long as the runtime lives.
pub fn count_expired_sessions(store: &RedisStore) {
    let prefix = store.prefix().to_string();
    match &store.nodes {
        Nodes::Single(_, target) => {
            tokio::spawn(listen_again_and_again(target.clone(), prefix));
        }
        Nodes::Cluster(cluster) => {
            tokio::spawn(listen_on_every_primary(cluster.clone(), prefix));
        }
    }
}

/// On the primary, found again after each lost connection, and behind sentinels each
/// time they name another one.
async fn listen_again_and_again(target: Arc<Target>, prefix: String) {
    let never = tokio::sync::Notify::new();
    let switched = target.switches().map_or(&never, |s| &s.changed);
    loop {
        let heard = async { listen(target.primary().await?, &prefix).await };
        tokio::select! {
            heard = heard => {
                if let Err(err) = heard {
                    tracing::warn!(%err, "not hearing of session expiries; trying again");
                }
                tokio::time::sleep(RETRY).await;
            }
            () = switched.notified() => {}
        }
    }
}

/// One listener per primary, until its connection ends (the node died, or was demoted
/// and restarted); the primary that took its slots gets one on the next look.
async fn listen_on_every_primary(cluster: Arc<Cluster>, prefix: String) {
    let listening: Arc<Mutex<HashSet<(String, u16)>>> = Arc::default();
    loop {
        match cluster.primaries().await {
            Ok(primaries) => {
                for primary in primaries {
                    let address = (primary.host.clone(), primary.port);
                    let new = listening
                        .lock()
                        .is_ok_and(|mut set| set.insert(address.clone()));
                    if !new {
                        continue;
                    }
                    let (node, prefix, listening) =
                        (cluster.node(&primary), prefix.clone(), listening.clone());
                    tokio::spawn(async move {
                        let heard = async { listen(redis::Client::open(node)?, &prefix).await };
                        if let Err(err) = heard.await {
                            tracing::warn!(%err, node = ?address, "not hearing of session expiries on a cluster node");
                        }
                        if let Ok(mut set) = listening.lock() {
                            set.remove(&address);
                        }
                    });
                }
            }
            Err(err) => tracing::warn!(%err, "cannot list the redis cluster's primaries"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn listen(client: redis::Client, prefix: &str) -> RedisResult<()> {
    enable_notifications(&client).await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe("__keyevent@*__:expired").await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        if let Ok(key) = message.get_payload::<String>()
            && is_session_meta(prefix, &key)
        {
            crate::metrics::record_sessions_expired(1);
        }
    }
    Ok(())
}

async fn enable_notifications(client: &redis::Client) -> RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let current: RedisResult<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut conn)
        .await;
    let flags = match current {
        Ok((_, flags)) => flags,
        Err(err) => {
            tracing::warn!(%err, "Redis refuses CONFIG: expired sessions are not counted");
            return Ok(());
        }
    };
    let has_expired = flags.contains('x') || flags.contains('A');
    if flags.contains('E') && has_expired {
        return Ok(());
    }
    let wanted = format!("{flags}Ex");
    let set: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&wanted)
        .query_async(&mut conn)
        .await;
    match set {
        Ok(()) => tracing::info!(flags = %wanted, "enabled Redis notifications of expired keys"),
        Err(err) => {
            tracing::warn!(%err, "Redis refuses CONFIG SET: expired sessions are not counted")
        }
    }
    Ok(())
}

/// `<prefix>:{<id>}:meta`: every session has exactly one, and all its keys expire together.
fn is_session_meta(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(":{"))
        .is_some_and(|rest| rest.ends_with("}:meta"))
}

#[cfg(test)]
mod tests {
    use super::is_session_meta;

    #[test]
    fn only_this_prefixs_session_hashes_count() {
        assert!(is_session_meta("sr", "sr:{abc}:meta"));
        assert!(!is_session_meta("sr", "sr:{abc}:turns"));
        assert!(!is_session_meta("sr", "sr:{abc}:lease"));
        assert!(!is_session_meta("sr", "other:{abc}:meta"));
        assert!(!is_session_meta("sr", "sr2:{abc}:meta"));
        assert!(!is_session_meta("sr", "sr:user:abc"));
    }
}
