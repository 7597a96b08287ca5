//! The Redis connection pools: one per thread (see [`crate::per_thread`]), each with
//! deadpool-redis' manager minus its PING on every checkout.
//!
//! deadpool-redis checks each connection with a PING before handing it out, which doubles
//! the round trips of a request that makes one Redis call. A connection that was handed
//! out moments ago and came back is trusted instead: one whose call failed, timed out or
//! was cancelled never comes back (see `Checkout` in the parent module), so the only
//! thing a PING could still catch is a connection that broke while it sat idle — and
//! idle ones are still checked.

use std::time::Duration;

use deadpool::managed::{self, Metrics, PoolConfig, RecycleResult};
use redis::{IntoConnectionInfo, RedisError, aio::MultiplexedConnection, io::tcp::TcpSettings};

use crate::per_thread::PerThread;

/// A connection last handed out less than this long ago skips the PING.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Connection = managed::Object<Manager>;

pub(super) struct Manager(deadpool_redis::Manager);

/// A pool per calling thread; a bad URL fails here, at startup.
pub(super) fn per_thread(url: &str, config: PoolConfig) -> Result<PerThread<Pool>, String> {
    let url = url.to_string();
    PerThread::try_new(move || build(&url, config))
}

fn build(url: &str, config: PoolConfig) -> Result<Pool, String> {
    // No Nagle: several requests share a multiplexed connection, and a command written
    // while another awaits its answer must not wait for that answer's acknowledgement.
    let info = url
        .into_connection_info()
        .map_err(|e| format!("redis url: {e}"))?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let manager = deadpool_redis::Manager::new(info).map_err(|e| format!("redis url: {e}"))?;
    Pool::builder(Manager(manager))
        .config(config)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("redis pool: {e}"))
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
