//! Redis Sentinel (`store.mode = "sentinel"`): which primary new connections go to.
//!
//! Each new pooled connection goes to the primary the sentinels name at that moment. The
//! sentinels are also asked every half second ([`follow_the_primary`]); once they name
//! another primary, every connection made before is dropped at its next checkout (see
//! `pool`), and the expired-session listener moves (see `expiry`). That matters: after a
//! failover the old primary may accept writes for a second or more until the sentinels
//! demote it, and what it takes then is lost when it resyncs from the new one. A
//! connection that meets a `READONLY` is dropped too (see `Checkout` in the parent
//! module).

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult};

use super::pool::{Breaks, no_delay};

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
    /// The moment, kept as the pools keep the last broken connection's.
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

    pub(super) fn switches(&self) -> Option<&Switches> {
        match self {
            Target::Url(_) => None,
            Target::Sentinel { switches, .. } => Some(switches),
        }
    }

    /// Whether a connection made `age` ago is to a primary the sentinels no longer name.
    pub(super) fn moved_since(&self, age: Duration) -> bool {
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
