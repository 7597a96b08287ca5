//! Graceful shutdown: on SIGTERM (or a test's trigger) `/readyz` turns 503, the server stops
//! accepting, in-flight requests — streams included — get a grace period to finish, and
//! the session leases still held are released before the process exits.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix_web::dev::ServerHandle;
use tokio::sync::Notify;

use crate::store::Store;

/// Set once draining starts; `/readyz` reads it.
#[derive(Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Leases held by sends in flight: token → (session id, idempotency key).
#[derive(Default)]
pub struct ActiveLeases(Mutex<HashMap<String, (String, Option<String>)>>);

impl ActiveLeases {
    pub fn insert(&self, token: &str, session_id: &str, idempotency_key: Option<String>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(token.to_string(), (session_id.to_string(), idempotency_key));
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(token);
        }
    }

    /// Releases every lease still registered, so no session waits for its lease to lapse.
    pub async fn release_all(&self, store: &dyn Store) {
        let held: Vec<_> = match self.0.lock() {
            Ok(mut map) => map.drain().collect(),
            Err(_) => return,
        };
        for (token, (session_id, key)) in held {
            if let Err(err) = store.release(&session_id, &token, key.as_deref()).await {
                tracing::warn!(%err, "could not release a lease at shutdown");
            }
        }
    }
}

/// A way to start the shutdown without a signal (tests, embedding).
#[derive(Clone, Default)]
pub struct ShutdownTrigger(Arc<Notify>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// Waits for SIGTERM, Ctrl-C or the trigger, then drains the server.
pub async fn drain_on_signal(
    trigger: ShutdownTrigger,
    draining: Arc<Draining>,
    server: ServerHandle,
    delay: Duration,
) {
    tokio::select! {
        () = trigger.0.notified() => {}
        () = terminate_signal() => {}
    }
    draining.0.store(true, Ordering::Relaxed);
    tracing::info!("shutting down: draining in-flight requests");
    // Load balancers need a moment to see /readyz fail before the listener closes.
    tokio::time::sleep(delay).await;
    server.stop(true).await;
}

async fn terminate_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
