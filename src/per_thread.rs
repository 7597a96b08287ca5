//! One value per thread that uses it, made on first use.
//!
//! A Redis connection or an upstream HTTP connection is driven by a task on the runtime
//! (the server worker thread) that opened it. Shared by all workers, a call from another
//! worker wakes the driving thread and is woken back by it: context switches that cost
//! more than the call itself on a virtual machine (measured with a shared Redis pool:
//! about nine per send; with one pool per worker, under three). So each worker keeps its
//! own pool and its own HTTP client.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    thread::ThreadId,
};

pub struct PerThread<T> {
    make: Box<dyn Fn() -> T + Send + Sync>,
    by_thread: Mutex<HashMap<ThreadId, T>>,
}

impl<T: Clone> PerThread<T> {
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> PerThread<T> {
        PerThread {
            make: Box::new(make),
            by_thread: Mutex::default(),
        }
    }

    /// Like [`PerThread::new`] for values whose making can fail: the first is made now
    /// (its error is the caller's), and stands in for any thread whose own fails later.
    pub fn try_new<E>(
        make: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<PerThread<T>, E>
    where
        T: Send + Sync + 'static,
    {
        let first = make()?;
        Ok(PerThread::new(move || {
            make().unwrap_or_else(|_| first.clone())
        }))
    }

    /// The calling thread's value (a handle: pools and clients clone cheaply).
    pub fn get(&self) -> T {
        let mut values = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        values
            .entry(std::thread::current().id())
            .or_insert_with(&self.make)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[test]
    fn each_thread_gets_its_own_value_made_once() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let values = PerThread::new(move || counter.fetch_add(1, Ordering::SeqCst));
        let here = values.get();
        assert_eq!(values.get(), here, "the same thread gets the same value");
        let there = std::thread::scope(|s| s.spawn(|| (values.get(), values.get())).join());
        let (first, again) = there.unwrap();
        assert_eq!(first, again);
        assert_ne!(first, here, "another thread gets another value");
        assert_eq!(made.load(Ordering::SeqCst), 2, "made once per thread");
    }

    #[test]
    fn a_failed_first_is_the_callers_error_and_a_later_failure_falls_back() {
        assert_eq!(PerThread::<u8>::try_new(|| Err("no")).err(), Some("no"));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let values = PerThread::try_new(move || match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Ok(7),
            _ => Err("broken"),
        })
        .unwrap();
        assert_eq!(
            values.get(),
            7,
            "this thread's own making failed: the first stands in"
        );
    }
}
