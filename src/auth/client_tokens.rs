//! Client tokens, `srt_<secret>_<session id>`: what a browser holds instead of an API key.
//!
//! A token acts for one session only, on the routes listed in [`ROUTES`] — everything
//! else answers 403, including routes added later, because the list is opt-in. It carries
//! the tenant and the limits of the key that issued it, and dies with that key, with its
//! session (it is stored beside it, as a digest), or when it expires.

use actix_web::http::Method;

use super::api_keys::digest_hex;
use crate::domain::session::is_session_id;

const SCHEME: &str = "srt_";

/// (method, route pattern) a client token may call, on its own session's `{id}`.
const ROUTES: [(Method, &str); 4] = [
    (Method::GET, "/v1/sessions/{id}"),
    (Method::GET, "/v1/sessions/{id}/messages"),
    (Method::POST, "/v1/sessions/{id}/messages"),
    (Method::GET, "/v1/sessions/{id}/context"),
];

pub struct Issued {
    /// The plaintext, shown once.
    pub token: String,
    pub digest: String,
}

pub fn generate(session_id: &str) -> Issued {
    let token = format!(
        "{SCHEME}{}_{session_id}",
        hex::encode(rand::random::<[u8; 32]>())
    );
    Issued {
        digest: digest_hex(&token),
        token,
    }
}

/// The session of a bearer shaped like a client token.
pub fn session_of(bearer: &str) -> Option<&str> {
    let (secret, session_id) = bearer.strip_prefix(SCHEME)?.split_once('_')?;
    let well_formed = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && is_session_id(session_id)).then_some(session_id)
}

/// Whether a token of `session_id` may call this route with this `{id}`.
pub fn permits(session_id: &str, method: &Method, pattern: Option<&str>, id: Option<&str>) -> bool {
    let listed = ROUTES
        .iter()
        .any(|(m, p)| m == method && Some(*p) == pattern);
    listed && id == Some(session_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_token_names_its_session_and_only_listed_routes_pass() {
        let sid = "abc_def-1";
        let issued = generate(sid);
        assert_eq!(session_of(&issued.token), Some(sid));
        let pattern = Some("/v1/sessions/{id}/messages");
        assert!(permits(sid, &Method::POST, pattern, Some(sid)));
        assert!(!permits(sid, &Method::POST, pattern, Some("other")));
        assert!(!permits(
            sid,
            &Method::DELETE,
            Some("/v1/sessions/{id}"),
            Some(sid)
        ));
        assert!(!permits(
            sid,
            &Method::GET,
            Some("/v1/users/{user_id}/sessions"),
            None
        ));
        assert_eq!(session_of("srt_xyz_abc"), None);
        assert_eq!(session_of("sr_0123456789ab_00"), None);
    }
}
