#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn config() -> BreakerConfig {
    BreakerConfig {
        window: Duration::from_secs(10),
        min_requests: 4,
        failure_rate: 0.5,
        consecutive_failures: 5,
        cooldown: Duration::from_secs(5),
        max_cooldown: Duration::from_secs(15),
        probe_timeout: Duration::from_secs(1),
    }
}

fn breaker() -> Arc<Breaker> {
    Arc::new(Breaker::new("m", config()))
}

/// One attempt now (the clock is paused: `Permit::settle` sees the same instant).
fn attempt(b: &Arc<Breaker>, now: Instant, verdict: Verdict) {
    b.admit(now).expect("admitted").settle(verdict);
}

/// Opens `b` at `now`: two failures out of four.
fn open(b: &Arc<Breaker>, now: Instant) {
    for verdict in [
        Verdict::Healthy,
        Verdict::Unhealthy,
        Verdict::Healthy,
        Verdict::Unhealthy,
    ] {
        attempt(b, now, verdict);
    }
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_minimum_request_count() {
    let b = breaker();
    let now = Instant::now();
    for _ in 0..3 {
        attempt(&b, now, Verdict::Unhealthy);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    attempt(&b, now, Verdict::Unhealthy);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_failure_rate_and_skips_during_cooldown() {
    let b = breaker();
    let now = Instant::now();
    open(&b, now);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.admit(now + Duration::from_millis(4_999)).is_none());
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let b = breaker();
    let start = Instant::now();
    attempt(&b, start, Verdict::Unhealthy);
    attempt(&b, start, Verdict::Unhealthy);
    tokio::time::advance(Duration::from_secs(11)).await;
    let later = Instant::now();
    attempt(&b, later, Verdict::Unhealthy);
    attempt(&b, later, Verdict::Healthy);
    attempt(&b, later, Verdict::Healthy);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "only 1 of 3 recent ones failed"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_one_probe_and_success_closes() {
    let b = breaker();
    let start = Instant::now();
    open(&b, start);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let now = Instant::now();
    let probe = b.admit(now).expect("the probe");
    assert!(probe.is_probe());
    assert!(
        b.admit(now).is_none(),
        "a second request while the probe runs"
    );
    assert!(b.admit(now + Duration::from_millis(900)).is_none());
    probe.settle(Verdict::Healthy);
    assert_eq!(b.state(), BreakerState::Closed);
    let next = b.admit(now).expect("closed again");
    assert!(!next.is_probe());
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_with_a_longer_capped_cooldown() {
    let b = breaker();
    open(&b, Instant::now());
    let mut expected = [10, 15, 15].into_iter();
    let mut cooldown = Duration::from_secs(5);
    for _ in 0..3 {
        tokio::time::advance(cooldown).await;
        b.admit(Instant::now())
            .expect("probe")
            .settle(Verdict::Unhealthy);
        assert_eq!(b.state(), BreakerState::Open);
        cooldown = Duration::from_secs(expected.next().unwrap());
        tokio::time::advance(cooldown - Duration::from_millis(1)).await;
        assert!(b.admit(Instant::now()).is_none(), "still cooling down");
        tokio::time::advance(Duration::from_millis(1)).await;
        cooldown = Duration::ZERO;
    }
    let probe = b.admit(Instant::now()).expect("probe after the cap");
    probe.settle(Verdict::Healthy);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_the_slot() {
    let b = breaker();
    open(&b, Instant::now());
    tokio::time::advance(Duration::from_secs(5)).await;
    let probe = b.admit(Instant::now()).expect("probe");
    drop(probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.admit(Instant::now()).expect("next probe").is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_lost_probe_stops_holding_the_slot_after_its_timeout() {
    let b = breaker();
    open(&b, Instant::now());
    tokio::time::advance(Duration::from_secs(5)).await;
    let lost = b.admit(Instant::now()).expect("probe");
    tokio::time::advance(Duration::from_millis(2_001)).await;
    let next = b.admit(Instant::now()).expect("slot reclaimed");
    assert!(next.is_probe());
    lost.settle(Verdict::Healthy);
    assert_eq!(
        b.state(),
        BreakerState::HalfOpen,
        "the lost probe's verdict is stale"
    );
    next.settle(Verdict::Healthy);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn trip_opens_at_once_and_stale_outcomes_are_ignored() {
    let b = breaker();
    let now = Instant::now();
    let in_flight = b.admit(now).expect("admitted");
    attempt(&b, now, Verdict::Trip);
    assert_eq!(b.state(), BreakerState::Open);
    in_flight.settle(Verdict::Healthy);
    assert_eq!(b.state(), BreakerState::Open, "admitted before the trip");
}

#[tokio::test(start_paused = true)]
async fn late_stream_failures_count_while_closed() {
    let b = breaker();
    let now = Instant::now();
    for _ in 0..4 {
        b.record(Verdict::Unhealthy, now);
    }
    assert_eq!(b.state(), BreakerState::Open);
}

/// Failures 4 s apart: the 10 s window never holds the 4 outcomes the rate needs.
const SLOW: Duration = Duration::from_secs(4);

#[tokio::test(start_paused = true)]
async fn a_run_of_failures_opens_at_a_low_rate() {
    let b = breaker();
    for _ in 0..4 {
        attempt(&b, Instant::now(), Verdict::Unhealthy);
        tokio::time::advance(SLOW).await;
    }
    assert_eq!(b.state(), BreakerState::Closed, "four in a row");
    attempt(&b, Instant::now(), Verdict::Unhealthy);
    assert_eq!(b.state(), BreakerState::Open, "the fifth in a row");
}

#[tokio::test(start_paused = true)]
async fn a_success_ends_the_run_and_unknown_outcomes_do_not() {
    let b = breaker();
    for verdict in [
        Verdict::Unhealthy,
        Verdict::Unhealthy,
        Verdict::Unhealthy,
        Verdict::Unhealthy,
        Verdict::Healthy,
        Verdict::Unhealthy,
        Verdict::Unhealthy,
        Verdict::Unknown,
        Verdict::Unhealthy,
        Verdict::Unhealthy,
    ] {
        attempt(&b, Instant::now(), verdict);
        tokio::time::advance(SLOW).await;
    }
    assert_eq!(b.state(), BreakerState::Closed, "four since the success");
    attempt(&b, Instant::now(), Verdict::Unhealthy);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn at_a_high_rate_a_run_opens_before_the_rate_does() {
    let b = breaker();
    let now = Instant::now();
    for _ in 0..20 {
        attempt(&b, now, Verdict::Healthy);
    }
    for _ in 0..4 {
        attempt(&b, now, Verdict::Unhealthy);
    }
    assert_eq!(b.state(), BreakerState::Closed, "4 of 24 failed");
    attempt(&b, now, Verdict::Unhealthy);
    assert_eq!(b.state(), BreakerState::Open, "5 in a row, 5 of 25");
}

#[tokio::test(start_paused = true)]
async fn the_probe_is_due_when_the_cooldown_ends_and_success_resets_its_growth() {
    let b = breaker();
    open(&b, Instant::now());
    tokio::time::advance(Duration::from_secs(5)).await;
    b.admit(Instant::now())
        .expect("probe at the end of the cooldown")
        .settle(Verdict::Unhealthy);
    tokio::time::advance(Duration::from_secs(10)).await;
    b.admit(Instant::now())
        .expect("probe after the doubled cooldown")
        .settle(Verdict::Healthy);
    assert_eq!(b.state(), BreakerState::Closed);
    let reopened = Instant::now();
    open(&b, reopened);
    assert!(b.admit(reopened + Duration::from_millis(4_999)).is_none());
    let probe = b.admit(reopened + Duration::from_secs(5));
    assert!(
        probe.is_some_and(|p| p.is_probe()),
        "the base cooldown again, not the doubled one"
    );
}
