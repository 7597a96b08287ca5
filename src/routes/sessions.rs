//! `/v1/sessions`: create, read, change, delete, keep alive, and read the history.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::Utc;

use super::{
    Page, PageQuery,
    docs::ErrorBody,
    extract::{ApiJson, ApiQuery},
    owned_session,
};
use crate::domain::session::now_ms;
use crate::{
    auth::Caller,
    domain::{
        message::{TurnView, message_index},
        session::{
            CreateSession, Limits, PatchSession, SessionConfig, SessionView, StoredSession,
            UsageTotals, is_session_id, new_id,
        },
    },
    error::ApiError,
    state::AppState,
    store::WriteOutcome,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(create)
        .service(get_or_create)
        .service(read)
        .service(change)
        .service(remove)
        .service(touch)
        .service(compact)
        .service(history);
}

pub(crate) fn limits(state: &AppState) -> Limits<'_> {
    Limits {
        max_ttl_seconds: state.settings.sessions.max_ttl_seconds,
        models: &state.models,
    }
}

#[utoipa::path(tag = "sessions", request_body = CreateSession, responses(
    (status = 201, description = "The new session", body = SessionView),
    (status = 409, description = "`session_exists`: the caller's tenant holds this `session_id`", body = ErrorBody),
))]
#[post("/v1/sessions")]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    let chosen = body.value.session_id.clone();
    let id = checked_id(chosen.as_deref())?.unwrap_or_else(new_id);
    match make(&state, &caller, id, body.value).await? {
        Ok(session) => Ok(HttpResponse::Created().json(SessionView::from(session))),
        Err(_) if chosen.is_some() => Err(ApiError::SessionExists),
        Err(_) => Err(ApiError::Internal("session id collision".into())),
    }
}

/// Get-or-create: `201` with the session made from the body, or `200` with the one the
/// caller's tenant already holds under `id`, its settings untouched (PATCH changes them).
#[utoipa::path(tag = "sessions", request_body = CreateSession, responses(
    (status = 201, description = "Made from the body", body = SessionView),
    (status = 200, description = "It existed: returned as it is, the body ignored", body = SessionView),
))]
#[put("/v1/sessions/{id}")]
async fn get_or_create(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    let id = checked_id(Some(&id))?.unwrap_or_default();
    if body.value.session_id.as_ref().is_some_and(|s| *s != id) {
        return Err(ApiError::invalid(
            "session_id",
            "must be the id of the path",
        ));
    }
    // An existing session wins even if it expires right after: a retry makes it again.
    for _ in 0..2 {
        match make(&state, &caller, id.clone(), body.value.clone()).await? {
            Ok(session) => return Ok(HttpResponse::Created().json(SessionView::from(session))),
            Err(()) => match owned_session(&state, &caller, &id).await {
                Ok(session) => return Ok(HttpResponse::Ok().json(SessionView::from(session))),
                Err(ApiError::SessionNotFound) => continue,
                Err(err) => return Err(err),
            },
        }
    }
    Err(ApiError::SessionBusy { retry_after: 1 })
}

/// A caller-chosen id, checked by the rules of imported ones.
fn checked_id(id: Option<&str>) -> Result<Option<String>, ApiError> {
    match id {
        Some(id) if !is_session_id(id) => Err(ApiError::invalid(
            "session_id",
            "1 to 128 characters: letters, digits, - and _",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// Creates session `id` of the caller's tenant from `body`; `Err(())` when the tenant
/// already holds that id.
async fn make(
    state: &AppState,
    caller: &Caller,
    id: String,
    body: CreateSession,
) -> Result<Result<StoredSession, ()>, ApiError> {
    let config = new_config(state, caller, body);
    config.validate(&limits(state))?;
    let now = now_ms();
    if !state.store.create_session(&id, &config, now).await? {
        return Ok(Err(()));
    }
    metrics::counter!("sessions_created_total").increment(1);
    Ok(Ok(StoredSession {
        id,
        config,
        revision: 1,
        last_activity_ms: now,
        message_count: 0,
        usage: UsageTotals::default(),
        summary: None,
        summary_generation: 0,
    }))
}

fn new_config(state: &AppState, caller: &Caller, body: CreateSession) -> SessionConfig {
    let defaults = &state.settings.sessions;
    let mut compaction = state.settings.compaction.policy();
    if let Some(patch) = body.compaction {
        compaction.apply(patch);
    }
    SessionConfig {
        tenant: caller.tenant.clone(),
        user_id: body.user_id,
        model: body.model.unwrap_or_else(|| defaults.default_model.clone()),
        fallback_models: body.fallback_models.unwrap_or_default(),
        system_prompt: body.system_prompt,
        context_window: body.context_window,
        max_context_tokens: body.max_context_tokens,
        max_tokens: body.max_tokens,
        temperature: body.temperature,
        ttl_seconds: body.ttl_seconds.unwrap_or(defaults.default_ttl_seconds),
        metadata: body.metadata.unwrap_or_default(),
        max_cost_usd: body.max_cost_usd,
        tools: body.tools.unwrap_or_default(),
        response_format: body.response_format,
        compaction,
        created_at: Utc::now(),
    }
}

#[utoipa::path(tag = "sessions", responses((status = 200, description = "The session (the TTL is not refreshed)", body = SessionView)))]
#[get("/v1/sessions/{id}")]
async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// How often a PATCH re-reads and re-applies itself when another write got in first.
const PATCH_ATTEMPTS: usize = 5;

#[utoipa::path(tag = "sessions", request_body = PatchSession, responses(
    (status = 200, description = "The changed session", body = SessionView),
    (status = 409, description = "Concurrent changes kept winning", body = ErrorBody),
))]
#[patch("/v1/sessions/{id}")]
async fn change(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<PatchSession>,
) -> Result<HttpResponse, ApiError> {
    let session = update(&state, &caller, &id, &body.value).await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// Applies `patch` to the caller's session as a compare-and-set on its revision, applied
/// again to the freshest configuration when another write got in first.
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    patch: &PatchSession,
) -> Result<StoredSession, ApiError> {
    for _ in 0..PATCH_ATTEMPTS {
        let mut session = owned_session(state, caller, id).await?;
        session.config.apply_patch(patch.clone());
        session.config.validate(&limits(state))?;
        let now = now_ms();
        match state
            .store
            .update_config(&session.key(), &session.config, session.revision, now)
            .await?
        {
            WriteOutcome::Written => {
                session.revision += 1;
                session.last_activity_ms = now;
                if let Some(summary) = &patch.summary {
                    crate::conversation::compaction::put_summary(
                        state,
                        &mut session,
                        summary.as_ref(),
                    )
                    .await?;
                }
                return Ok(session);
            }
            WriteOutcome::Missing => return Err(ApiError::SessionNotFound),
            WriteOutcome::Conflict => continue,
        }
    }
    Err(ApiError::SessionBusy { retry_after: 1 })
}

#[utoipa::path(tag = "sessions", responses((status = 204, description = "Deleted, every key of it")))]
#[delete("/v1/sessions/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &caller, &id).await?;
    if state.store.delete_session(&session.key()).await? {
        metrics::counter!("sessions_deleted_total").increment(1);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::SessionNotFound)
    }
}

#[utoipa::path(tag = "sessions", responses((status = 200, description = "The session, its TTL refreshed", body = SessionView)))]
#[post("/v1/sessions/{id}/touch")]
async fn touch(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut session = owned_session(&state, &caller, &id).await?;
    let now = now_ms();
    if !state.store.touch(&session.key(), now).await? {
        return Err(ApiError::SessionNotFound);
    }
    session.last_activity_ms = now;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// `POST /v1/sessions/{id}/compact`: what the job did.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct CompactView {
    /// `compacted`, `nothing_to_fold`, `busy` (another job holds the session), `stale`
    /// (the summary changed meanwhile; nothing was written) or `rejected`.
    outcome: &'static str,
    folded_messages: u64,
    summarizer_calls: usize,
    summary: Option<crate::domain::compaction::SummaryView>,
}

#[utoipa::path(tag = "sessions", responses((status = 200, description = "The compaction ran (whatever the session's mode); the session's summary as it is now", body = CompactView)))]
#[post("/v1/sessions/{id}/compact")]
async fn compact(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use crate::conversation::compaction::{JobError, Outcome, run_now};
    let session = owned_session(&state, &caller, &id).await?;
    let (outcome, folded, calls) = match run_now(&state, &session.key()).await {
        Ok(Outcome::Missing) => return Err(ApiError::SessionNotFound),
        Ok(Outcome::Compacted { folded, chunks, .. }) => ("compacted", folded, chunks),
        Ok(other) => (other.label(), 0, 0),
        Err(JobError::Rejected) => ("rejected", 0, 0),
        Err(JobError::Store(err)) => return Err(err.into()),
        Err(JobError::Upstream(err) | JobError::Config(err)) => return Err(err),
    };
    let session = owned_session(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(CompactView {
        outcome,
        folded_messages: folded,
        summarizer_calls: calls,
        summary: session.summary.as_ref().map(Into::into),
    }))
}

#[utoipa::path(tag = "sessions", params(PageQuery), responses((status = 200, description = "The history, oldest first", body = Page<TurnView>)))]
#[get("/v1/sessions/{id}/messages")]
async fn history(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.page_size()?;
    let session = owned_session(&state, &caller, &id).await?;
    let bad_cursor = || ApiError::invalid("after", "not a message of this session");
    let (start, skip) = match &query.after {
        None => (0, 0),
        Some(after) => {
            let index = message_index(after).filter(|i| *i < session.message_count);
            (index.ok_or_else(bad_cursor)?, 1)
        }
    };
    // One extra turn tells whether there is more; the cursor's own turn is read to check it.
    let mut turns = state
        .store
        .turns(&session.key(), start, limit + 1 + skip)
        .await?;
    if let Some(after) = &query.after {
        if turns.first().is_none_or(|t| &t.id != after) {
            return Err(bad_cursor());
        }
        turns.remove(0);
    }
    let has_more = turns.len() > limit;
    turns.truncate(limit);
    let next_cursor = if has_more {
        turns.last().map(|t| t.id.clone())
    } else {
        None
    };
    let data: Vec<TurnView> = turns.iter().map(TurnView::from).collect();
    Ok(HttpResponse::Ok().json(Page {
        data,
        has_more,
        next_cursor,
    }))
}
