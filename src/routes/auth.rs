//! Authentication at the edge: the middleware that runs [`KeyRing::authenticate`] before
//! any handler reads the request, and the [`Caller`] and [`Admin`] extractors.

use std::future::Ready;

use actix_web::{
    FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::Next,
    web,
};

use crate::{
    auth::{Admin, Caller, Presented, client_tokens},
    error::ApiError,
    state::AppState,
};

/// The outcome of [`authenticate_first`], kept in the request for the extractors.
struct Authenticated(Result<Caller, ApiError>);

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Authenticates every request before its handler reads anything (a body included), so
/// the auth answer always comes first, and takes the request from its key's per-minute
/// limit. The outcome waits in the request for the [`Caller`] and [`Admin`] extractors;
/// routes that need neither ignore it. A 401 goes back to an address that keeps failing
/// a little later each time ([`throttle`]) — only after the answer is decided, so the
/// wait never changes which answer a request gets.
pub async fn authenticate_first(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let presented = Presented {
        bearer: bearer(req.request()).map(str::to_string),
        peer: req.peer_addr().map(|addr| addr.ip()),
    };
    if let Some(state) = &state {
        let outcome = match state
            .keys
            .authenticate(state.store.as_ref(), &presented)
            .await
        {
            Ok(caller) => {
                crate::telemetry::record_tenant(&caller.tenant);
                crate::metering::take_request(state, &caller)
                    .await
                    .map(|()| caller)
            }
            Err(err) => Err(err),
        };
        req.extensions_mut().insert(Authenticated(outcome));
    }
    let response = next.call(req).await?;
    if response.status() == StatusCode::UNAUTHORIZED
        && let Some(state) = state
    {
        state.keys.failed_attempt(presented.peer).await;
    }
    Ok(response)
}

/// The middleware's outcome. A failure is taken out (it ends the request); a caller is
/// copied, for handlers that extract it more than once.
fn authenticated(req: &HttpRequest) -> Result<Caller, ApiError> {
    let mut extensions = req.extensions_mut();
    if let Some(Authenticated(Ok(caller))) = extensions.get::<Authenticated>() {
        return Ok(caller.clone());
    }
    match extensions.remove::<Authenticated>() {
        Some(Authenticated(Err(err))) => Err(err),
        _ => Err(ApiError::Internal("request not authenticated".into())),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    /// A client token passes only on the routes it covers, on its own session.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = authenticated(req).and_then(|caller| match &caller.session_scope {
            Some(session) => {
                let (pattern, id) = (req.match_pattern(), req.match_info().get("id"));
                client_tokens::permits(session, req.method(), pattern.as_deref(), id)
                    .then_some(caller)
                    .ok_or(ApiError::Forbidden)
            }
            None => Ok(caller),
        });
        std::future::ready(result)
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let is_admin = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| bearer(req).is_some_and(|key| state.keys.is_admin(key)));
        let result = if is_admin {
            Ok(Admin)
        } else {
            authenticated(req).and(Err(ApiError::Forbidden))
        };
        std::future::ready(result)
    }
}
