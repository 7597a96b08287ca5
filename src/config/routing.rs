use serde::Deserialize;

use super::ConfigError;

/// `[routing]`: how upstream calls are timed, retried, and cut off when a model is sick.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// Whole-answer bound of one non-streaming attempt.
    pub attempt_timeout_ms: u64,
    /// Non-streaming, while a fallback remains: from sending the request to the response
    /// headers. A silent model is left for the fallback long before `attempt_timeout_ms`.
    pub first_byte_timeout_ms: u64,
    /// Streaming: from sending the request to the first piece of the answer.
    pub first_token_timeout_ms: u64,
    /// Streaming: longest silence between two chunks once the answer flows.
    pub idle_timeout_ms: u64,
    /// Retries of one model after its first attempt (5xx, resets, 429; a timeout is retried
    /// only on the last model of the chain).
    pub max_retries: u32,
    /// Full-jitter backoff: the n-th retry waits up to `min(max, base · 2ⁿ)`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Retries may be at most this fraction of the requests in the budget window …
    pub retry_budget_ratio: f64,
    /// … plus this many, so a quiet instance can still retry.
    pub retry_budget_min: u32,
    pub retry_budget_window_seconds: u64,
    /// Circuit breaker: outcomes are judged over this rolling window …
    pub breaker_window_seconds: u64,
    /// … once it holds at least this many …
    pub breaker_min_requests: u32,
    /// … and the breaker opens when this fraction of them failed.
    pub breaker_failure_rate: f64,
    /// It also opens after this many failures in a row, however few the window holds.
    pub breaker_consecutive_failures: u32,
    /// First cooldown of an open breaker; each failed probe doubles it up to the max.
    pub breaker_cooldown_ms: u64,
    pub breaker_max_cooldown_ms: u64,
    /// Bound on the single half-open probe, so a hung probe cannot hold the breaker.
    pub probe_timeout_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            attempt_timeout_ms: 60_000,
            // A silent primary costs 10 s before its fallback is asked: well inside the
            // 30 s most clients wait.
            first_byte_timeout_ms: 10_000,
            first_token_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_retries: 2,
            backoff_base_ms: 250,
            backoff_max_ms: 4_000,
            retry_budget_ratio: 0.2,
            retry_budget_min: 10,
            retry_budget_window_seconds: 10,
            breaker_window_seconds: 30,
            breaker_min_requests: 10,
            breaker_failure_rate: 0.5,
            breaker_consecutive_failures: 5,
            breaker_cooldown_ms: 5_000,
            breaker_max_cooldown_ms: 60_000,
            probe_timeout_ms: 10_000,
        }
    }
}

impl RoutingSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("attempt_timeout_ms", self.attempt_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("first_token_timeout_ms", self.first_token_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("probe_timeout_ms", self.probe_timeout_ms),
            ("breaker_cooldown_ms", self.breaker_cooldown_ms),
            ("breaker_window_seconds", self.breaker_window_seconds),
            (
                "breaker_consecutive_failures",
                u64::from(self.breaker_consecutive_failures),
            ),
            (
                "retry_budget_window_seconds",
                self.retry_budget_window_seconds,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError(format!("routing.{name}: must be at least 1")));
        }
        if !(0.0..=1.0).contains(&self.retry_budget_ratio) {
            return Err(ConfigError(
                "routing.retry_budget_ratio: between 0 and 1".into(),
            ));
        }
        if !(self.breaker_failure_rate > 0.0 && self.breaker_failure_rate <= 1.0) {
            return Err(ConfigError(
                "routing.breaker_failure_rate: above 0, at most 1".into(),
            ));
        }
        if self.breaker_min_requests == 0 {
            return Err(ConfigError(
                "routing.breaker_min_requests: must be at least 1".into(),
            ));
        }
        if self.breaker_max_cooldown_ms < self.breaker_cooldown_ms
            || self.backoff_max_ms < self.backoff_base_ms
        {
            return Err(ConfigError(
                "routing: a *_max_* setting is below its base value".into(),
            ));
        }
        Ok(())
    }
}
