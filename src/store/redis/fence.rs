//! Fences: scripts that must not take effect once the service stopped waiting for them.
//!
//! A command whose answer did not come in time is not cancelled by giving up on it: Redis
//! may be stalled (a fork, a slow script, `DEBUG SLEEP`) with the command already in its
//! socket buffer, and runs it when it wakes, even if the connection was closed meanwhile.
//! For a send's admission that would take a lease nobody holds; for its commit, store
//! turns the client was told (503) were not stored, and a retry would store them twice.
//!
//! So `admit.lua` and `commit.lua` get a deadline in Redis' own clock (`TIME`), and do
//! nothing once it has passed. The service waits for their answer half a command timeout
//! longer than the deadline, so that a script which ran in time is normally heard of: a
//! 503 then means nothing was stored, and never will be. (What remains: a script that ran
//! just before its deadline, after which Redis stalled before sending the answer — the
//! service cannot learn the outcome then, and still answers 503.)
//!
//! The deadline is computed in Redis' clock, not ours: each admission answers with Redis'
//! time, and the service keeps the offset from its own monotonic clock, measured when the
//! answer arrived (so the estimate lags Redis by at most one round trip: fences err early).
//! Two hosts' wall clocks never have to agree.

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, Instant},
};

use redis::FromRedisValue;

use super::{Lua, RedisStore};
use crate::store::StoreResult;

/// Redis' clock as seen from here: an offset from a monotonic clock of our own.
pub(crate) struct RedisClock {
    base: Instant,
    /// Redis' time (ms since the epoch) minus `base.elapsed()` (ms), when last observed.
    offset_ms: AtomicI64,
}

impl Default for RedisClock {
    fn default() -> Self {
        // Until Redis was heard from (the preparation reads its TIME), our wall clock.
        let wall = chrono::Utc::now().timestamp_millis();
        RedisClock {
            base: Instant::now(),
            offset_ms: AtomicI64::new(wall),
        }
    }
}

impl RedisClock {
    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Redis' time now, as estimated from the last observation.
    pub(crate) fn now_ms(&self) -> i64 {
        self.elapsed_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Redis said it was `redis_ms` at a moment no later than now.
    pub(crate) fn observe(&self, redis_ms: i64) {
        self.offset_ms
            .store(redis_ms - self.elapsed_ms(), Ordering::Relaxed);
    }
}

impl RedisStore {
    /// How much longer than a fence the service waits for a fenced script's answer.
    fn fence_grace(&self) -> Duration {
        self.command_timeout / 2
    }

    /// Runs a fenced script: its deadline (Redis' clock, ms) goes first in its arguments.
    pub(crate) async fn fenced_script<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> StoreResult<T> {
        let timeout_ms = i64::try_from(self.command_timeout.as_millis()).unwrap_or(i64::MAX);
        let fence = self.clock.now_ms().saturating_add(timeout_ms).to_string();
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(fence.as_str());
        all.extend_from_slice(args);
        let wait = self.command_timeout + self.fence_grace();
        self.script_within(lua, keys, &all, wait).await
    }
}
