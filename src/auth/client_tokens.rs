//! Client tokens, `srt_<secret>_<scope>_<session id>`: what a browser holds instead of an
//! API key. `scope` names the tenant ([`tenant_scope`](crate::domain::scope::tenant_scope)):
//! session ids are per tenant, and the token must find its session before its tenant is
//! known. (Tokens of layout 3 and older, `srt_<secret>_<session id>`, are refused: they
//! are short-lived, and a client asks for a new one.)
//!
//! A token acts for one session only, on the routes listed in [`ROUTES`] — everything
//! else answers 403, including routes added later, because the list is opt-in. The same
//! session is reached as a conversation (`conv_<id>`) and through its responses
//! (`resp_<id>_…`); a route whose body names the session (`POST /v1/responses`) is left to
//! its handler, which checks [`Caller::session_scope`](super::Caller). It carries
//! the tenant and the limits of the key that issued it, and dies with that key, with its
//! session (it is stored beside it, as a digest), or when it expires.

use actix_web::http::Method;

use super::api_keys::digest_hex;
use crate::domain::{
    ids,
    scope::{SessionKey, is_scope},
    session::is_session_id,
};

const SCHEME: &str = "srt_";

/// How a route's `{id}` names the session.
#[derive(Clone, Copy)]
enum Names {
    Session,
    Conversation,
    Response,
    /// The body names it, and the handler checks.
    Body,
}

/// (method, route pattern) a client token may call, on its own session's `{id}`.
const ROUTES: [(Method, &str, Names); 11] = [
    (Method::GET, "/v1/sessions/{id}", Names::Session),
    (Method::GET, "/v1/sessions/{id}/messages", Names::Session),
    (Method::POST, "/v1/sessions/{id}/messages", Names::Session),
    (Method::GET, "/v1/sessions/{id}/context", Names::Session),
    (Method::GET, "/v1/conversations/{id}", Names::Conversation),
    (
        Method::GET,
        "/v1/conversations/{id}/items",
        Names::Conversation,
    ),
    (
        Method::GET,
        "/v1/conversations/{id}/items/{item}",
        Names::Conversation,
    ),
    (Method::GET, "/v1/responses/{id}", Names::Response),
    (
        Method::GET,
        "/v1/responses/{id}/input_items",
        Names::Response,
    ),
    (Method::POST, "/v1/responses", Names::Body),
    (Method::POST, "/v1/responses/input_tokens", Names::Body),
];

pub struct Issued {
    /// The plaintext, shown once.
    pub token: String,
    pub digest: String,
}

pub fn generate(session: &SessionKey) -> Issued {
    let token = format!(
        "{SCHEME}{}_{}_{}",
        hex::encode(rand::random::<[u8; 32]>()),
        session.scope(),
        session.id()
    );
    Issued {
        digest: digest_hex(&token),
        token,
    }
}

/// The session of a bearer shaped like a client token.
pub fn session_of(bearer: &str) -> Option<SessionKey> {
    let (secret, rest) = bearer.strip_prefix(SCHEME)?.split_once('_')?;
    let (scope, session_id) = rest.split_once('_')?;
    let well_formed = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && is_scope(scope) && is_session_id(session_id))
        .then(|| SessionKey::scoped(scope.to_string(), session_id))
}

/// Whether a token of `session_id` may call this route with this `{id}`.
pub fn permits(session_id: &str, method: &Method, pattern: Option<&str>, id: Option<&str>) -> bool {
    let route = ROUTES
        .iter()
        .find(|(m, p, _)| m == method && Some(*p) == pattern);
    let Some((_, _, names)) = route else {
        return false;
    };
    let named = match names {
        Names::Session => id,
        Names::Conversation => id.and_then(ids::session_of_conversation),
        Names::Response => id
            .and_then(ids::parse_response_id)
            .map(|(session, _)| session),
        Names::Body => return true,
    };
    named == Some(session_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_token_names_its_session_and_only_listed_routes_pass() {
        let sid = "abc_def-1";
        let session = SessionKey::new("acme", sid);
        let issued = generate(&session);
        assert_eq!(session_of(&issued.token), Some(session));
        // The layout-3 form, without the tenant's scope, names no session.
        let legacy = format!("srt_{}_{sid}", "0".repeat(64));
        assert_eq!(session_of(&legacy), None);
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
        let conversation = Some("/v1/conversations/{id}/items");
        assert!(permits(
            sid,
            &Method::GET,
            conversation,
            Some("conv_abc_def-1")
        ));
        assert!(!permits(
            sid,
            &Method::GET,
            conversation,
            Some("conv_other")
        ));
        let response = format!("resp_{sid}_{}", crate::domain::message::message_id(3));
        assert!(permits(
            sid,
            &Method::GET,
            Some("/v1/responses/{id}"),
            Some(&response)
        ));
        assert!(!permits(
            sid,
            &Method::DELETE,
            Some("/v1/responses/{id}"),
            Some(&response)
        ));
        assert_eq!(session_of("srt_xyz_abc"), None);
        assert_eq!(session_of("sr_0123456789ab_00"), None);
    }
}
