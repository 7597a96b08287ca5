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
//! Behind Redis Sentinel (`store.mode = "sentinel"`) each new connection goes to the
//! primary the sentinels name at that moment. The sentinels are asked every half second
//! which primary they name ([`follow_the_primary`]); once it changes, every connection
//! made before is dropped at its next checkout. That matters: after a failover the old
//! primary may accept writes for seconds until the sentinels demote it, and what it
//! takes then is lost when it resyncs from the new one. A connection that meets a
//! `READONLY` is dropped too (see `Checkout` in the parent module).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, PoolConfig, RecycleResult};
use redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult,
    aio::MultiplexedConnection, io::tcp::TcpSettings,
};

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

/// Where new connections go.
pub(super) enum Target {
    Url(String),
    /// The primary that `sentinels` name `master` now. The URLs' credentials and TLS are
    /// used for the sentinels and for the primary alike.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        switches: Switches,
    },
}

/// When the sentinels last named another primary, and a wake-up for those who follow it.
#[derive(Default)]
pub(super) struct Switches {
    last: Breaks,
    pub(super) changed: tokio::sync::Notify,
}

impl Target {
    pub(super) fn sentinel(sentinels: Vec<String>, master: String) -> Target {
        Target::Sentinel {
            sentinels,
            master,
            switches: Switches::default(),
        }
    }

    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self, Target::Sentinel { .. })
    }

    pub(super) fn switches(&self) -> Option<&Switches> {
        match self {
            Target::Url(_) => None,
            Target::Sentinel { switches, .. } => Some(switches),
        }
    }

    /// Whether a connection made `age` ago is to a primary the sentinels no longer name.
    fn moved_since(&self, age: Duration) -> bool {
        (self.switches())
            .and_then(|switches| switches.last.last_seen())
            .is_some_and(|ago| age > ago)
    }

    /// A client of the primary, as it is now.
    pub(super) async fn primary(&self) -> RedisResult<redis::Client> {
        match self {
            Target::Url(url) => redis::Client::open(url.as_str()),
            Target::Sentinel {
                sentinels, master, ..
            } => redis::Client::open(named_primary(sentinels, master).await?),
        }
    }
}

/// The longest wait for one sentinel's answer.
const ASK_SENTINEL: Duration = Duration::from_millis(500);

/// The primary the sentinels name, by the newest configuration among those that answer
/// (`config-epoch`, which each failover raises): while a failover spreads, a sentinel
/// that has not heard of it yet still names the old primary, which still says it is one.
/// Reached with the first URL's credentials and TLS.
async fn named_primary(sentinels: &[String], master: &str) -> RedisResult<ConnectionInfo> {
    let asked = sentinels
        .iter()
        .map(|url| tokio::time::timeout(ASK_SENTINEL, ask(url, master)));
    let answers = futures_util::future::join_all(asked).await;
    let newest = answers
        .into_iter()
        .filter_map(|answer| answer.ok()?.ok())
        .max_by_key(|(epoch, ..)| *epoch);
    let Some((_, host, port)) = newest else {
        let none = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "no sentinel answered",
        );
        return Err(none.into());
    };
    let first = sentinels
        .first()
        .map(String::as_str)
        .unwrap_or_default()
        .into_connection_info()?;
    let port =
        u16::try_from(port).map_err(|_| std::io::Error::other("a sentinel named a bad port"))?;
    let addr = match first.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Ok(first.set_addr(addr).set_tcp_settings(no_delay()))
}

/// `(config-epoch, host, port)` of the primary one sentinel names `master`.
async fn ask(sentinel: &str, master: &str) -> RedisResult<(u64, String, u64)> {
    let mut conn = redis::Client::open(sentinel)?
        .get_multiplexed_async_connection()
        .await?;
    let fields: HashMap<String, String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(master)
        .query_async(&mut conn)
        .await?;
    let field = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
    match (field("config-epoch"), fields.get("ip"), field("port")) {
        (Some(epoch), Some(host), Some(port)) => Ok((epoch, host.clone(), port)),
        _ => Err(std::io::Error::other("a sentinel reply without the primary").into()),
    }
}

/// No Nagle: several requests share a multiplexed connection, and a command written while
/// another awaits its answer must not wait for that answer's acknowledgement.
fn no_delay() -> TcpSettings {
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

/// How often the sentinels are asked which primary they name.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Asks the sentinels which primary they name, every [`FOLLOW_EVERY`], for as long as the
/// runtime lives, and records each change (see the module's notes).
pub(super) fn follow_the_primary(target: Arc<Target>) {
    if target.switches().is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut named: Option<String> = None;
        loop {
            if let Ok(primary) = target.primary().await {
                let now = primary.get_connection_info().addr().to_string();
                if named.as_ref().is_some_and(|before| *before != now)
                    && let Some(switches) = target.switches()
                {
                    tracing::warn!(primary = %now, "the sentinels name another primary");
                    switches.last.record();
                    switches.changed.notify_waiters();
                }
                named = Some(now);
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    });
}
