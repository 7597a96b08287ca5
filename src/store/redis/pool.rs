//! The Redis connection pools: one per thread, each with deadpool-redis' manager minus
//! its PING on every checkout.
//!
//! A multiplexed connection is driven by a task on the runtime that opened it. Shared by
//! all threads, a call from another thread wakes the driving thread and is woken back by
//! it: about nine context switches per send (measured), costly on a virtual machine. A
//! pool per thread (one per server worker, plus whatever thread runs startup) keeps every
//! call on the thread that makes it.
//!
//! deadpool-redis checks each connection with a PING before handing it out, which doubles
//! the round trips of a request that makes one Redis call. A connection that was handed
//! out moments ago and came back is trusted instead: one whose call failed, timed out or
//! was cancelled never comes back (see `Checkout` in the parent module), so the only
//! thing a PING could still catch is a connection that broke while it sat idle — and
//! idle ones are still checked.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    thread::ThreadId,
    time::Duration,
};

use deadpool::managed::{self, Metrics, PoolConfig, RecycleResult};
use redis::{RedisError, aio::MultiplexedConnection};

/// A connection last handed out less than this long ago skips the PING.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Connection = managed::Object<Manager>;

pub(super) struct Manager(deadpool_redis::Manager);

/// The pools of every thread that has talked to Redis, each of at most `config.max_size`.
pub(super) struct Pools {
    url: String,
    config: PoolConfig,
    by_thread: Mutex<HashMap<ThreadId, Pool>>,
}

impl Pools {
    /// Fails on a malformed URL; connecting happens on first use.
    pub(super) fn new(url: &str, config: PoolConfig) -> Result<Pools, String> {
        let pools = Pools {
            url: url.to_string(),
            config,
            by_thread: Mutex::default(),
        };
        pools.build()?;
        Ok(pools)
    }

    /// The calling thread's pool (a cheap handle to it).
    pub(super) fn current(&self) -> Result<Pool, String> {
        let thread = std::thread::current().id();
        let mut pools = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(&thread) {
            return Ok(pool.clone());
        }
        let pool = self.build()?;
        pools.insert(thread, pool.clone());
        Ok(pool)
    }

    fn build(&self) -> Result<Pool, String> {
        let manager = deadpool_redis::Manager::new(self.url.as_str())
            .map_err(|e| format!("redis url: {e}"))?;
        Pool::builder(Manager(manager))
            .config(self.config)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("redis pool: {e}"))
    }
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&self.0).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < TRUSTED_FOR {
            return Ok(());
        }
        managed::Manager::recycle(&self.0, conn, metrics).await
    }
}
