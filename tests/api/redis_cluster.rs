//! A local Redis Cluster for the tests: six private `redis-server` processes (three
//! primaries, three replicas) on free loopback ports, joined with `redis-cli --cluster
//! create`. Each node dies with the test process, as a single server does.

use std::{
    net::TcpListener,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::redis_server::RedisServer;

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// The nodes' `nodes.conf` files; removed with the cluster.
    _dir: tempfile::TempDir,
}

/// Distinct free ports, all held until every one is chosen.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

impl RedisCluster {
    /// One cluster shared by every test of this binary that does not break it; tests keep
    /// apart by key prefix.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(RedisCluster::start)
    }

    /// The store's `redis_url` for this cluster: every node, comma-separated.
    pub fn seeds(&self) -> String {
        self.urls().join(",")
    }

    /// Starts the six nodes and joins them; returns once every node reports the cluster ok.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let ports = free_ports(12);
        // The bus port is chosen too: the default (port + 10000) may be taken or past 65535.
        let nodes: Vec<RedisServer> = ports[..6]
            .iter()
            .zip(&ports[6..])
            .map(|(port, bus)| {
                RedisServer::start_with(
                    *port,
                    &format!(
                        "--cluster-enabled yes --cluster-port {bus} --cluster-node-timeout 2000 \
                         --cluster-config-file nodes-{port}.conf --dir '{path}' \
                         --repl-diskless-sync-delay 0"
                    ),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (see README)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_until_ok();
        cluster
    }

    /// `redis://` URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A field of `CLUSTER INFO` as one node reports it.
    pub fn info(&self, node: &RedisServer, field: &str) -> Option<String> {
        let mut conn = node.client().get_connection().ok()?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|value| value.trim().to_string())
    }

    fn connection(&self, at: usize) -> redis::Connection {
        self.nodes[at]
            .client()
            .get_connection()
            .expect("node connection")
    }

    /// `CLUSTER NODES` as node `at` sees it: `(id, port, flags, primary id)` per node.
    fn nodes_seen_by(&self, at: usize) -> Vec<(String, u16, String, String)> {
        let mut conn = self.connection(at);
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .expect("CLUSTER NODES");
        nodes
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit_once(':')?
                    .1
                    .parse()
                    .ok()?;
                Some((
                    f[0].to_string(),
                    port,
                    f.get(2)?.to_string(),
                    f.get(3)?.to_string(),
                ))
            })
            .collect()
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// The node (index into `nodes`) that serves `key` now, asked of node `at`.
    pub fn primary_of(&self, key: &str, at: usize) -> usize {
        let mut conn = self.connection(at);
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        let shards: Vec<redis::Value> =
            redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).unwrap();
        for shard in shards {
            let redis::Value::Array(fields) = shard else {
                continue;
            };
            let number = |v: &redis::Value| match v {
                redis::Value::Int(i) => *i,
                _ => -1,
            };
            let (start, end) = (number(&fields[0]), number(&fields[1]));
            if (start..=end).contains(&i64::from(slot))
                && let redis::Value::Array(primary) = &fields[2]
            {
                return self.index_of(u16::try_from(number(&primary[1])).unwrap());
            }
        }
        panic!("no node serves slot {slot}")
    }

    /// A replica of the primary `primary`, as node `at` sees it.
    pub fn replica_of(&self, primary: usize, at: usize) -> usize {
        let nodes = self.nodes_seen_by(at);
        let id = nodes
            .iter()
            .find(|(_, port, ..)| *port == self.nodes[primary].port)
            .map(|(id, ..)| id.clone())
            .expect("the primary is known");
        let (_, port, ..) = nodes
            .iter()
            .find(|(_, _, flags, of)| *of == id && !flags.contains("fail"))
            .expect("a live replica");
        self.index_of(*port)
    }

    /// `CLUSTER FAILOVER` on replica `replica`: it and its primary swap roles, without
    /// losing a write. Returns once it is the primary.
    pub fn failover(&self, replica: usize) {
        let mut conn = self.connection(replica);
        let () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut conn)
            .expect("CLUSTER FAILOVER");
        self.wait_until_primary(replica, Duration::from_secs(10));
    }

    /// Waits until node `node` says it is a primary.
    pub fn wait_until_primary(&self, node: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let role = self.nodes[node]
                .client()
                .get_connection()
                .and_then(|mut conn| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut conn));
            if let Ok(role) = role
                && matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} did not become a primary: {:?}",
                self.nodes_seen_by(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Until every node reports the cluster ok and every replica has its primary's data: a
    /// replica that never finished its first sync will not take over from a dead primary.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .nodes
            .iter()
            .all(|node| self.info(node, "cluster_state").as_deref() == Some("ok") && synced(node))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A primary, or a replica whose link to its primary is up.
fn synced(node: &RedisServer) -> bool {
    let Ok(mut conn) = node.client().get_connection() else {
        return false;
    };
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap_or_default();
    info.lines().any(|line| line.trim() == "role:master")
        || info
            .lines()
            .any(|line| line.trim() == "master_link_status:up")
}

#[test]
fn the_harness_starts_three_primaries_with_a_replica_each() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.urls().len(), 6);
    let roles: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| {
            let mut conn = node.client().get_connection().unwrap();
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
            match role.first() {
                Some(redis::Value::BulkString(name)) => String::from_utf8_lossy(name).into(),
                other => panic!("ROLE: {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "master").count(),
        3,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "slave").count(),
        3,
        "{roles:?}"
    );
    let first = &cluster.nodes[0];
    assert_eq!(cluster.info(first, "cluster_size").as_deref(), Some("3"));
    assert_eq!(
        cluster.info(first, "cluster_slots_assigned").as_deref(),
        Some("16384")
    );
}
