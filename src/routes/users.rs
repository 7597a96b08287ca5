//! `/v1/users/{user_id}/sessions`: the login / logout lifecycle of a user's sessions.

use actix_web::{HttpResponse, delete, get, web};
use futures_util::future::try_join_all;

use super::{Page, PageQuery, extract::ApiQuery};
use crate::domain::session::now_ms;
use crate::{
    auth::Caller,
    domain::session::{SessionView, is_user_id},
    error::ApiError,
    state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(list).service(logout);
}

fn checked_user(user_id: &str) -> Result<&str, ApiError> {
    if is_user_id(user_id) {
        Ok(user_id)
    } else {
        Err(ApiError::invalid(
            "user_id",
            "1 to 256 characters, no control characters",
        ))
    }
}

#[utoipa::path(tag = "users", params(PageQuery), responses((status = 200, description = "The user's live sessions", body = Page<SessionView>)))]
#[get("/v1/users/{user_id}/sessions")]
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<String>,
    query: ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.page_size()?;
    let user_id = checked_user(&user_id)?;
    let ids = state
        .store
        .user_sessions(&caller.tenant, user_id, now_ms())
        .await?;
    let start = match &query.after {
        None => 0,
        Some(after) => {
            1 + ids
                .iter()
                .position(|id| id == after)
                .ok_or_else(|| ApiError::invalid("after", "not a session of this user"))?
        }
    };
    let page: Vec<&String> = ids.iter().skip(start).take(limit).collect();
    let has_more = ids.len() > start + page.len();
    let keys: Vec<_> = page.iter().map(|id| caller.session(id)).collect();
    let sessions = try_join_all(keys.iter().map(|at| state.store.get_session(at))).await?;
    // A session may expire between the listing and its read, and its id may even name
    // someone else's session by then: each is checked on the read that returns it.
    let data: Vec<SessionView> = sessions
        .into_iter()
        .flatten()
        .filter(|s| s.config.belongs_to(&caller.tenant, user_id))
        .map(SessionView::from)
        .collect();
    let next_cursor = if has_more {
        page.last().map(|id| id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page {
        data,
        has_more,
        next_cursor,
    }))
}

/// `DELETE /v1/users/{user_id}/sessions`: how many sessions the logout removed.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Deleted {
    deleted: u64,
}

#[utoipa::path(tag = "users", responses((status = 200, description = "Every session of the user deleted", body = Deleted)))]
#[delete("/v1/users/{user_id}/sessions")]
async fn logout(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = checked_user(&user_id)?;
    let deleted = state
        .store
        .delete_user_sessions(&caller.tenant, user_id, now_ms())
        .await?;
    metrics::counter!("sessions_deleted_total").increment(deleted);
    Ok(HttpResponse::Ok().json(Deleted { deleted }))
}
