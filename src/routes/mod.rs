//! HTTP only: parse, call the domain and the store, map the answer.

mod admin;
pub mod auth;
mod client_tokens;
pub mod connections;
pub mod cors;
pub mod docs;
pub mod extract;
pub mod fallback;
mod health;
mod messages;
mod openai;
mod playground;
mod responses;
mod sessions;
mod transfer;
mod usage;
mod users;

use crate::{
    auth::Caller,
    domain::session::{StoredSession, is_session_id},
    error::ApiError,
    state::AppState,
};

/// Route registration that also builds the OpenAPI document: a handler registered here
/// without a `#[utoipa::path]` does not compile, so the document cannot drift.
pub type Routes<'a> = utoipa_actix_web::service_config::ServiceConfig<'a>;

pub fn configure(cfg: &mut Routes) {
    // Routes are tried in this order, each pattern with a path parameter by a regex (and
    // again for the route label of metrics and logs): the send, the hot path, goes first.
    messages::configure(cfg);
    health::configure(cfg);
    // Before `sessions`: `/v1/sessions/import` must not be taken for a session id.
    transfer::configure(cfg);
    sessions::configure(cfg);
    users::configure(cfg);
    openai::configure(cfg);
    responses::configure(cfg);
    admin::configure(cfg);
    usage::configure(cfg);
    client_tokens::configure(cfg);
    playground::configure(cfg);
    docs::configure(cfg);
}

/// The caller's session, or 404: unknown, expired, deleted and foreign ids look the same.
pub(crate) async fn owned_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<StoredSession, ApiError> {
    if !is_session_id(id) {
        return Err(ApiError::SessionNotFound);
    }
    match state.store.get_session(&caller.session(id)).await? {
        Some(session) if session.config.tenant == caller.tenant => Ok(session),
        _ => Err(ApiError::SessionNotFound),
    }
}

/// `?limit=&after=` of the paginated listings.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
}

/// A page of a listing, oldest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    /// The `after` of the next page, while there is one.
    pub next_cursor: Option<String>,
}

impl PageQuery {
    /// The page size asked for: 1 to 1000, 50 when unsaid.
    fn page_size(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=1000) => Ok(n),
            Some(_) => Err(ApiError::invalid("limit", "must be between 1 and 1000")),
        }
    }
}
