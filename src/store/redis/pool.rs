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
//!
//! Behind Redis Sentinel each new connection goes to the primary the sentinels name at
//! that moment, and one made before they named another is dropped (see `sentinel`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, PoolConfig, RecycleResult};
use redis::{IntoConnectionInfo, RedisError, aio::MultiplexedConnection, io::tcp::TcpSettings};

use super::sentinel::Target;
use crate::per_thread::PerThread;

/// A connection last handed out less than this long ago skips the PING.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(super) type Pool = managed::Pool<Manager>;
pub(super) type Connection = managed::Object<Manager>;

pub(super) struct Manager {
    connect: Connect,
    breaks: Arc<Breaks>,
}

enum Connect {
    Url(Box<deadpool_redis::Manager>),
    Sentinel(Arc<Target>),
}

/// No Nagle: several requests share a multiplexed connection, and a command written while
/// another awaits its answer must not wait for that answer's acknowledgement.
pub(super) fn no_delay() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
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
    pub(super) fn last_seen(&self) -> Option<Duration> {
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
    target: Arc<Target>,
    config: PoolConfig,
    breaks: Arc<Breaks>,
) -> Result<PerThread<Pool>, String> {
    PerThread::try_new(move || build(&target, config, breaks.clone()))
}

fn build(target: &Arc<Target>, config: PoolConfig, breaks: Arc<Breaks>) -> Result<Pool, String> {
    let connect = match &**target {
        Target::Url(url) => {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("redis url: {e}"))?
                .set_tcp_settings(no_delay());
            let manager =
                deadpool_redis::Manager::new(info).map_err(|e| format!("redis url: {e}"))?;
            Connect::Url(Box::new(manager))
        }
        Target::Sentinel { sentinels, .. } => {
            for url in sentinels {
                (url.as_str().into_connection_info())
                    .map_err(|e| format!("redis sentinel url: {e}"))?;
            }
            Connect::Sentinel(target.clone())
        }
    };
    Pool::builder(Manager { connect, breaks })
        .config(config)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("redis pool: {e}"))
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        match &self.connect {
            Connect::Url(manager) => managed::Manager::create(&**manager).await,
            Connect::Sentinel(target) => {
                let primary = target.primary().await?;
                primary.get_multiplexed_async_connection().await
            }
        }
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if let Connect::Sentinel(target) = &self.connect
            && target.moved_since(metrics.created.elapsed())
        {
            return Err(managed::RecycleError::message("the primary moved"));
        }
        let used = metrics.last_used();
        // Handed out (or made) after the last break: the break did not reach it.
        let after_break = self.breaks.last_seen().is_none_or(|ago| used < ago);
        if used < TRUSTED_FOR && after_break {
            return Ok(());
        }
        match &self.connect {
            Connect::Url(manager) => managed::Manager::recycle(&**manager, conn, metrics).await,
            Connect::Sentinel(_) => {
                let _: String = redis::cmd("PING").query_async(conn).await?;
                Ok(())
            }
        }
    }
}
