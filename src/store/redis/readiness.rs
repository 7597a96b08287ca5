//! Whether the Redis store may serve: prepared (scripts loaded, key layout migrated) and
//! writable (a primary, not a replica).
//!
//! The service listens before Redis answers (see `startup`): until the preparation has
//! succeeded every store call is refused here, at once and without a round trip, so
//! nothing reads or writes a layout that was not migrated yet.

use std::sync::atomic::{AtomicU8, Ordering};

use redis::Value;

use super::{Nodes, RedisStore, Request, classify, cluster::Primary, scripts, text, unavailable};
use crate::store::{Refusal, StoreError, StoreResult, migrate};

const PREPARING: u8 = 0;
const READY: u8 = 1;
/// The preparation could not write its migration: `redis_url` names a replica.
const READ_ONLY: u8 = 2;

pub(crate) struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(AtomicU8::new(PREPARING))
    }
}

impl Readiness {
    pub(crate) fn gate(&self) -> StoreResult<()> {
        match self.0.load(Ordering::Acquire) {
            READY => Ok(()),
            READ_ONLY => Err(StoreError::Refused(Refusal::ReadOnly)),
            _ => Err(StoreError::NotSent(
                "redis is not prepared yet (scripts and key-layout migrations pending)".into(),
            )),
        }
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Release);
    }
}

impl RedisStore {
    /// Loads the scripts, applies pending migrations and reads Redis' clock; the store
    /// serves from then on. Returns the key-layout version. Safe to call again after a
    /// failure (every step is idempotent).
    pub async fn prepare(&self) -> StoreResult<u32> {
        let prepared = async {
            self.check_mode().await?;
            self.load_scripts().await?;
            let version = migrate::migrate(self).await?;
            let time: Vec<i64> = self.prepare_query(&redis::cmd("TIME")).await?;
            if let [seconds, micros] = time[..] {
                self.clock.observe(seconds * 1000 + micros / 1000);
            }
            Ok(version)
        };
        let result = prepared.await;
        match &result {
            Ok(_) => self.readiness.set(READY),
            Err(StoreError::Refused(Refusal::ReadOnly)) => self.readiness.set(READ_ONLY),
            Err(_) => {}
        }
        result
    }

    /// Loads the session scripts up front, so that startup fails fast on a Redis that
    /// refuses Lua; scripts elsewhere load on first use. On a cluster, on every primary.
    async fn load_scripts(&self) -> StoreResult<()> {
        for node in self.primaries().await? {
            for lua in scripts::ALL.iter() {
                let load = redis::cmd("SCRIPT").arg("LOAD").arg(lua.source).to_owned();
                let _: String = self.on_node(&load, node.as_ref()).await?;
            }
        }
        Ok(())
    }

    /// The nodes that hold keys: `None` for the one server, or each primary of a cluster.
    async fn primaries(&self) -> StoreResult<Vec<Option<Primary>>> {
        let Nodes::Cluster(cluster) = &self.nodes else {
            return Ok(vec![None]);
        };
        let primaries = tokio::time::timeout(self.command_timeout, cluster.primaries())
            .await
            .map_err(|_| unavailable("redis command timed out"))?
            .map_err(classify)?;
        Ok(primaries.into_iter().map(Some).collect())
    }

    /// A command of the preparation on one of [`RedisStore::primaries`].
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        node: Option<&Primary>,
    ) -> StoreResult<T> {
        let (Some(node), Nodes::Cluster(cluster)) = (node, &self.nodes) else {
            return self.prepare_query(cmd).await;
        };
        let reply = tokio::time::timeout(self.command_timeout, cluster.on_node(cmd.clone(), node))
            .await
            .map_err(|_| unavailable("redis command timed out"))?
            .map_err(classify)?;
        redis::from_redis_value(reply).map_err(|e| StoreError::Corrupt(format!("reply: {e}")))
    }

    /// A service in single mode pointed at a cluster node would meet a `MOVED` on most
    /// keys: refuse to start, and say which setting is wrong. A server that refuses `INFO`
    /// (renamed on some managed services) is taken at its word that it is one server.
    async fn check_mode(&self) -> StoreResult<()> {
        if matches!(self.nodes, Nodes::Cluster(_)) {
            return Ok(());
        }
        let info: String = match self.prepare_query(redis::cmd("INFO").arg("cluster")).await {
            Ok(info) => info,
            Err(StoreError::Corrupt(_)) => return Ok(()),
            Err(err) => return Err(err),
        };
        match info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            true => Err(StoreError::Corrupt(
                "store.redis_url names a node of a Redis Cluster: set store.mode = \"cluster\""
                    .into(),
            )),
            false => Ok(()),
        }
    }

    /// A command of the preparation (scripts, migrations): it runs before the store is ready.
    pub(crate) async fn prepare_query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> StoreResult<T> {
        self.exec(Request::Cmd(cmd), self.command_timeout)
            .await?
            .map_err(classify)
    }

    pub(crate) async fn schema_version(&self, key: &str) -> StoreResult<u32> {
        let raw: Option<u32> = self.prepare_query(redis::cmd("GET").arg(key)).await?;
        Ok(raw.unwrap_or(0))
    }

    pub(crate) async fn run_migration(
        &self,
        source: &str,
        key: &str,
        version: u32,
    ) -> StoreResult<u32> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(source).arg(1).arg(key).arg(version);
        self.prepare_query(&cmd).await
    }

    /// Every key matching `pattern`, by `SCAN` (a few hundred at a time, never blocking).
    pub(crate) async fn scan_keys(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let mut keys = Vec::new();
        self.scan_each(pattern, 500, |batch| keys.extend(batch))
            .await?;
        Ok(keys)
    }

    /// `SCAN` for `pattern`, `count` keys a step, handing each step's keys to `each`; on a
    /// cluster, on every primary in turn.
    pub(crate) async fn scan_each(
        &self,
        pattern: &str,
        count: usize,
        mut each: impl FnMut(Vec<String>),
    ) -> StoreResult<()> {
        for node in &self.primaries().await? {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count);
                let (next, keys): (u64, Vec<String>) = self.on_node(&scan, node.as_ref()).await?;
                each(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    pub(crate) async fn list_range(
        &self,
        key: &str,
        start: usize,
        count: usize,
    ) -> StoreResult<Vec<String>> {
        let stop = start + count.saturating_sub(1);
        self.prepare_query(redis::cmd("LRANGE").arg(key).arg(start).arg(stop))
            .await
    }

    pub(crate) async fn run_chunk_script(
        &self,
        source: &str,
        key: &str,
        args: &[String],
    ) -> StoreResult<u64> {
        self.prepare_query(redis::cmd("EVAL").arg(source).arg(1).arg(key).arg(args))
            .await
    }

    /// Ready, and a primary: a replica answers every read and refuses every write, so it
    /// must not look ready to a load balancer. `ROLE` answers `master` on a primary;
    /// a server that refuses `ROLE` (renamed on some managed services) is taken at its
    /// `PING`.
    ///
    /// A cluster is ready while it says its state is `ok` (every slot served).
    pub(super) async fn writable(&self) -> StoreResult<()> {
        if matches!(self.nodes, Nodes::Cluster(_)) {
            let info: String = self.query(redis::cmd("CLUSTER").arg("INFO")).await?;
            return match info.lines().any(|line| line.trim() == "cluster_state:ok") {
                true => Ok(()),
                false => Err(unavailable("the redis cluster is down")),
            };
        }
        match self.query::<Vec<Value>>(&redis::cmd("ROLE")).await {
            Ok(role) if matches!(text(role.first()).as_str(), "slave" | "replica") => {
                Err(StoreError::Refused(Refusal::ReadOnly))
            }
            Ok(_) => Ok(()),
            Err(StoreError::Corrupt(_)) => {
                self.query::<String>(&redis::cmd("PING")).await.map(drop)
            }
            Err(err) => Err(err),
        }
    }
}
