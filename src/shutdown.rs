//! Graceful shutdown: on SIGTERM (or a test's trigger) `/readyz` turns 503, the server stops
//! accepting, in-flight requests — streams included — get a grace period to finish, and
//! the session leases still held are released before the process exits. Streams still
//! running when the grace period ends are told so with an `error` event, and get
//! [`STREAM_FAREWELL`] to deliver it before the server cuts what is left.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix_web::dev::ServerHandle;
use tokio::sync::{Notify, watch};

use crate::{domain::scope::SessionKey, store::Store};

/// After the grace period, how long streams get to send their last event before the
/// server closes every connection (whole seconds: the server's timeout counts in them).
pub const STREAM_FAREWELL: Duration = Duration::from_secs(1);

/// Set once draining starts (`/readyz` reads it); and when the grace period is over.
pub struct Draining {
    started: AtomicBool,
    grace_over: watch::Sender<bool>,
}

impl Default for Draining {
    fn default() -> Self {
        Draining {
            started: AtomicBool::new(false),
            grace_over: watch::Sender::new(false),
        }
    }
}

impl Draining {
    pub fn is_set(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Completes once the grace period of a shutdown is over (never, without one).
    pub fn grace_over(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut over = self.grace_over.subscribe();
        async move {
            // An error means the sender is gone, with the app: nothing to wait for then.
            let _ = over.wait_for(|over| *over).await;
        }
    }
}

/// Leases held by sends in flight: token → (session id, idempotency key).
#[derive(Default)]
pub struct ActiveLeases(Mutex<HashMap<String, (SessionKey, Option<String>)>>);

impl ActiveLeases {
    pub fn insert(&self, token: &str, session: &SessionKey, idempotency_key: Option<String>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(token.to_string(), (session.clone(), idempotency_key));
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
        for (token, (session, key)) in held {
            if let Err(err) = store.release(&session, &token, key.as_deref()).await {
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

/// Waits for SIGTERM, Ctrl-C or the trigger, then drains the server: after `delay` the
/// listener closes, after `grace` more the streams still running are told to end (the
/// server's own shutdown timeout is `grace` + [`STREAM_FAREWELL`]).
pub async fn drain_on_signal(
    trigger: ShutdownTrigger,
    draining: Arc<Draining>,
    server: ServerHandle,
    delay: Duration,
    grace: Duration,
) {
    tokio::select! {
        () = trigger.0.notified() => {}
        () = terminate_signal() => {}
    }
    draining.started.store(true, Ordering::Relaxed);
    tracing::info!("shutting down: draining in-flight requests");
    // Load balancers need a moment to see /readyz fail before the listener closes.
    tokio::time::sleep(delay).await;
    let stop = server.stop(true);
    let grace_over = async {
        tokio::time::sleep(grace).await;
        draining.grace_over.send_replace(true);
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = stop => {}
        () = grace_over => {}
    }
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
