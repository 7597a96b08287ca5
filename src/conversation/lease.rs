//! The send lease of a session: renewed while the send runs, released on every way out.
//!
//! A lease is short (`sessions.lease_seconds`) and renewed every
//! `sessions.lease_renew_seconds` while its send runs, so that a lease its holder can no
//! longer give back (the instance died, or Redis restarted with the lease in its
//! append-only file) holds the session for one lease at most, not for a whole send's
//! deadline. A release that fails (Redis down) is tried again in the background until it
//! goes through or the lease has lapsed by itself: once Redis is back, the session is free
//! within about a second.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

use crate::{
    domain::scope::SessionKey,
    shutdown::ActiveLeases,
    state::AppState,
    store::{Store, StoreError},
};

/// The first pause before a failed release is tried again; it doubles up to [`LAST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LAST_PAUSE: Duration = Duration::from_secs(1);

/// Holds a session's lease. Unless the turn was committed (which releases it in the same
/// script), dropping it gives the lease back — also when the request is cancelled
/// because the client went away — so the session is never stuck until the lease lapses.
/// It is also registered with the app, so a shutdown can release it.
pub struct Lease {
    held: Option<Held>,
    renewer: JoinHandle<()>,
}

/// What giving the lease back needs, apart from the renewer.
struct Held {
    store: Arc<dyn Store>,
    registry: Arc<ActiveLeases>,
    session: SessionKey,
    token: String,
    idempotency_key: Option<String>,
    lease: Duration,
}

impl Lease {
    pub fn new(
        state: &AppState,
        session: &SessionKey,
        token: String,
        idempotency_key: Option<String>,
    ) -> Lease {
        state
            .leases
            .insert(&token, session, idempotency_key.clone());
        let sessions = &state.settings.sessions;
        let held = Held {
            store: state.store.clone(),
            registry: state.leases.clone(),
            session: session.clone(),
            token,
            idempotency_key,
            lease: Duration::from_secs(sessions.lease_seconds),
        };
        let renewer = held.renew_every(Duration::from_secs(sessions.lease_renew_seconds));
        Lease {
            held: Some(held),
            renewer,
        }
    }

    pub fn token(&self) -> &str {
        self.held.as_ref().map_or("", |held| held.token.as_str())
    }

    /// Gives the lease back now, before the caller answers: a client that retries at once
    /// after an error must find the session free. If the store fails, the release is tried
    /// again in the background.
    pub async fn release(&mut self) {
        self.renewer.abort();
        let Some(held) = self.held.take() else {
            return;
        };
        let lapses = Instant::now() + held.lease;
        let given = held.give_back().await;
        match given {
            Ok(()) => {}
            Err(err) if held.worth_retrying(&err, lapses) => {
                tracing::warn!(%err, "could not release a session lease; trying again");
                tokio::spawn(held.give_back_until(lapses, FIRST_PAUSE));
            }
            Err(err) => held.give_up(&err),
        }
    }

    /// Passes `result` through, releasing the lease first when it is an error.
    pub async fn release_on_err<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.release().await;
        }
        result
    }

    /// The commit released the lease already.
    pub fn committed(&mut self) {
        self.renewer.abort();
        if let Some(held) = self.held.take() {
            held.registry.remove(&held.token);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let Some(held) = self.held.take() else {
            return;
        };
        // Deregistered only once released: if this runtime is already shutting down (a
        // worker stopped after the grace period), the task never runs and the shutdown
        // path releases the lease instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lapses = Instant::now() + held.lease;
        runtime.spawn(held.give_back_until(lapses, Duration::ZERO));
    }
}

impl Held {
    /// Renews the lease every `period` for as long as the task runs (the lease aborts it).
    fn renew_every(&self, period: Duration) -> JoinHandle<()> {
        let (store, id, token) = (self.store.clone(), self.session.clone(), self.token.clone());
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match store.renew(&id, &token, lease_ms).await {
                    Ok(true) => {}
                    // Lapsed, and maybe taken by another send: the commit's fencing check
                    // refuses this one's turns, so renewing it is pointless.
                    Ok(false) => return,
                    // Redis away for a moment: the next period tries again.
                    Err(err) => tracing::warn!(%err, "could not renew a session lease"),
                }
            }
        })
    }

    async fn give_back(&self) -> Result<(), StoreError> {
        let key = self.idempotency_key.as_deref();
        self.store.release(&self.session, &self.token, key).await?;
        self.registry.remove(&self.token);
        Ok(())
    }

    /// Tries to give the lease back, after `pause` and then with pauses doubling up to
    /// [`LAST_PAUSE`], until it goes through or the lease has lapsed by itself (`lapses`
    /// is no earlier than that: the last renewal was before now).
    async fn give_back_until(self, lapses: Instant, mut pause: Duration) {
        loop {
            tokio::time::sleep(pause).await;
            match self.give_back().await {
                Ok(()) => return,
                Err(err) if self.worth_retrying(&err, lapses) => {}
                Err(err) => return self.give_up(&err),
            }
            pause = (pause * 2).clamp(FIRST_PAUSE, LAST_PAUSE);
        }
    }

    /// A release the store refused as a bug is not repeated; one that failed on the way
    /// is, while the lease can still hold the session.
    fn worth_retrying(&self, err: &StoreError, lapses: Instant) -> bool {
        !matches!(err, StoreError::Corrupt(_)) && Instant::now() < lapses
    }

    fn give_up(&self, err: &StoreError) {
        // The lease lapses by itself; this only costs the next send a wait.
        tracing::warn!(%err, "could not release a session lease");
        self.registry.remove(&self.token);
    }
}
