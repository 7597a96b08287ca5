//! The Redis connection pool: deadpool-redis' manager, minus its PING on every checkout.
//!
//! deadpool-redis checks each connection with a PING before handing it out, which doubles
//! the round trips of a request that makes one Redis call. A connection that was handed
//! out moments ago and came back is trusted instead: one whose call failed, timed out or
//! was cancelled never comes back (see `Checkout` in the parent module), so the only
//! thing a PING could still catch is a connection that broke while it sat idle — and
//! idle ones are still checked.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use redis::{RedisError, aio::MultiplexedConnection};

/// A connection last handed out less than this long ago skips the PING.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Connection = managed::Object<Manager>;

pub(super) struct Manager(deadpool_redis::Manager);

impl Manager {
    pub(super) fn new(url: &str) -> Result<Manager, RedisError> {
        deadpool_redis::Manager::new(url).map(Manager)
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
