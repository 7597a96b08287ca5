//! Routes one request along its chain of models: each attempt bounded by its own timeout
//! and by its model's share of what is left of the request's deadline, failures classified
//! before anything is retried ([`super::retry`]), sick models skipped by their breakers
//! ([`super::breaker`]), and every failed attempt kept so the caller can be told what
//! happened.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    ChatRequest, ChatResponse, EventStream, ProviderError, StreamEvent,
    breaker::{Breaker, BreakerConfig, BreakerState, Permit, Verdict},
    registry::Model,
    retry::{Next, RetryBudget, backoff, classify, reason},
    timing::Timing,
};
use crate::config::RoutingSettings;

pub struct Router {
    /// `[routing]`'s attempt settings, for models without their own.
    timing: Timing,
    idle_timeout: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    breakers: HashMap<String, Arc<Breaker>>,
    budget: RetryBudget,
}

/// One failed (or skipped) attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub model: String,
    /// `None`: not tried, its breaker was open.
    pub error: Option<ProviderError>,
}

impl Attempt {
    pub fn reason(&self) -> &'static str {
        self.error.as_ref().map_or("circuit_open", reason)
    }
}

#[derive(Debug)]
pub enum RouteError {
    /// Every model failed or was skipped, or a failure ended the chain early.
    Exhausted(Vec<Attempt>),
    /// The request's deadline passed.
    Deadline(Vec<Attempt>),
}

/// A success: which model of the chain answered, and the attempts that failed before it.
pub struct Routed<T> {
    pub index: usize,
    pub value: T,
    pub failed: Vec<Attempt>,
}

/// A stream that has produced its first piece of content (or its whole answer).
pub struct OpenStream {
    pub first: StreamEvent,
    pub rest: EventStream,
}

type AttemptFuture<T> = BoxFuture<'static, Result<T, ProviderError>>;

/// Which bound of [`Timing`] limits an attempt as a whole.
#[derive(Clone, Copy)]
enum Kind {
    /// The whole answer, within `attempt`; its headers within `first_byte` while a
    /// fallback remains.
    Complete,
    /// The first content, within `first_token`.
    Stream,
}

impl Router {
    pub fn new(settings: &RoutingSettings, models: &[String]) -> Router {
        let ms = Duration::from_millis;
        let config = BreakerConfig {
            window: Duration::from_secs(settings.breaker_window_seconds),
            min_requests: settings.breaker_min_requests,
            failure_rate: settings.breaker_failure_rate,
            consecutive_failures: settings.breaker_consecutive_failures,
            cooldown: ms(settings.breaker_cooldown_ms),
            max_cooldown: ms(settings.breaker_max_cooldown_ms),
            probe_timeout: ms(settings.probe_timeout_ms),
        };
        let breakers = models
            .iter()
            .map(|name| (name.clone(), Arc::new(Breaker::new(name, config.clone()))))
            .collect();
        Router {
            timing: Timing::from_routing(settings),
            idle_timeout: ms(settings.idle_timeout_ms),
            backoff_base: ms(settings.backoff_base_ms),
            backoff_max: ms(settings.backoff_max_ms),
            breakers,
            budget: RetryBudget::new(
                settings.retry_budget_ratio,
                settings.retry_budget_min,
                Duration::from_secs(settings.retry_budget_window_seconds),
            ),
        }
    }

    /// Each configured model's breaker, for `/v1/status`.
    pub fn states(&self) -> BTreeMap<String, BreakerState> {
        self.breakers
            .iter()
            .map(|(name, breaker)| (name.clone(), breaker.state()))
            .collect()
    }

    /// Longest silence allowed between two chunks of a stream that has begun.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A non-streaming answer. While a fallback remains, an attempt whose headers do not
    /// come within the first-byte timeout is given up for the fallback: an OpenAI-style
    /// server sends them with the whole answer, so the bound is on the answer's start and
    /// end alike on those, and a model with long answers should have a longer one.
    pub async fn complete(
        &self,
        chain: &[Arc<Model>],
        request_for: impl Fn(&Model) -> ChatRequest,
        deadline: Instant,
    ) -> Result<Routed<ChatResponse>, RouteError> {
        let attempt =
            |model: &Arc<Model>, first_byte: Option<Duration>| -> AttemptFuture<ChatResponse> {
                let request = ChatRequest {
                    first_byte_timeout: first_byte,
                    ..request_for(model)
                };
                let provider = model.provider.clone();
                async move { provider.complete(&request).await }.boxed()
            };
        self.run(chain, deadline, Kind::Complete, attempt).await
    }

    /// Opens a stream and waits for its first content before calling it a success, so that
    /// a failure before then can still move on to another attempt without the client
    /// noticing. The first-token timeout bounds that wait.
    pub async fn open_stream(
        &self,
        chain: &[Arc<Model>],
        request_for: impl Fn(&Model) -> ChatRequest,
        deadline: Instant,
    ) -> Result<Routed<OpenStream>, RouteError> {
        let attempt = |model: &Arc<Model>, _: Option<Duration>| -> AttemptFuture<OpenStream> {
            let request = request_for(model);
            let provider = model.provider.clone();
            async move {
                let mut rest = provider.stream(&request).await?;
                match rest.next().await {
                    Some(Ok(first)) => Ok(OpenStream { first, rest }),
                    Some(Err(err)) => Err(err),
                    None => Err(ProviderError::StreamCut),
                }
            }
            .boxed()
        };
        self.run(chain, deadline, Kind::Stream, attempt).await
    }

    /// A stream failed after content reached the client: no fallback is possible any
    /// more, but the model's breaker hears of it.
    pub fn stream_failed(&self, model: &str) {
        if let Some(breaker) = self.breakers.get(model) {
            breaker.record(Verdict::Unhealthy, Instant::now());
        }
    }

    async fn run<T>(
        &self,
        chain: &[Arc<Model>],
        deadline: Instant,
        kind: Kind,
        attempt: impl Fn(&Arc<Model>, Option<Duration>) -> AttemptFuture<T>,
    ) -> Result<Routed<T>, RouteError> {
        let streaming = matches!(kind, Kind::Stream);
        let mut failed = Vec::new();
        self.budget.record_request(Instant::now());
        if let Some(first) = chain.first() {
            crate::telemetry::record_model(&first.name);
        }
        for (index, model) in chain.iter().enumerate() {
            let timing = self.timing.with(&model.overrides);
            // This model and the ones after it share what is left of the deadline.
            let models_left = u32::try_from(chain.len() - index).unwrap_or(u32::MAX);
            let has_fallback = models_left > 1;
            let per_attempt = match kind {
                Kind::Complete => timing.attempt,
                Kind::Stream => timing.first_token,
            };
            let mut retries = 0;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Err(RouteError::Deadline(failed));
                }
                let permit = match self.breakers.get(&model.name).map(|b| b.admit(now)) {
                    Some(None) => {
                        crate::metrics::record_fallback(&model.name, "policy");
                        failed.push(Attempt {
                            model: model.name.clone(),
                            error: None,
                        });
                        break;
                    }
                    Some(permit) => permit,
                    None => None,
                };
                let share = deadline.saturating_duration_since(now) / models_left;
                let own_limit = match &permit {
                    Some(p) if p.is_probe() => per_attempt.min(self.probe_timeout(model)),
                    _ => per_attempt,
                };
                let limit = own_limit.min(share);
                let first_byte = match kind {
                    Kind::Complete if has_fallback => Some(timing.first_byte.min(limit)),
                    _ => None,
                };
                let span = tracing::info_span!("upstream", model = %model.name, retry = retries);
                let outcome = tokio::time::timeout(limit, attempt(model, first_byte))
                    .instrument(span)
                    .await;
                crate::metrics::record_upstream(
                    &model.name,
                    now.elapsed(),
                    match &outcome {
                        Ok(Ok(_)) => "ok",
                        Ok(Err(err)) => reason(err),
                        Err(_) => "timeout",
                    },
                    streaming,
                );
                let err = match outcome {
                    Ok(Ok(value)) => {
                        settle(permit, Verdict::Healthy);
                        return Ok(Routed {
                            index,
                            value,
                            failed,
                        });
                    }
                    Ok(Err(err)) => err,
                    Err(_) => ProviderError::Timeout,
                };
                let (next, verdict) = classify(&err);
                // Cut short by the deadline's share rather than by its own timeout (or the
                // first-byte one): no verdict.
                let cut_short = err == ProviderError::Timeout
                    && limit < own_limit
                    && first_byte.is_none_or(|bound| bound >= limit);
                // A model that did not answer in time is likely not to again: the
                // fallback is asked at once rather than after another wait.
                let next = if err == ProviderError::Timeout && has_fallback {
                    Next::NextModel
                } else {
                    next
                };
                settle(permit, if cut_short { Verdict::Unknown } else { verdict });
                let err_reason = reason(&err);
                tracing::warn!(model = %model.name, reason = err_reason, error = %err, "upstream attempt failed");
                failed.push(Attempt {
                    model: model.name.clone(),
                    error: Some(err),
                });
                if Instant::now() >= deadline {
                    return Err(RouteError::Deadline(failed));
                }
                let wait = match next {
                    Next::Stop => return Err(RouteError::Exhausted(failed)),
                    Next::NextModel => {
                        crate::metrics::record_fallback(&model.name, fault(err_reason));
                        break;
                    }
                    Next::RetryAfter(wait) => wait,
                    Next::Backoff => {
                        backoff(retries, self.backoff_base, self.backoff_max, rand::random())
                    }
                };
                if !self.may_retry(retries, timing.max_retries, wait, deadline) {
                    crate::metrics::record_fallback(&model.name, "policy");
                    break;
                }
                crate::metrics::record_retry(&model.name, err_reason);
                tokio::time::sleep(wait).await;
                retries += 1;
            }
        }
        Err(RouteError::Exhausted(failed))
    }

    /// Within the per-model count, before the deadline, and within the retry budget.
    fn may_retry(&self, retries: u32, max: u32, wait: Duration, deadline: Instant) -> bool {
        let now = Instant::now();
        retries < max && now + wait < deadline && self.budget.try_retry(now)
    }

    fn probe_timeout(&self, model: &Model) -> Duration {
        self.breakers
            .get(&model.name)
            .map_or(self.timing.attempt, |b| b.probe_timeout())
    }
}

/// Moving on because of a context-length refusal is about our request; anything else
/// that moves on is the provider failing.
fn fault(reason: &str) -> &'static str {
    if reason == "context_length" {
        "caller"
    } else {
        "provider"
    }
}

fn settle(permit: Option<Permit>, verdict: Verdict) {
    if let Some(permit) = permit {
        permit.settle(verdict);
    }
}

#[cfg(test)]
mod tests;
