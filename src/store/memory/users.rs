//! The user index of the memory store: (tenant, user id) → the user's sessions by creation
//! time. Each read, prune and logout is one mutex section (the caller holds the lock), so
//! the check that a session still is the user's and what follows from it are atomic, as the
//! Redis store makes them per session (see `store/redis/users.rs`).

use std::collections::BTreeMap;

use super::State;
use crate::domain::{scope::SessionKey, session::SessionConfig};

impl State {
    /// Takes a session out of its user's index.
    pub(super) fn unindex(&mut self, id: &str, config: &SessionConfig) {
        if let Some(user) = &config.user_id
            && let Some(index) = self.users.get_mut(&(config.tenant.clone(), user.clone()))
        {
            index.retain(|(_, sid), _| sid != id);
        }
    }

    /// Puts a session in its user's index, once: an id made again for the same user
    /// (after it expired, by an import) replaces its old entry.
    pub(super) fn index(&mut self, id: &str, config: &SessionConfig) {
        self.unindex(id, config);
        if let Some(user) = &config.user_id {
            let created = config.created_at.timestamp_micros();
            self.users
                .entry((config.tenant.clone(), user.clone()))
                .or_default()
                .insert((created, id.to_string()), ());
        }
    }

    /// The user's live sessions, oldest first. An entry whose id expired, or now names a
    /// session of someone else (made again under that id), is dropped, never returned:
    /// one mutex section checks and prunes, as the Redis store does per session.
    pub(super) fn user_index(&mut self, tenant: &str, user_id: &str) -> Vec<String> {
        let key = (tenant.to_string(), user_id.to_string());
        let Some(entries) = self.users.remove(&key) else {
            return Vec::new();
        };
        let kept: BTreeMap<(i64, String), ()> = entries
            .into_iter()
            .filter(|((_, id), ())| {
                self.live(&SessionKey::new(tenant, id))
                    .is_some_and(|e| e.session.config.belongs_to(tenant, user_id))
            })
            .collect();
        let ids = kept.keys().map(|(_, id)| id.clone()).collect();
        if !kept.is_empty() {
            self.users.insert(key, kept);
        }
        ids
    }

    /// Deletes the user's sessions and the index; returns how many there were. A session
    /// created later (after the lock is released) starts a new index.
    pub(super) fn logout(&mut self, tenant: &str, user_id: &str) -> u64 {
        let ids = self.user_index(tenant, user_id);
        for id in &ids {
            self.sessions.remove(&SessionKey::new(tenant, id));
        }
        self.users
            .remove(&(tenant.to_string(), user_id.to_string()));
        ids.len() as u64
    }
}
