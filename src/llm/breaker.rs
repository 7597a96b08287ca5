//! A circuit breaker per configured model (one provider + one upstream model).
//!
//! Closed: outcomes go into a rolling window; once it holds `min_requests` and the failure
//! rate reaches the threshold, the breaker opens. So does a run of `consecutive_failures`
//! failures with no success between them, however slowly they come: a quiet tenant's
//! traffic never fills the window, and its breaker must open too. Open: the model is skipped until the
//! cooldown ends. Half-open: exactly one request (the probe) is let through; its success
//! closes the breaker and forgets the grown cooldown (the next opening starts from the base
//! one again), its failure reopens it with a doubled cooldown. Breakers live in
//! one process: every instance judges its upstreams on its own.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

use super::window::Window;

#[derive(Clone, Debug)]
pub struct BreakerConfig {
    pub window: Duration,
    pub min_requests: u32,
    pub failure_rate: f64,
    /// Failures in a row that open the breaker whatever the window holds.
    pub consecutive_failures: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub probe_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What one attempt says about the upstream's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It answered (a refusal of our request is an answer too).
    Healthy,
    Unhealthy,
    /// It cannot work until someone acts (a rejected provider key): open at once.
    Trip,
    /// Says nothing about the upstream (we cut the attempt short ourselves).
    Unknown,
}

const OK: usize = 0;
const FAILED: usize = 1;

#[derive(Debug)]
enum Phase {
    Closed {
        window: Window,
        /// Failures since the last success.
        consecutive: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
    },
    HalfOpen {
        probe: Option<(u64, Instant)>,
        cooldown: Duration,
    },
}

#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    next_probe_id: u64,
}

/// Leave to make one attempt. Dropped without a verdict (the request was cancelled) it
/// counts as [`Verdict::Unknown`], which frees a probe slot for the next request.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: Option<u64>,
    settled: bool,
}

impl Breaker {
    pub fn new(name: &str, config: BreakerConfig) -> Breaker {
        let breaker = Breaker {
            name: name.to_string(),
            inner: Mutex::new(Inner {
                phase: Phase::closed(&config),
                next_probe_id: 0,
            }),
            config,
        };
        // Published from the start, so dashboards see every model, not only troubled ones.
        breaker.publish();
        breaker
    }

    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed { .. } => BreakerState::Closed,
            // An open breaker whose cooldown ended admits a probe: it is half-open already.
            Phase::Open { until, .. } if Instant::now() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// `None`: skip this model for now.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut inner = self.lock();
        let probe_id = inner.next_probe_id;
        let probe = match &mut inner.phase {
            Phase::Closed { .. } => None,
            Phase::Open { until, .. } if now < *until => return None,
            Phase::Open { cooldown, .. } => {
                let cooldown = *cooldown;
                inner.phase = Phase::HalfOpen {
                    probe: Some((probe_id, now)),
                    cooldown,
                };
                Some(probe_id)
            }
            Phase::HalfOpen { probe, .. } => {
                // A probe is bounded by its own timeout; one still "in flight" long after
                // that was lost (its task died), so it no longer holds the slot.
                let stale = probe.is_none_or(|(_, since)| {
                    now.saturating_duration_since(since) > self.config.probe_timeout * 2
                });
                if !stale {
                    return None;
                }
                *probe = Some((probe_id, now));
                Some(probe_id)
            }
        };
        if probe.is_some() {
            inner.next_probe_id += 1;
            drop(inner);
            self.publish();
        }
        Some(Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        })
    }

    pub fn probe_timeout(&self) -> Duration {
        self.config.probe_timeout
    }

    /// An outcome that arrives without a permit: a stream that failed after it began.
    pub fn record(&self, verdict: Verdict, now: Instant) {
        self.settle(None, verdict, now);
    }

    fn settle(&self, probe: Option<u64>, verdict: Verdict, now: Instant) {
        let mut inner = self.lock();
        let config = &self.config;
        let next = match (&mut inner.phase, probe) {
            (
                Phase::Closed {
                    window,
                    consecutive,
                },
                None,
            ) => match verdict {
                Verdict::Healthy => {
                    window.add(now, OK);
                    *consecutive = 0;
                    None
                }
                Verdict::Unhealthy => {
                    window.add(now, FAILED);
                    *consecutive = consecutive.saturating_add(1);
                    let [ok, failed] = window.totals(now);
                    let total = ok.saturating_add(failed);
                    let rate = f64::from(failed) / f64::from(total.max(1));
                    let by_rate = total >= config.min_requests && rate >= config.failure_rate;
                    (by_rate || *consecutive >= config.consecutive_failures)
                        .then_some(config.cooldown)
                }
                Verdict::Trip => Some(config.cooldown),
                Verdict::Unknown => None,
            },
            (
                Phase::HalfOpen {
                    probe: slot,
                    cooldown,
                },
                Some(id),
            ) if slot.is_some_and(|(current, _)| current == id) => match verdict {
                Verdict::Healthy => {
                    inner.phase = Phase::closed(config);
                    drop(inner);
                    self.publish();
                    return;
                }
                Verdict::Unhealthy | Verdict::Trip => {
                    Some((*cooldown * 2).min(config.max_cooldown))
                }
                Verdict::Unknown => {
                    *slot = None;
                    None
                }
            },
            // Outcomes of requests admitted before the breaker changed phase are stale.
            _ => None,
        };
        if let Some(cooldown) = next {
            inner.phase = Phase::Open {
                until: now + cooldown,
                cooldown,
            };
            drop(inner);
            tracing::warn!(model = %self.name, cooldown_ms = cooldown.as_millis() as u64, "circuit breaker opened");
            self.publish();
        }
    }

    fn publish(&self) {
        let value = match self.state() {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("upstream_breaker_state", "model" => self.name.clone()).set(value);
    }

    /// The state stays consistent under a panic elsewhere (every change is one assignment).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Phase {
    fn closed(config: &BreakerConfig) -> Phase {
        Phase::Closed {
            window: Window::new(config.window),
            consecutive: 0,
        }
    }
}

impl Permit {
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    pub fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.settle(self.probe, verdict, Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker
                .settle(self.probe, Verdict::Unknown, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
