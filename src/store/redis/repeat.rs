//! Which requests may be sent again, and when.
//!
//! A connection that fails on the wire (Redis restarted, say) leaves it unknown whether
//! the request was sent and run: the error is the same either way. So only a request that
//! has the same effect run twice as once is sent again (see `RedisStore::exec`).
//!
//! Some answers prove that a request did not run, and that the primary is moving (a
//! cluster redirect, a failover under way): behind sentinels or on a cluster, any request
//! is sent again after them, with a short growing pause, until its deadline.

use std::time::Duration;

use redis::{Cmd, RedisError};

use super::Request;

/// Commands that only read (or, like `SCRIPT LOAD`, have the same effect however often
/// they run): sent twice, they answer as once.
fn reads_only(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes.to_ascii_uppercase()),
        _ => None,
    });
    let name = args.next().unwrap_or_default();
    match name.as_slice() {
        b"SCRIPT" => args.next().is_some_and(|sub| sub == b"LOAD"),
        b"GET" | b"MGET" | b"HGET" | b"HMGET" | b"HGETALL" | b"HEXISTS" | b"HLEN" | b"LRANGE"
        | b"LLEN" | b"LINDEX" | b"EXISTS" | b"PTTL" | b"TTL" | b"TYPE" | b"ZRANGE"
        | b"ZRANGEBYSCORE" | b"ZCARD" | b"ZSCORE" | b"SCAN" | b"HSCAN" | b"ZSCAN" | b"TIME"
        | b"PING" | b"ROLE" | b"INFO" => true,
        _ => false,
    }
}

impl Request<'_> {
    /// Whether sending it again cannot change what it did. Never a write that may have
    /// been applied: `commit.lua`, for one, is fenced against running late but not against
    /// running twice — a first run whose answer was lost with its connection stored the
    /// turns and gave the lease back, so a second would find the lease gone and report the
    /// turns as not stored, and the client's retry would store them twice.
    pub(super) fn repeatable(self) -> bool {
        match self {
            Request::Cmd(cmd) => reads_only(cmd),
            Request::Pipe(pipe) => pipe.cmd_iter().all(reads_only),
            Request::Repeatable(_) => true,
        }
    }
}

/// The first pause before sending a request again after such an answer; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(200);

/// Whether `err` proves the command was not run, and the primary may take it later:
/// a redirect, a cluster between primaries, no connection to the node (yet), or a node
/// that refused the connection.
pub(super) fn retry_later(err: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind::*};
    matches!(
        err.kind(),
        ErrorKind::Server(
            Moved | Ask | TryAgain | ClusterDown | MasterDown | BusyLoading | ReadOnly
        ) | ErrorKind::ClusterConnectionNotFound
    ) || err.is_connection_refusal()
}

/// The pause before retry number `attempt` (from 0).
pub(super) fn pause(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use redis::Value;

    use super::*;

    fn error_reply(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(err)) => err.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn redirects_and_a_failover_are_retried_and_other_errors_are_not() {
        for line in [
            "MOVED 3999 127.0.0.1:7001",
            "ASK 3999 127.0.0.1:7001",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "READONLY You can't write against a read only replica.",
            "LOADING Redis is loading the dataset in memory",
        ] {
            assert!(retry_later(&error_reply(line)), "{line}");
        }
        for line in [
            "ERR unknown command",
            "OOM command not allowed",
            "NOSCRIPT No matching script",
        ] {
            assert!(!retry_later(&error_reply(line)), "{line}");
        }
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(retry_later(&refused));
        let slow = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(!retry_later(&slow));
    }

    #[test]
    fn the_pause_grows_and_stays_bounded() {
        assert!(pause(0) < pause(3));
        assert_eq!(pause(20), RETRY_MAX);
    }
}
