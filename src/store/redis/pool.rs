//! The Redis connection pools: one per thread (see [`crate::per_thread`]), each with
//! deadpool-redis' manager minus its PING on every checkout.
//!
//! deadpool-redis checks each connection with a PING before handing it out, which doubles
//! the round trips of a request that makes one Redis call. A connection that was handed
//! out moments ago and came back is trusted instead: one whose call failed, timed out or
//! was cancelled never comes back (see `Checkout` in the parent module), so the only
//! thing a PING could still catch is a connection that broke while it sat idle — and
//! idle ones are still checked.
//!
//! A Redis restart breaks every connection at once, trusted ones included. The first call
//! that meets a broken one records it in [`Breaks`], shared by the pools of all threads:
//! from then on every connection handed out before that moment is checked again, so the
//! others the restart broke are replaced before a request gets them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, PoolConfig, RecycleResult};
use redis::{IntoConnectionInfo, RedisError, aio::MultiplexedConnection, io::tcp::TcpSettings};

use crate::per_thread::PerThread;

/// A connection last handed out less than this long ago skips the PING.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Connection = managed::Object<Manager>;

pub(super) struct Manager {
    inner: deadpool_redis::Manager,
    breaks: Arc<Breaks>,
}

/// When a connection was last found broken on the wire.
pub(super) struct Breaks {
    base: Instant,
    /// Nanoseconds from `base` to the last break, plus one; 0: none seen.
    last: AtomicU64,
}

impl Default for Breaks {
    fn default() -> Self {
        Breaks {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Breaks {
    pub(super) fn record(&self) {
        let since_base = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last
            .store(since_base.saturating_add(1), Ordering::Relaxed);
    }

    /// How long ago the last break was seen, if one was.
    fn last_seen(&self) -> Option<Duration> {
        let last = self.last.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.base
                .elapsed()
                .saturating_sub(Duration::from_nanos(last)),
        )
    }
}

/// A pool per calling thread; a bad URL fails here, at startup.
pub(super) fn per_thread(
    url: &str,
    config: PoolConfig,
    breaks: Arc<Breaks>,
) -> Result<PerThread<Pool>, String> {
    let url = url.to_string();
    PerThread::try_new(move || build(&url, config, breaks.clone()))
}

fn build(url: &str, config: PoolConfig, breaks: Arc<Breaks>) -> Result<Pool, String> {
    // No Nagle: several requests share a multiplexed connection, and a command written
    // while another awaits its answer must not wait for that answer's acknowledgement.
    let info = url
        .into_connection_info()
        .map_err(|e| format!("redis url: {e}"))?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let inner = deadpool_redis::Manager::new(info).map_err(|e| format!("redis url: {e}"))?;
    Pool::builder(Manager { inner, breaks })
        .config(config)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("redis pool: {e}"))
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&self.inner).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        let used = metrics.last_used();
        // Handed out (or made) after the last break: the break did not reach it.
        let after_break = self.breaks.last_seen().is_none_or(|ago| used < ago);
        if used < TRUSTED_FOR && after_break {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, conn, metrics).await
    }
}
