//! OpenAI's Conversations API: a conversation is a session, its items are its turns.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    deletion,
    items::{Input, MAX_ITEMS, items_of, turns_of},
    lookup, page,
};
use crate::{
    auth::Caller,
    conversation::append::append_turns,
    domain::ids,
    domain::{
        params::check_metadata,
        session::{PatchSession, StoredSession},
        turns::{Batch, check_new_turns},
    },
    error::ApiError,
    routes::{extract::ApiJson, openai::OpenAiError, sessions::update},
    state::AppState,
};

pub fn configure(cfg: &mut crate::routes::Routes) {
    cfg.service(create)
        .service(retrieve)
        .service(change)
        .service(remove)
        .service(list_items)
        .service(add_items)
        .service(get_item)
        .service(delete_item);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConversation {
    metadata: Option<Map<String, Value>>,
    items: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConversation {
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddItems {
    items: Vec<Value>,
}

fn object(session: &StoredSession) -> Value {
    json!({
        "id": ids::conversation_id(&session.id),
        "object": "conversation",
        "created_at": session.config.created_at.timestamp(),
        "metadata": session.config.metadata,
    })
}

fn field_in_items(_: usize, rest: &str) -> String {
    format!("items{rest}")
}

/// The turns of up to twenty items.
fn new_turns(items: Vec<Value>) -> Result<Vec<crate::domain::message::Message>, ApiError> {
    if items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_ITEMS} items"),
        ));
    }
    turns_of(Input::Items(items), "items")
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[post("/v1/conversations")]
async fn create(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<CreateConversation>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let (caller, body) = (caller?, body?.value);
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let turns = new_turns(body.items.unwrap_or_default())?;
    let max_bytes = state.settings.sessions.max_message_bytes;
    if !turns.is_empty() {
        check_new_turns(&turns, &[], max_bytes, &field_in_items, Batch::Items)?;
    }
    let config = crate::domain::session::SessionConfig {
        metadata,
        ..super::new_session(&state, &caller, &state.settings.sessions.default_model)
    };
    let id = super::create_session(&state, &config).await?;
    if !turns.is_empty()
        && let Err(err) = append_turns(&state, &caller, &id, turns, &field_in_items).await
    {
        // Created whole or not at all.
        let _ = state.store.delete_session(&caller.session(&id)).await;
        return Err(err.into());
    }
    let session = lookup::conversation(&state, &caller, &ids::conversation_id(&id)).await?;
    Ok(HttpResponse::Ok().json(object(&session)))
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[get("/v1/conversations/{id}")]
async fn retrieve(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let session = lookup::conversation(&state, &caller?, &id).await?;
    Ok(HttpResponse::Ok().json(object(&session)))
}

/// Replaces the conversation's metadata (OpenAI's update has no other field).
#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[post("/v1/conversations/{id}")]
async fn change(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    body: Result<ApiJson<UpdateConversation>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let (caller, body) = (caller?, body?.value);
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let session = lookup::conversation(&state, &caller, &id).await?;
    // A merge that removes every key not given is a replacement.
    let mut merge: Map<String, Value> = session
        .config
        .metadata
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    merge.extend(metadata);
    let patch = PatchSession {
        metadata: Some(merge),
        ..PatchSession::default()
    };
    let session = update(&state, &caller, &session.id, &patch).await?;
    Ok(HttpResponse::Ok().json(object(&session)))
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[delete("/v1/conversations/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let session = lookup::conversation(&state, &caller?, &id).await?;
    if !state.store.delete_session(&session.key()).await? {
        return Err(ApiError::SessionNotFound.into());
    }
    metrics::counter!("sessions_deleted_total").increment(1);
    Ok(HttpResponse::Ok()
        .json(json!({"id": id.as_str(), "object": "conversation.deleted", "deleted": true})))
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[get("/v1/conversations/{id}/items")]
async fn list_items(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    query: Result<web::Query<page::PageQuery>, actix_web::Error>,
) -> Result<HttpResponse, OpenAiError> {
    let query = page::query(query)?;
    let session = lookup::conversation(&state, &caller?, &id).await?;
    let page = page::page(
        state.store.as_ref(),
        &session.key(),
        0..session.message_count,
        &query,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[post("/v1/conversations/{id}/items")]
async fn add_items(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    body: Result<ApiJson<AddItems>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let (caller, body) = (caller?, body?.value);
    let turns = new_turns(body.items)?;
    let session = lookup::conversation(&state, &caller, &id).await?;
    let stored = append_turns(&state, &caller, &session.id, turns, &field_in_items).await?;
    let data: Vec<Value> = stored.iter().flat_map(items_of).collect();
    let id = |item: Option<&Value>| item.map_or(Value::Null, |i| i["id"].clone());
    let list = json!({"object": "list", "first_id": id(data.first()), "last_id": id(data.last()), "has_more": false, "data": data});
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[get("/v1/conversations/{id}/items/{item}")]
async fn get_item(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OpenAiError> {
    let (id, item) = path.into_inner();
    let session = lookup::conversation(&state, &caller?, &id).await?;
    let (index, turn_id, _) = ids::parse_item_id(&item).ok_or(ApiError::SessionNotFound)?;
    let turn = state.store.turns(&session.key(), index, 1).await?.pop();
    let found = turn
        .filter(|t| t.id == turn_id)
        .and_then(|t| items_of(&t).into_iter().find(|i| i["id"] == json!(item)));
    Ok(HttpResponse::Ok().json(found.ok_or(ApiError::SessionNotFound)?))
}

/// Turns near an item that deleting it may touch: a call's output follows it, a call
/// precedes its output, each within one send's worth of turns.
const AROUND: u64 = crate::domain::turns::MAX_NEW_TURNS as u64;

#[utoipa::path(tag = "conversations", responses((status = 200, description = "See README: Conversations API")))]
#[delete("/v1/conversations/{id}/items/{item}")]
async fn delete_item(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OpenAiError> {
    let (id, item) = path.into_inner();
    let session = lookup::conversation(&state, &caller?, &id).await?;
    let (index, turn_id, part) = ids::parse_item_id(&item).ok_or(ApiError::SessionNotFound)?;
    if index >= session.message_count {
        return Err(ApiError::SessionNotFound.into());
    }
    let first = index.saturating_sub(AROUND);
    let count = (index + AROUND + 1).min(session.message_count) - first;
    let turns = state
        .store
        .turns(&session.key(), first, count as usize)
        .await?;
    let own = turns
        .get((index - first) as usize)
        .is_some_and(|t| t.id == turn_id);
    let changes = deletion::changes(&turns, first, index, &part).filter(|_| own);
    let changes = changes.ok_or(ApiError::SessionNotFound)?;
    if !state.store.replace_turns(&session.key(), &changes).await? {
        return Err(ApiError::SessionBusy { retry_after: 1 }.into());
    }
    Ok(HttpResponse::Ok().json(object(&session)))
}
