//! Which requests may be sent again when their connection broke under them.
//!
//! A connection that fails on the wire (Redis restarted, say) leaves it unknown whether
//! the request was sent and run: the error is the same either way. So only a request that
//! has the same effect run twice as once is sent again (see `RedisStore::exec`).

use redis::Cmd;

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
