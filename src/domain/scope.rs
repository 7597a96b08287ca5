//! Where a session lives: ids are per tenant.
//!
//! Two tenants may hold the same session id as two unrelated sessions, so a session is
//! found by its tenant and its id together, never by the id alone. The tenant enters as
//! a digest: it fits any key, and a client token (which must find its session before
//! anyone is authenticated) can carry it without naming the tenant.

use sha2::{Digest, Sha256};

/// A session's address in a store: the digest of its tenant and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    scope: String,
    id: String,
}

impl SessionKey {
    /// Session `id` of `tenant`.
    pub fn new(tenant: &str, id: &str) -> SessionKey {
        SessionKey::scoped(tenant_scope(tenant), id)
    }

    /// Session `id` of the tenant whose [`tenant_scope`] is `scope`.
    pub fn scoped(scope: String, id: &str) -> SessionKey {
        SessionKey {
            scope,
            id: id.to_string(),
        }
    }

    /// The session id, as the tenant knows it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// 32 hex digits naming the tenant.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

/// 32 hex digits (128 bits of SHA-256) naming a tenant in keys and client tokens.
pub fn tenant_scope(tenant: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"tenant\0")
        .chain_update(tenant.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// Whether `s` looks like a [`tenant_scope`].
pub fn is_scope(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_apart_scopes_of_a_fixed_shape() {
        let (a, b) = (tenant_scope("acme"), tenant_scope("globex"));
        assert_ne!(a, b);
        assert!(is_scope(&a) && is_scope(&b));
        assert_ne!(SessionKey::new("acme", "x"), SessionKey::new("globex", "x"));
        assert_eq!(SessionKey::new("acme", "x"), SessionKey::scoped(a, "x"));
        assert!(!is_scope("ABCDEF0123456789abcdef0123456789"));
    }
}
