//! A rolling window of two counters, kept in a handful of time buckets.
//!
//! Buckets rather than one entry per event: memory stays fixed at any request rate, and the
//! window slides in steps of a tenth of its span, which is precise enough for a breaker or a
//! retry budget.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

const BUCKETS: u32 = 10;

#[derive(Debug)]
pub(crate) struct Window {
    span: Duration,
    buckets: VecDeque<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    counts: [u32; 2],
}

impl Window {
    pub(crate) fn new(span: Duration) -> Window {
        Window {
            span,
            buckets: VecDeque::with_capacity(BUCKETS as usize + 1),
        }
    }

    /// Adds one to counter `which` (0 or 1).
    pub(crate) fn add(&mut self, now: Instant, which: usize) {
        self.prune(now);
        let width = self.span / BUCKETS;
        let current = match self.buckets.back_mut() {
            Some(bucket) if now.saturating_duration_since(bucket.start) < width => bucket,
            _ => {
                self.buckets.push_back(Bucket {
                    start: now,
                    counts: [0, 0],
                });
                let Some(bucket) = self.buckets.back_mut() else {
                    return;
                };
                bucket
            }
        };
        if let Some(count) = current.counts.get_mut(which) {
            *count = count.saturating_add(1);
        }
    }

    /// Both counters over the last `span`.
    pub(crate) fn totals(&mut self, now: Instant) -> [u32; 2] {
        self.prune(now);
        self.buckets.iter().fold([0, 0], |[a, b], bucket| {
            [
                a.saturating_add(bucket.counts[0]),
                b.saturating_add(bucket.counts[1]),
            ]
        })
    }

    fn prune(&mut self, now: Instant) {
        while self
            .buckets
            .front()
            .is_some_and(|bucket| now.saturating_duration_since(bucket.start) >= self.span)
        {
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_of_the_window() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10));
        window.add(start, 0);
        window.add(start + Duration::from_secs(3), 1);
        window.add(start + Duration::from_secs(3), 1);
        assert_eq!(window.totals(start + Duration::from_secs(5)), [1, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(11)), [0, 2]);
        assert_eq!(window.totals(start + Duration::from_secs(14)), [0, 0]);
    }

    #[test]
    fn memory_stays_bounded() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10));
        for ms in 0..100_000u64 {
            window.add(start + Duration::from_millis(ms), 0);
        }
        assert!(window.buckets.len() <= BUCKETS as usize + 1);
        let [ok, _] = window.totals(start + Duration::from_millis(100_000));
        assert!((9_000..=10_000).contains(&ok), "{ok}");
    }
}
