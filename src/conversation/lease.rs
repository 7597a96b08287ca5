//! The send lease of a session, released on every way out of a send.

use std::sync::Arc;

use crate::{domain::scope::SessionKey, shutdown::ActiveLeases, state::AppState, store::Store};

/// Holds a session's lease. Unless the turn was committed (which releases it in the same
/// script), dropping it gives the lease back — also when the request is cancelled
/// because the client went away — so the session is never stuck until the lease lapses.
/// It is also registered with the app, so a shutdown can release it.
pub struct Lease {
    store: Arc<dyn Store>,
    registry: Arc<ActiveLeases>,
    session: SessionKey,
    token: String,
    idempotency_key: Option<String>,
    held: bool,
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
        Lease {
            store: state.store.clone(),
            registry: state.leases.clone(),
            session: session.clone(),
            token,
            idempotency_key,
            held: true,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Gives the lease back now, before the caller answers: a client that retries at once
    /// after an error must find the session free (dropping only releases in the background).
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        let key = self.idempotency_key.take();
        match self
            .store
            .release(&self.session, &self.token, key.as_deref())
            .await
        {
            Ok(()) => self.registry.remove(&self.token),
            Err(err) => tracing::warn!(%err, "could not release a session lease"),
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
        self.held = false;
        self.registry.remove(&self.token);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // Deregistered only once released: if this runtime is already shutting down (a
        // worker stopped after the grace period), the task never runs and the shutdown
        // path releases the lease instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, registry) = (self.store.clone(), self.registry.clone());
        let (id, token, key) = (
            self.session.clone(),
            self.token.clone(),
            self.idempotency_key.take(),
        );
        runtime.spawn(async move {
            match store.release(&id, &token, key.as_deref()).await {
                Ok(()) => registry.remove(&token),
                // The lease lapses by itself; this only costs the next send a wait.
                Err(err) => tracing::warn!(%err, "could not release a session lease"),
            }
        });
    }
}
