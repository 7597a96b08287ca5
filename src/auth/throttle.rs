//! Slows down repeated 401s from one client address, so guessing keys is slow and a broken
//! client hammering with a bad key costs us little.
//!
//! The first few failures in a window are answered at once (typos, a rotated key); every
//! one after that waits a little longer, up to `auth.failed_auth_max_delay_ms`. Only 401
//! answers wait: a good key from the same address (many users behind one proxy) is
//! never slowed.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures answered without delay in each window.
const FREE_FAILURES: u32 = 10;
const STEP: Duration = Duration::from_millis(50);
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, the ones whose window ended are forgotten.
const MAX_ADDRESSES: usize = 10_000;

pub struct Throttle {
    max_delay: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(max_delay_ms: u64) -> Throttle {
        Throttle {
            max_delay: Duration::from_millis(max_delay_ms),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failure of `addr` and waits as long as its count calls for.
    pub async fn failed(&self, addr: Option<IpAddr>) {
        let delay = match addr {
            Some(addr) if !self.max_delay.is_zero() => self.count(addr),
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn count(&self, addr: IpAddr) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return self.max_delay;
        };
        let now = Instant::now();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if failures.len() >= MAX_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        STEP.saturating_mul(entry.0.saturating_sub(FREE_FAILURES))
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_failures_and_stay_bounded() {
        let throttle = Throttle::new(300);
        let addr: IpAddr = [192, 0, 2, 1].into();
        let delays: Vec<Duration> = (0..20).map(|_| throttle.count(addr)).collect();
        assert!(delays[..10].iter().all(Duration::is_zero));
        assert_eq!(delays[10], STEP);
        assert_eq!(delays[19], Duration::from_millis(300));
        assert!(
            throttle.count([192, 0, 2, 2].into()).is_zero(),
            "per address"
        );
    }
}
