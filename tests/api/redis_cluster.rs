//! A local Redis Cluster for the tests: six private `redis-server` processes (three
//! primaries, three replicas) on free loopback ports, joined with `redis-cli --cluster
//! create`. Each node dies with the test process, as a single server does.

use std::{
    net::TcpListener,
    process::Command,
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
                         --cluster-config-file nodes-{port}.conf --dir '{path}'"
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

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .nodes
            .iter()
            .all(|node| self.info(node, "cluster_state").as_deref() == Some("ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
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
