//! The Redis store.
//!
//! Key layout (prefix `sr` by default). Session ids are per tenant: a session's keys carry
//! `{<scope>:<id>}`, its tenant's [`tenant_scope`](crate::domain::scope::tenant_scope) (32
//! hex digits) and its id. That is the Redis Cluster hash tag, so every key of one session
//! lives in one slot and a Lua script may touch them all atomically; two tenants' sessions
//! of the same id are two unrelated sets of keys.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sr:{scope:id}:meta` | hash | `cfg` (JSON), `rev`, `ttl` (ms), `last` (ms), `n`, `pt`, `ct`, `cost`, `uidx`, `gen` (incarnation), `uidx_until` (ms) |
//! | `sr:{scope:id}:turns` | list | one JSON turn per element, oldest first |
//! | `sr:{scope:id}:lease` | string | the token of the send in flight (own short TTL) |
//! | `sr:{scope:id}:idem` | hash | idempotency key → record |
//! | `sr:{scope:id}:ctok` | hash | client token digest → grant (see `keys.rs`) |
//! | `sr:user:<digest>` | sorted set | a user's sessions (`<id>:<gen>`, see `users.rs`) scored by creation time |
//! | `sr:schema_version` | string | the applied key-layout migration |
//!
//! Up to layout 3 a session's tag was `{id}` alone; migration 4 (`migrations/0004_tenant_ids.lua`)
//! moves such sessions to their tenant's tag.
//!
//! Until [`RedisStore::prepare`] has succeeded every call is refused (`readiness.rs`);
//! admission and commit are fenced against running late (`fence.rs`). On a Redis Cluster
//! the same keys and scripts are used; `cluster.rs` says what differs.

use std::{sync::Arc, time::Duration};

use deadpool::managed::{Object, PoolConfig, QueueMode, Timeouts};
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind, Value,
    aio::ConnectionLike,
};
use tracing::Instrument;

use super::{Refusal, StoreError, StoreResult, user_digest};
use crate::{
    config::{StoreMode, StoreSettings},
    domain::{
        scope::SessionKey,
        session::{SessionConfig, StoredSession, UsageTotals},
    },
    per_thread::PerThread,
};

/// A Lua script and its SHA1, for EVALSHA. Declare one with [`lua!`] next to the code
/// that runs it; [`RedisStore::script`] loads it into Redis on first use.
pub(crate) struct Lua {
    pub source: &'static str,
    pub hash: String,
    /// Running it twice has the effect of running it once, so that a call whose connection
    /// broke may be sent again (see [`RedisStore::exec`]).
    pub repeatable: bool,
}

impl Lua {
    pub(crate) fn new(source: &'static str, repeatable: bool) -> Lua {
        Lua {
            source,
            hash: redis::Script::new(source).get_hash().to_string(),
            repeatable,
        }
    }
}

/// `lua!(pub(crate) NAME, "lua/file.lua")` declares a lazily hashed script embedded at
/// compile time; `lua!(pub(crate) NAME, "lua/file.lua", repeatable)` one that may run
/// twice for once (see [`Lua::repeatable`]).
macro_rules! lua {
    ($vis:vis $name:ident, $file:literal) => {
        $vis static $name: std::sync::LazyLock<$crate::store::redis::Lua> =
            std::sync::LazyLock::new(|| $crate::store::redis::Lua::new(include_str!($file), false));
    };
    ($vis:vis $name:ident, $file:literal, repeatable) => {
        $vis static $name: std::sync::LazyLock<$crate::store::redis::Lua> =
            std::sync::LazyLock::new(|| $crate::store::redis::Lua::new(include_str!($file), true));
    };
}
#[allow(unused_imports)] // used by the feature stores beside this module
pub(crate) use lua;

mod scripts {
    lua!(pub(super) CREATE, "lua/create.lua");
    lua!(pub(super) TOUCH, "lua/touch.lua", repeatable);
    lua!(pub(super) UPDATE, "lua/update.lua");
    lua!(pub(super) DELETE, "lua/delete.lua");
    // A repeated admission finds the lease and mark it took under the same token, and
    // answers as it did (see admit.lua).
    lua!(pub(super) ADMIT, "lua/admit.lua", repeatable);
    lua!(pub(super) RELEASE, "lua/release.lua", repeatable);
    lua!(pub(super) RENEW, "lua/renew.lua", repeatable);
    lua!(pub(super) COMMIT, "lua/commit.lua");
    lua!(pub(super) USER_INDEX, "lua/user_index.lua", repeatable);
    lua!(pub(super) INDEX_COVERS, "lua/index_covers.lua", repeatable);
    lua!(pub(super) REPLACE_TURNS, "lua/replace_turns.lua");
    pub(super) static ALL: [&std::sync::LazyLock<super::Lua>; 11] = [
        &CREATE,
        &TOUCH,
        &UPDATE,
        &DELETE,
        &ADMIT,
        &RELEASE,
        &RENEW,
        &COMMIT,
        &USER_INDEX,
        &INDEX_COVERS,
        &REPLACE_TURNS,
    ];
}

mod cluster;
mod compaction;
mod expiry;
mod fence;
mod import;
mod keys;
mod metering;
mod pool;
mod readiness;
mod repeat;
mod sentinel;
mod sessions;
mod users;

use cluster::Cluster;
pub use expiry::count_expired_sessions;
use fence::RedisClock;
use pool::{Breaks, Connection, Pool};
use readiness::Readiness;
use sentinel::Target;

/// The keys of one session, in the order the scripts take them.
pub(crate) const SESSION_PARTS: [&str; 5] = ["meta", "turns", "lease", "idem", "ctok"];

/// Cheap to clone: the connections, the readiness and the clock are shared.
#[derive(Clone)]
pub struct RedisStore {
    nodes: Nodes,
    prefix: String,
    command_timeout: Duration,
    pool_timeout: Duration,
    readiness: Arc<Readiness>,
    clock: Arc<RedisClock>,
    breaks: Arc<Breaks>,
}

/// A pooled connection that is thrown away, not returned to the pool, unless the call
/// on it got an answer from Redis. A connection abandoned mid-call (timeout or cancelled
/// request) may still deliver the old reply, which must never reach the next borrower;
/// one that failed on the wire is broken. Either way the pool opens a fresh one.
struct Checkout {
    conn: Option<Connection>,
    healthy: bool,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.healthy
            && let Some(conn) = self.conn.take()
        {
            drop(Object::take(conn));
        }
    }
}

/// What the store is connected to.
#[derive(Clone)]
enum Nodes {
    /// One primary (named by its URL or by sentinels), through a pool of connections per
    /// thread.
    Single(Arc<PerThread<Pool>>, Arc<Target>),
    Cluster(Arc<Cluster>),
}

impl Nodes {
    /// Whether a failover may move the primary under the store: then the answers that
    /// prove a request did not run are retried (see `repeat`).
    fn follows_failovers(&self) -> bool {
        match self {
            Nodes::Single(_, target) => target.switches().is_some(),
            Nodes::Cluster(_) => true,
        }
    }
}

#[derive(Clone, Copy)]
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
    /// EVALSHA of a script that may run twice for once ([`Lua::repeatable`]).
    Repeatable(&'a Cmd),
}

impl<'a> Request<'a> {
    async fn send<T: FromRedisValue>(
        self,
        conn: &mut impl ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self {
            Request::Cmd(cmd) | Request::Repeatable(cmd) => cmd.query_async::<T>(conn).await,
            Request::Pipe(pipe) => pipe.query_async::<T>(conn).await,
        }
    }
}

/// A pipeline of calls of one script (and any plain commands among them), for
/// [`RedisStore::run_scripts`].
pub(crate) struct ScriptBatch {
    lua: &'static Lua,
    /// `SCRIPT LOAD` first, then the calls.
    pipe: Pipeline,
}

impl ScriptBatch {
    pub(crate) fn new(lua: &'static Lua) -> ScriptBatch {
        ScriptBatch {
            lua,
            pipe: RedisStore::script_pipeline(lua),
        }
    }

    /// Adds a call on `keys`; its arguments follow on the returned command.
    pub(crate) fn call(&mut self, keys: &[String]) -> &mut Pipeline {
        RedisStore::evalsha(&mut self.pipe, self.lua, keys)
    }

    /// Adds a plain command.
    pub(crate) fn cmd(&mut self, name: &str) -> &mut Pipeline {
        self.pipe.cmd(name)
    }

    fn calls(&self) -> impl Iterator<Item = &Cmd> {
        self.pipe.cmd_iter().skip(1)
    }
}

impl RedisStore {
    /// The store on `settings.redis_url`: one server, the primary its sentinels name, or
    /// the cluster its nodes belong to. Nothing is connected yet: a bad URL fails here,
    /// an unreachable Redis on first use.
    pub async fn connect(settings: &StoreSettings) -> StoreResult<RedisStore> {
        let breaks = Arc::new(Breaks::default());
        let one_primary = |target: Target| -> StoreResult<Nodes> {
            let target = Arc::new(target);
            let pools = Self::pools(settings, target.clone(), breaks.clone())?;
            sentinel::follow_the_primary(target.clone());
            Ok(Nodes::Single(Arc::new(pools), target))
        };
        let nodes = match settings.mode {
            StoreMode::Single => {
                one_primary(Target::Url(settings.redis_url.clone().unwrap_or_default()))?
            }
            StoreMode::Sentinel => one_primary(Target::sentinel(
                settings.redis_urls().into_iter().map(Into::into).collect(),
                settings.sentinel_master.clone(),
            ))?,
            StoreMode::Cluster => {
                Nodes::Cluster(Arc::new(Cluster::new(settings).map_err(unavailable)?))
            }
        };
        Ok(RedisStore {
            nodes,
            prefix: settings.key_prefix.clone(),
            command_timeout: Duration::from_millis(settings.command_timeout_ms),
            pool_timeout: Duration::from_millis(settings.pool_timeout_ms),
            readiness: Arc::default(),
            clock: Arc::default(),
            breaks,
        })
    }

    fn pools(
        settings: &StoreSettings,
        target: Arc<Target>,
        breaks: Arc<Breaks>,
    ) -> StoreResult<PerThread<Pool>> {
        let timeout = Duration::from_millis(settings.pool_timeout_ms);
        let config = PoolConfig {
            max_size: settings.pool_size,
            timeouts: Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            // The connection used last is handed out next: it is warm, skips the PING
            // (see `pool`), and spare ones stay idle instead of taking turns.
            queue_mode: QueueMode::Lifo,
        };
        pool::per_thread(target, config, breaks).map_err(unavailable)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key under hash tag `tag`: `<prefix>:{<tag>}:<part>`.
    pub(crate) fn key(&self, tag: &str, part: &str) -> String {
        format!("{}:{{{tag}}}:{part}", self.prefix)
    }

    /// A key of a session: `<prefix>:{<scope>:<id>}:<part>`.
    pub(crate) fn session_key(&self, at: &SessionKey, part: &str) -> String {
        format!("{}:{{{}:{}}}:{part}", self.prefix, at.scope(), at.id())
    }

    fn session_keys(&self, at: &SessionKey) -> [String; 5] {
        SESSION_PARTS.map(|part| self.session_key(at, part))
    }

    fn user_key(&self, tenant: &str, user_id: &str) -> String {
        format!("{}:user:{}", self.prefix, user_digest(tenant, user_id))
    }

    /// A pipeline that runs `lua` once per [`RedisStore::evalsha`] added to it, all in one
    /// round trip. The script is loaded first in the same pipeline: a Redis restarted since
    /// the last call has forgotten it, and a NOSCRIPT inside a pipeline cannot be retried
    /// alone. Each call answers for itself (`Value::ServerError` where it failed).
    fn script_pipeline(lua: &Lua) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("SCRIPT").arg("LOAD").arg(lua.source).ignore();
        pipe
    }

    fn evalsha<'p>(pipe: &'p mut Pipeline, lua: &Lua, keys: &[String]) -> &'p mut Pipeline {
        pipe.cmd("EVALSHA").arg(&lua.hash).arg(keys.len()).arg(keys)
    }

    /// Runs one request within `timeout`; a connection that missed it is discarded.
    /// The outer error is the store's; the inner one is Redis' own answer. Not gated by
    /// readiness: the preparation itself runs through here.
    ///
    /// A connection found closed or reset (Redis restarted since it was opened) is
    /// recorded, so that the pools check the others before handing them out (see `pool`),
    /// and a request that may run twice for once is sent again, once, on a checked or new
    /// connection, within what is left of `timeout`. Whether the first was sent cannot be
    /// told from the error, so any other request fails as it did.
    ///
    /// On a cluster or behind sentinels, an answer that proves the request did not run (a
    /// redirect, a failover under way) is retried until `timeout`, then is a 503 (see
    /// `repeat`).
    async fn exec<T: FromRedisValue>(
        &self,
        request: Request<'_>,
        timeout: Duration,
    ) -> StoreResult<redis::RedisResult<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut resent, mut redirects) = (false, 0);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.attempt(request, left).await? {
                Err(err) if err.is_connection_dropped() && !resent => {
                    self.breaks.record();
                    if !request.repeatable() {
                        return Ok(Err(err));
                    }
                    tracing::debug!(%err, "a redis connection broke; sending again on another");
                    resent = true;
                }
                Err(err) if self.nodes.follows_failovers() && repeat::retry_later(&err) => {
                    let pause = repeat::pause(redirects);
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(unavailable(format!("redis failover: {err}")));
                    }
                    tracing::debug!(%err, "the redis primary is moving; trying again");
                    redirects += 1;
                    tokio::time::sleep(pause).await;
                }
                other => return Ok(other),
            }
        }
    }

    /// One try of [`RedisStore::exec`], on one connection.
    async fn attempt<T: FromRedisValue>(
        &self,
        request: Request<'_>,
        timeout: Duration,
    ) -> StoreResult<redis::RedisResult<T>> {
        let not_sent = |err: String| StoreError::NotSent(err);
        let pools = match &self.nodes {
            Nodes::Single(pools, _) => pools,
            Nodes::Cluster(cluster) => {
                let mut conn = cluster
                    .connection()
                    .await
                    .map_err(|e| not_sent(e.to_string()))?;
                return timed(request.send(&mut conn), timeout).await;
            }
        };
        // Checkout has its own bound: recycling PINGs idle connections, and a stalled
        // Redis would otherwise make the pool try them one after another.
        let conn = tokio::time::timeout(self.pool_timeout, pools.get().get())
            .await
            .map_err(|_| not_sent("no redis connection in time".into()))?
            .map_err(|err| not_sent(err.to_string()))?;
        let mut checkout = Checkout {
            conn: Some(conn),
            healthy: false,
        };
        let Some(conn) = checkout.conn.as_mut() else {
            return Err(unavailable("no connection"));
        };
        let conn: &mut redis::aio::MultiplexedConnection = conn;
        let result = timed(request.send(conn), timeout).await?;
        // An error reply (with its code: ERR, OOM, …) came over a working connection;
        // anything else may have broken it. READONLY says the connection is to a replica
        // now (a failover demoted its server): a new one goes where the primary is.
        checkout.healthy = match &result {
            Ok(_) => true,
            Err(err) => {
                err.code().is_some() && err.kind() != ErrorKind::Server(ServerErrorKind::ReadOnly)
            }
        };
        Ok(result)
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        self.readiness.gate()?;
        self.exec(Request::Cmd(cmd), self.command_timeout)
            .await?
            .map_err(classify)
    }

    /// A pipeline of plain commands (none ignored), answered as one array. On a cluster it
    /// is one pipeline per slot, sent at once.
    pub(crate) async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> StoreResult<T> {
        self.readiness.gate()?;
        match self.nodes {
            Nodes::Single(..) => self
                .exec(Request::Pipe(pipe), self.command_timeout)
                .await?
                .map_err(classify),
            Nodes::Cluster(_) => {
                let values = self.per_slot(pipe.cmd_iter(), redis::pipe).await?;
                redis::from_redis_value(Value::Array(values))
                    .map_err(|e| StoreError::Corrupt(format!("reply: {e}")))
            }
        }
    }

    /// Runs every call of `batch` in one round trip (one per slot on a cluster). Each
    /// call answers for itself (`Value::ServerError` where it failed).
    pub(crate) async fn run_scripts(&self, batch: &ScriptBatch) -> StoreResult<Vec<Value>> {
        self.readiness.gate()?;
        match self.nodes {
            Nodes::Single(..) => self
                .exec(Request::Pipe(&batch.pipe), self.command_timeout)
                .await?
                .map_err(classify),
            Nodes::Cluster(_) => {
                self.per_slot(batch.calls(), || Self::script_pipeline(batch.lua))
                    .await
            }
        }
    }

    /// `commands` as one pipeline per slot, each begun by `start()`, all sent at once;
    /// the answers in the commands' order.
    async fn per_slot<'c>(
        &self,
        commands: impl Iterator<Item = &'c Cmd>,
        start: impl Fn() -> Pipeline,
    ) -> StoreResult<Vec<Value>> {
        let groups = cluster::by_slot(commands, start);
        let sent = groups
            .iter()
            .map(|(_, pipe)| self.exec::<Vec<Value>>(Request::Pipe(pipe), self.command_timeout));
        let answers = futures_util::future::join_all(sent).await;
        let count = groups.iter().map(|(indices, _)| indices.len()).sum();
        let mut values = vec![Value::Nil; count];
        for ((indices, _), answer) in groups.iter().zip(answers) {
            let answer = answer?.map_err(classify)?;
            if answer.len() != indices.len() {
                return Err(StoreError::Corrupt("pipeline answer".into()));
            }
            for (&i, value) in indices.iter().zip(answer) {
                values[i] = value;
            }
        }
        Ok(values)
    }

    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> StoreResult<T> {
        self.script_within(lua, keys, args, self.command_timeout)
            .await
    }

    /// Runs a script by hash within `timeout`; if Redis does not know it (first use, a
    /// restart, a replica promoted by a failover), runs it by its source, which also
    /// loads it on that node.
    async fn script_within<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&str],
        timeout: Duration,
    ) -> StoreResult<T> {
        self.readiness.gate()?;
        let call = |name: &str, script: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        let request = |cmd| match lua.repeatable {
            true => Request::Repeatable(cmd),
            false => Request::Cmd(cmd),
        };
        let by_hash = call("EVALSHA", &lua.hash);
        match self.exec(request(&by_hash), timeout).await? {
            Err(err) if is_noscript(&err) => {
                let by_source = call("EVAL", lua.source);
                self.exec(request(&by_source), timeout)
                    .await?
                    .map_err(classify)
            }
            other => other.map_err(classify),
        }
    }

    fn parse_session(
        &self,
        id: &str,
        fields: Vec<(String, Vec<u8>)>,
    ) -> StoreResult<Option<StoredSession>> {
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
        };
        let number = |name: &str| -> u64 {
            get(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let config: SessionConfig = serde_json::from_slice(get("cfg").unwrap_or_default())
            .map_err(|e| StoreError::Corrupt(format!("session config: {e}")))?;
        Ok(Some(StoredSession {
            id: id.to_string(),
            config,
            revision: number("rev"),
            last_activity_ms: i64::try_from(number("last")).unwrap_or(0),
            message_count: number("n"),
            usage: UsageTotals {
                prompt_tokens: number("pt"),
                completion_tokens: number("ct"),
                cost_nano_usd: number("cost"),
            },
            summary: get("sum")
                .map(serde_json::from_slice)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("session summary: {e}")))?,
            summary_generation: number("sgen"),
        }))
    }
}

/// `call` within `timeout`, timed for the store's metrics and traces.
async fn timed<T>(
    call: impl Future<Output = redis::RedisResult<T>>,
    timeout: Duration,
) -> StoreResult<redis::RedisResult<T>> {
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("redis");
    let result = tokio::time::timeout(timeout, call)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::trace!(?elapsed, "redis call answered"));
    crate::metrics::record_store(elapsed, !matches!(result, Ok(Ok(_))));
    result.map_err(|_| unavailable("redis command timed out"))
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Redis refusing a command we built (a bug) is not an outage: it must not answer 503
/// and look like a retryable condition. Refusing writes (a replica, out of memory) is
/// one, of its own kind: nothing was written, and the operator must hear why.
fn classify(err: RedisError) -> StoreError {
    if err.code() == Some("OOM") {
        return StoreError::Refused(Refusal::OutOfMemory);
    }
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::ReadOnly) => StoreError::Refused(Refusal::ReadOnly),
        ErrorKind::Parse
        | ErrorKind::UnexpectedReturnType
        | ErrorKind::Server(
            ServerErrorKind::ResponseError
            | ServerErrorKind::ExecAbort
            | ServerErrorKind::CrossSlot,
        ) => StoreError::Corrupt(format!("redis refused a command: {err}")),
        _ => unavailable(err),
    }
}

fn is_noscript(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A text reply (or a number) as a string; anything else, nil included, as "".
pub(super) fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// Records are stored as JSON; failing to encode one is a bug, not an outage.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
