//! The failure policy: what an upstream error means for the request (stop, next model,
//! wait and retry) and for the model's breaker; how long to back off; and the retry budget
//! that keeps retries from multiplying the load on an upstream that is already struggling.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::{ProviderError, StatusKind, breaker::Verdict, window::Window};

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Every model would fail alike (our request's fault) or the answer was refused.
    Stop,
    /// This model cannot serve the request, another may: move on at once.
    NextModel,
    /// Rate limited; retry after the given wait if it fits the deadline, else move on.
    RetryAfter(Duration),
    /// Worth retrying on the same model after a backoff.
    Backoff,
}

pub fn classify(err: &ProviderError) -> (Next, Verdict) {
    use ProviderError::{Connect, Protocol, Status, StreamCut, Timeout, Unsupported};
    match err {
        // Nothing was sent; a model of another provider may honour the parameter.
        Unsupported { .. } => (Next::NextModel, Verdict::Healthy),
        Status { kind, .. } if *kind == StatusKind::ContentFilter => (Next::Stop, Verdict::Healthy),
        // A larger-context model may take what this one cannot.
        Status { kind, .. } if *kind == StatusKind::ContextLength => {
            (Next::NextModel, Verdict::Healthy)
        }
        // Bad provider key or account: no retry fixes it, and the breaker opens at once.
        Status {
            status: 401..=403, ..
        } => (Next::NextModel, Verdict::Trip),
        Status {
            status: 429,
            retry_after,
            ..
        } => match retry_after {
            Some(wait) => (Next::RetryAfter(*wait), Verdict::Unhealthy),
            None => (Next::NextModel, Verdict::Unhealthy),
        },
        Status {
            status: 408 | 425 | 500..,
            ..
        } => (Next::Backoff, Verdict::Unhealthy),
        // 400, 404, 422 and the rest of 4xx: our request is at fault, on any model.
        Status { .. } => (Next::Stop, Verdict::Healthy),
        Connect(_) | Timeout | Protocol(_) | StreamCut => (Next::Backoff, Verdict::Unhealthy),
    }
}

/// A short machine-readable reason for a failed attempt, as reported to clients.
pub fn reason(err: &ProviderError) -> &'static str {
    match err {
        ProviderError::Status { kind, status, .. } => match (kind, status) {
            (StatusKind::ContentFilter, _) => "content_filter",
            (StatusKind::ContextLength, _) => "context_length",
            (_, 401..=403) => "upstream_auth",
            (_, 429) => "rate_limited",
            (_, 500..) => "server_error",
            _ => "rejected",
        },
        ProviderError::Connect(_) => "connect",
        ProviderError::Timeout => "timeout",
        ProviderError::Protocol(_) => "malformed_response",
        ProviderError::StreamCut => "stream_cut",
        ProviderError::Unsupported { .. } => "unsupported",
    }
}

/// Capped exponential backoff with full jitter: uniformly in `[0, min(cap, base · 2ⁿ)]` for
/// the n-th retry (from 0). `unit` is the random draw in `[0, 1)`, passed in for tests.
pub fn backoff(retry: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(2u32.saturating_pow(retry)).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Retries may be at most `ratio` of the requests seen in the window, plus `min`. Spent
/// per instance: when an upstream fails for everyone, retries stay a small addition to the
/// traffic instead of multiplying it.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min: u32,
    window: Mutex<Window>,
}

const REQUESTS: usize = 0;
const RETRIES: usize = 1;

impl RetryBudget {
    pub fn new(ratio: f64, min: u32, span: Duration) -> RetryBudget {
        RetryBudget {
            ratio,
            min,
            window: Mutex::new(Window::new(span)),
        }
    }

    pub fn record_request(&self, now: Instant) {
        self.lock().add(now, REQUESTS);
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut window = self.lock();
        let [requests, retries] = window.totals(now);
        let allowed = f64::from(self.min) + self.ratio * f64::from(requests);
        if f64::from(retries) < allowed {
            window.add(now, RETRIES);
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn status(status: u16, kind: StatusKind, retry_after: Option<u64>) -> ProviderError {
        ProviderError::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            kind,
            message: String::new(),
        }
    }

    #[test]
    fn classifies_each_fault_of_the_policy() {
        use StatusKind::{ContentFilter, ContextLength, Other};
        let cases = [
            (status(400, Other, None), Next::Stop, Verdict::Healthy),
            (status(404, Other, None), Next::Stop, Verdict::Healthy),
            (status(422, Other, None), Next::Stop, Verdict::Healthy),
            (
                status(400, ContextLength, None),
                Next::NextModel,
                Verdict::Healthy,
            ),
            (
                status(400, ContentFilter, None),
                Next::Stop,
                Verdict::Healthy,
            ),
            (status(401, Other, None), Next::NextModel, Verdict::Trip),
            (status(403, Other, None), Next::NextModel, Verdict::Trip),
            (
                status(429, Other, Some(2)),
                Next::RetryAfter(Duration::from_secs(2)),
                Verdict::Unhealthy,
            ),
            (
                status(429, Other, None),
                Next::NextModel,
                Verdict::Unhealthy,
            ),
            (status(500, Other, None), Next::Backoff, Verdict::Unhealthy),
            (status(503, Other, None), Next::Backoff, Verdict::Unhealthy),
            (ProviderError::Timeout, Next::Backoff, Verdict::Unhealthy),
            (
                ProviderError::Connect("reset".into()),
                Next::Backoff,
                Verdict::Unhealthy,
            ),
            (ProviderError::StreamCut, Next::Backoff, Verdict::Unhealthy),
        ];
        for (err, next, verdict) in cases {
            assert_eq!(classify(&err), (next, verdict), "{err:?}");
        }
        assert_eq!(reason(&status(400, ContentFilter, None)), "content_filter");
        assert_eq!(reason(&status(503, Other, None)), "server_error");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1_000);
        assert_eq!(backoff(0, base, cap, 1.0), base);
        assert_eq!(backoff(2, base, cap, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(10, base, cap, 1.0), cap);
        assert_eq!(backoff(40, base, cap, 1.0), cap, "no overflow");
        assert_eq!(backoff(3, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, base, cap, 0.5), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_limits_retries_to_a_fraction_of_requests() {
        let budget = RetryBudget::new(0.2, 2, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..10 {
            budget.record_request(now);
        }
        let granted = (0..10).filter(|_| budget.try_retry(now)).count();
        assert_eq!(granted, 4, "2 + 20% of 10");
        tokio::time::advance(Duration::from_secs(11)).await;
        let later = Instant::now();
        assert!(budget.try_retry(later), "the window moved on");
        assert!(budget.try_retry(later));
        assert!(!budget.try_retry(later));
    }
}
