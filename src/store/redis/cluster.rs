//! The store on a Redis Cluster (`store.mode = "cluster"`).
//!
//! Each worker thread has a cluster connection of its own, from redis' async cluster
//! client, for the reason the single-server pools are per thread (see `per_thread`): it
//! keeps a multiplexed connection per node and routes each command by its key's slot. Every
//! script and every multi-key command already touches one slot (the key layout's hash
//! tags), so what the store adds is:
//!
//! - **Pipelines split by slot.** A pipeline (a user's sessions, an import batch) names
//!   many sessions; it is sent as one pipeline per slot, at once, and the answers are put
//!   back in order (see `RedisStore::pipeline`).
//! - **Redirects retried by the store, not by the client.** The client is built with no
//!   retries of its own, because it would also resend a command whose connection broke,
//!   and a commit may not run twice. An answer that proves the command did not run (a
//!   redirect, a failover under way: see `repeat`) is retried until the command's
//!   deadline; then the caller gets 503. Meanwhile the client refreshes its slot map (it
//!   does on each of those answers).
//! - **Scans on every primary**, and the expired-session listener on every primary
//!   (`expiry`), found with `CLUSTER NODES`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisResult,
    Value,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
    io::tcp::TcpSettings,
};
use tokio::sync::OnceCell;

use crate::{config::StoreSettings, per_thread::PerThread};

pub(super) struct Cluster {
    client: ClusterClient,
    /// Each thread's, made on its first use, so that a cluster that does not answer yet
    /// does not stop the service from starting (it serves 503 until it does, as on one
    /// server).
    conns: PerThread<Arc<OnceCell<ClusterConnection>>>,
    /// The first node's address, auth and TLS: every node's are the same.
    template: ConnectionInfo,
    connect_timeout: Duration,
}

impl Cluster {
    pub(super) fn new(settings: &StoreSettings) -> Result<Cluster, String> {
        let infos = settings
            .redis_urls()
            .into_iter()
            .map(|url| {
                url.into_connection_info()
                    .map_err(|e| format!("redis url: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let template = infos
            .first()
            .cloned()
            .ok_or("store.redis_url names no node")?;
        let connect_timeout = Duration::from_millis(settings.pool_timeout_ms);
        let client = ClusterClientBuilder::new(infos)
            .retries(0)
            .connection_timeout(connect_timeout)
            .response_timeout(Duration::from_millis(settings.command_timeout_ms))
            .tcp_settings(TcpSettings::default().set_nodelay(true))
            .build()
            .map_err(|e| format!("redis cluster: {e}"))?;
        Ok(Cluster {
            client,
            conns: PerThread::new(Arc::default),
            template,
            connect_timeout,
        })
    }

    /// The calling thread's cluster connection (a cheap clone).
    pub(super) async fn connection(&self) -> RedisResult<ClusterConnection> {
        let conn = self.conns.get();
        let made = tokio::time::timeout(
            self.connect_timeout,
            conn.get_or_try_init(|| self.client.get_async_connection()),
        )
        .await
        .map_err(|_| timed_out("no redis cluster connection in time"))?;
        made.cloned()
    }

    /// The primaries that serve slots, as the cluster reports them now.
    pub(super) async fn primaries(&self) -> RedisResult<Vec<Primary>> {
        let mut conn = self.connection().await?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        Ok(primaries_of(&nodes))
    }

    /// `cmd` on `primary`: routed by one of its slots, through the client's own map of
    /// the cluster (it connects to the nodes that map names).
    pub(super) async fn on_node(&self, cmd: Cmd, primary: &Primary) -> RedisResult<Value> {
        let mut conn = self.connection().await?;
        let route = Route::new(primary.slot, SlotAddr::Master);
        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        conn.route_command(cmd, at).await
    }

    /// How to reach `primary` on a connection of its own, with the configured auth and TLS.
    pub(super) fn node(&self, primary: &Primary) -> ConnectionInfo {
        let (host, port) = (&primary.host, primary.port);
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.clone(), port),
        };
        self.template.clone().set_addr(addr)
    }
}

/// A primary of the cluster and the first slot it serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Primary {
    pub host: String,
    pub port: u16,
    pub slot: u16,
}

/// The primaries that serve slots in a `CLUSTER NODES` reply (`<id> <ip:port@bus[,host]>
/// <flags> <primary> <ping> <pong> <epoch> <link> <slot or range> …`), leaving out
/// failed ones.
fn primaries_of(nodes: &str) -> Vec<Primary> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| matches!(*f, "fail" | "noaddr")) {
                return None;
            }
            let (host, port) = fields.get(1)?.split(['@', ',']).next()?.rsplit_once(':')?;
            // Slots being moved are written `[slot->-node]`: not a slot it serves.
            let first = fields[8.min(fields.len())..]
                .iter()
                .find(|f| !f.starts_with('['))?;
            Some(Primary {
                host: host.to_string(),
                port: port.parse().ok()?,
                slot: first.split('-').next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Commands grouped by the slot of their first key, in order within each group:
/// `(indices among the commands, a pipeline begun by start() and holding them)`.
/// Commands without a key form a group of their own.
pub(super) fn by_slot<'c>(
    commands: impl Iterator<Item = &'c Cmd>,
    start: impl Fn() -> Pipeline,
) -> Vec<(Vec<usize>, Pipeline)> {
    let mut groups: Vec<(Vec<usize>, Pipeline)> = Vec::new();
    let mut slots: HashMap<Option<Slot>, usize> = HashMap::new();
    for (i, cmd) in commands.enumerate() {
        let slot = first_key(cmd).map(Slot::for_key);
        let group = *slots.entry(slot).or_insert_with(|| {
            groups.push((Vec::new(), start()));
            groups.len() - 1
        });
        groups[group].0.push(i);
        groups[group].1.add_command(cmd.clone());
    }
    groups
}

/// The first key a command names: after the name, or after `EVALSHA <sha> <numkeys>`.
fn first_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    if name == b"EVALSHA" || name == b"EVAL" {
        let _script = args.next()?;
        let count = std::str::from_utf8(args.next()?)
            .ok()?
            .parse::<usize>()
            .ok()?;
        return (count > 0)
            .then(|| args.next().map(<[u8]>::to_vec))
            .flatten();
    }
    args.next().map(<[u8]>::to_vec)
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_are_read_from_cluster_nodes_and_failed_ones_left_out() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 slave a1 0 1 1 connected
c3 10.0.0.2:7002@17002,redis-2 master - 0 1 2 connected [5461->-a1] 5462-10922
d4 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected 10923-16383
e5 127.0.0.1:7004@17004 master - 0 1 4 connected
";
        let primary = |host: &str, port, slot| Primary {
            host: host.into(),
            port,
            slot,
        };
        assert_eq!(
            primaries_of(nodes),
            vec![
                primary("127.0.0.1", 7000, 0),
                primary("10.0.0.2", 7002, 5462)
            ]
        );
    }

    #[test]
    fn a_pipeline_splits_by_slot_and_keeps_each_commands_place() {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg("sr:{a}:meta").arg("cfg");
        pipe.cmd("EVALSHA")
            .arg("f00")
            .arg(2)
            .arg("sr:{b}:meta")
            .arg("sr:{b}:turns");
        pipe.cmd("LLEN").arg("sr:{a}:turns");
        let groups = by_slot(pipe.cmd_iter(), redis::pipe);
        let indices: Vec<Vec<usize>> = groups.iter().map(|(i, _)| i.clone()).collect();
        assert_eq!(indices, vec![vec![0, 2], vec![1]]);
        assert_eq!(groups[0].1.len(), 2);
    }
}
