//! The load loops, each bounded in count and in time (and every request by the client's
//! timeout).
//!
//! Closed loop: `c` clients, each sending its next request when the previous answer is in;
//! gives latency at a concurrency. Open loop: requests start on a fixed schedule whatever
//! the answers do, and latency counts from the scheduled start; gives the throughput
//! frontier. A closed loop would slow down with the server and hide the queueing it causes.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

pub type Outcome = Result<(), String>;

pub struct Latencies {
    /// Milliseconds, one per request.
    pub samples: Vec<f64>,
    pub elapsed: Duration,
}

impl Latencies {
    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.samples, q)
    }

    pub fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Nearest-rank percentile; NaN when there is no sample.
fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub struct Closed {
    /// Unmeasured requests per client first, so connections and caches are warm.
    pub warmup: usize,
    pub per_client: usize,
    pub time_limit: Duration,
}

/// Runs `concurrency` clients (`request(client index)`); a failed request stops the run:
/// latencies of a server that answers errors would mean nothing.
pub async fn closed_loop<F, Fut>(concurrency: usize, bounds: &Closed, request: F) -> Latencies
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let run = |count: usize, deadline: Option<Instant>| {
        let tasks: Vec<_> = (0..concurrency)
            .map(|client| {
                let request = request.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    for _ in 0..count {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let started = Instant::now();
                        if let Err(err) = request(client).await {
                            panic!("request failed: {err}");
                        }
                        samples.push(millis(started.elapsed()));
                    }
                    samples
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            all
        }
    };
    run(bounds.warmup, None).await;
    let started = Instant::now();
    let samples = run(bounds.per_client, Some(started + bounds.time_limit)).await;
    Latencies {
        samples,
        elapsed: started.elapsed(),
    }
}

/// One open-loop step at a fixed offered rate.
pub struct Step {
    pub offered: f64,
    pub ok: usize,
    pub failed: usize,
    /// Not sent because `max_in_flight` requests were already waiting.
    pub shed: usize,
    /// What the first failed request said, so a failure is explained, not just counted.
    pub first_error: Option<String>,
    pub latencies: Latencies,
}

impl Step {
    /// Held the rate: every request sent and answered, p99 within `p99_ms`.
    pub fn holds(&self, p99_ms: f64) -> bool {
        self.failed == 0 && self.shed == 0 && self.ok > 0 && self.latencies.p(0.99) <= p99_ms
    }
}

pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    request: F,
) -> Step
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    // The schedule is kept by a thread of its own: `thread::sleep` wakes within tens of
    // microseconds where tokio's timer has a 1 ms tick, which would add up to 1 ms of
    // the driver's own delay to latencies judged against a 5 ms bound.
    let dispatcher = tokio::task::spawn_blocking(move || {
        let total = (rate * duration.as_secs_f64()).ceil() as usize;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (mut tasks, mut shed) = (Vec::with_capacity(total), 0);
        for i in 0..total {
            let scheduled = started + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                shed += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (request, in_flight) = (request(), in_flight.clone());
            tasks.push(runtime.spawn(async move {
                let outcome = request.await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                outcome.map(|()| millis(scheduled.elapsed()))
            }));
        }
        (tasks, shed)
    });
    let (tasks, shed) = dispatcher.await.unwrap();
    let (mut samples, mut failed, mut first_error) = (Vec::with_capacity(tasks.len()), 0, None);
    for task in tasks {
        match task.await.unwrap() {
            Ok(ms) => samples.push(ms),
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    Step {
        offered: rate,
        ok: samples.len(),
        failed,
        shed,
        first_error,
        latencies: Latencies {
            samples,
            // Not less than the schedule: the last request starts just before its end.
            elapsed: started.elapsed().max(duration),
        },
    }
}

pub struct Search {
    pub start_rate: f64,
    pub max_rate: f64,
    pub step_time: Duration,
    /// Low rates get longer steps, up to three `step_time`s, to reach this many requests:
    /// a p99 over a few hundred samples is a handful of the slowest requests.
    pub min_requests: usize,
    /// Extra steps per threshold once it is bracketed.
    pub refinements: usize,
    /// No new step starts after this much time.
    pub budget: Duration,
    pub max_in_flight: usize,
}

/// Doubles the rate from `start_rate` until the loosest threshold breaks (or `max_rate`),
/// then narrows each threshold's bracket by geometric bisection. Returns every step, by
/// rate; the frontier of a threshold is the highest rate whose step held it.
pub async fn frontier<F, Fut>(search: &Search, thresholds: &[f64], request: F) -> Vec<Step>
where
    F: Fn() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let deadline = Instant::now() + search.budget;
    let loosest = thresholds.iter().copied().fold(0.0, f64::max);
    let step = |rate: f64| {
        open_loop(
            rate,
            search.step_time,
            search.max_in_flight,
            request.clone(),
        )
    };
    let mut steps = Vec::new();
    let mut rate = search.start_rate;
    loop {
        let measured = step(rate).await;
        let go_on = measured.holds(loosest) && rate * 2.0 <= search.max_rate;
        steps.push(measured);
        if !go_on || Instant::now() >= deadline {
            break;
        }
        rate *= 2.0;
    }
    for &limit in thresholds {
        for _ in 0..search.refinements {
            let Some(rate) = next_rate(&steps, limit) else {
                break;
            };
            if Instant::now() >= deadline {
                break;
            }
            steps.push(step(rate).await);
        }
    }
    steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    steps
}

/// Between the highest rate that held `limit` and the lowest above it that did not; half
/// the lowest rate when none held; `None` when nothing broke.
fn next_rate(steps: &[Step], limit: f64) -> Option<f64> {
    let held = highest_holding(steps, limit);
    let broke = steps
        .iter()
        .filter(|s| !s.holds(limit) && held.is_none_or(|h| s.offered > h))
        .map(|s| s.offered)
        .reduce(f64::min)?;
    Some(held.map_or(broke / 2.0, |held| (held * broke).sqrt()))
}

pub fn highest_holding(steps: &[Step], limit: f64) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.holds(limit))
        .map(|s| s.offered)
        .reduce(f64::max)
}
