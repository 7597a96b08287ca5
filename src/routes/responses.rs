//! OpenAI's Responses API, served from sessions, for any configured upstream.
//!
//! A response is one send: it goes through the same admission, context builder, router
//! and commit as `POST /v1/sessions/{id}/messages` (`conversation::send`), with its input
//! items as the new turns and its parameters as the send's options. With
//! `previous_response_id` it continues that response's session — or, when that response
//! is not the newest of its session, a copy of the session up to it (a fork, as OpenAI
//! branches); with `conversation` it continues that session; with neither it starts one
//! (unless `store: false`, which keeps nothing at all). See [`ids`] for how every id maps
//! onto sessions and turns.

mod conversations;
mod deletion;
mod events;
mod items;
mod lookup;
mod object;
mod page;
mod request;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::Utc;
use serde_json::{Value, json};

use self::{
    events::{ResponseEvents, replayed},
    object::{Ending, Shell, response, status},
    request::{ResponsesRequest, Truncation},
};
use super::{extract::ApiJson, messages::idempotency_claim, openai::OpenAiError};
use crate::{
    auth::Caller,
    conversation::{
        answer::{self, Answering},
        outcome::Completed,
        send::{SendInput, Started, prepare},
    },
    domain::{
        ids,
        message::{Message, Role, message_id},
        session::{SessionConfig, new_id, now_ms},
        turns::{Batch, check_new_turns},
    },
    error::ApiError,
    state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(create)
        .service(input_tokens)
        .service(retrieve)
        .service(remove)
        .service(input_items);
    conversations::configure(cfg);
}

/// Field names of the turns an input adds: items merge into turns, so the input as a whole.
fn field_in_input(_: usize, rest: &str) -> String {
    format!("input{rest}")
}

#[utoipa::path(tag = "responses", responses((status = 200, description = "See README: Responses API")))]
#[post("/v1/responses")]
async fn create(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: Result<ApiJson<ResponsesRequest>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let caller = caller?;
    let ApiJson {
        value: mut request,
        raw,
    } = body?;
    request.refused()?;
    let turns = input_turns(&state, &mut request)?;
    let (session, continues) = match lookup::target(&state, &caller, &request).await? {
        lookup::Target::Stateless => return Ok(stateless(state, &caller, &request, turns).await?),
        lookup::Target::Session { id, continues } => (id, continues),
    };
    let asked = request.asked()?;
    let echo = request.echo();
    let send = SendInput {
        batch: Batch::Items,
        model: Some(request.model.clone()),
        max_tokens: request.max_output_tokens,
        temperature: request.temperature,
        tools: asked.tools,
        tool_choice: asked.tool_choice,
        response_format: asked.response_format,
        params: asked.params,
        extra: asked.extra,
        idempotency: idempotency_claim(&state, &req, &raw)?,
        instructions: request.instructions.clone(),
        whole_history: request.truncation() == Truncation::Disabled,
        keep: request.keeps(),
        record: Some(object::compact_echo(&echo)),
        continues,
        ..SendInput::of_turns(turns, field_in_input)
    };
    let mut started = prepare(&state, &caller, &session, send).await?;
    if let Started::NotNewest(send) = started {
        let fork = lookup::branch(&state, &caller, &request).await?;
        let send = SendInput {
            continues: None,
            ..*send
        };
        started = prepare(&state, &caller, &fork, send).await?;
    }
    let prepared = match started {
        Started::Replay(stored) => {
            return Ok(replay(&state, &caller, &stored, request.streaming()).await?);
        }
        Started::Ready(prepared) => *prepared,
        Started::NotNewest(_) => {
            return Err(ApiError::Internal("a fork is its own newest".into()).into());
        }
    };
    let shell = Shell {
        id: ids::response_id(&prepared.session.id, &prepared.answer_id),
        created_at: Utc::now().timestamp(),
        model: request.model.clone(),
        echo,
    };
    let answer_id = prepared.answer_id.clone();
    let answering = answer::of_send(&state, prepared, request.streaming()).await?;
    Ok(respond(state, answering, shell, answer_id))
}

/// Events for a stream, the response object for a whole answer.
fn respond(
    state: web::Data<AppState>,
    answering: Answering,
    shell: Shell,
    answer_id: String,
) -> HttpResponse {
    let writer_state = state.clone();
    let (writer_shell, writer_answer) = (shell.clone(), answer_id.clone());
    answering.respond(
        state,
        |_, destination| {
            ResponseEvents::new(writer_state, destination, writer_shell, writer_answer)
        },
        |completed| HttpResponse::Ok().json(finished(shell, &answer_id, &completed)),
    )
}

/// The response object of a complete answer.
fn finished(shell: Shell, answer_id: &str, completed: &Completed) -> Value {
    let (status, incomplete_details) = status(completed.finish_reason);
    let shell = Shell {
        model: completed.model.clone(),
        ..shell
    };
    let ending = Ending {
        status,
        output: items::items_of_message(answer_id, &completed.message),
        usage: Some(completed.usage),
        incomplete_details,
        error: Value::Null,
    };
    response(&shell, ending)
}

/// `store: false` with nothing to continue: the input alone goes upstream, nothing is
/// kept, and the response's id names nothing that could be read back.
async fn stateless(
    state: web::Data<AppState>,
    caller: &Caller,
    request: &ResponsesRequest,
    turns: Vec<Message>,
) -> Result<HttpResponse, ApiError> {
    let max_bytes = state.settings.sessions.max_message_bytes;
    check_new_turns(&turns, &[], max_bytes, &field_in_input, Batch::Items)?;
    let asked = request.asked()?;
    let options = std::sync::Arc::new(crate::llm::Options {
        tools: asked.tools.unwrap_or_default(),
        tool_choice: asked.tool_choice,
        response_format: asked.response_format,
        params: asked.params,
        extra: asked.extra,
    });
    let mut prompt: Vec<Message> = request
        .instructions
        .iter()
        .map(|text| Message::text(Role::System, text.as_str()))
        .collect();
    prompt.extend(turns);
    let shell = Shell {
        id: format!("resp_{}", new_id()),
        created_at: Utc::now().timestamp(),
        model: request.model.clone(),
        echo: request.echo(),
    };
    let call = answer::Call {
        model: request.model.clone(),
        prompt,
        options,
        max_tokens: request.max_output_tokens,
        temperature: request.temperature,
    };
    let answering = answer::of_call(&state, caller, call, request.streaming()).await?;
    Ok(respond(state, answering, shell, message_id(0)))
}

/// The same `Idempotency-Key` and body completed before: the response it made.
async fn replay(
    state: &AppState,
    caller: &Caller,
    stored: &str,
    streaming: bool,
) -> Result<HttpResponse, ApiError> {
    #[derive(serde::Deserialize)]
    struct Sent {
        session_id: String,
        message_id: String,
    }
    let sent: Sent = serde_json::from_str(stored).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = ids::response_id(&sent.session_id, &sent.message_id);
    let object = lookup::response(state, caller, &id).await?.object();
    if streaming {
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(replayed(&object)));
    }
    Ok(HttpResponse::Ok().json(object))
}

#[utoipa::path(tag = "responses", responses((status = 200, description = "See README: Responses API")))]
#[get("/v1/responses/{id}")]
async fn retrieve(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let found = lookup::response(&state, &caller?, &id).await?;
    Ok(HttpResponse::Ok().json(found.object()))
}

/// The response can no longer be read or continued; its turns stay in the conversation.
#[utoipa::path(tag = "responses", responses((status = 200, description = "See README: Responses API")))]
#[delete("/v1/responses/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    let found = lookup::response(&state, &caller?, &id).await?;
    found.mark_deleted(&state).await?;
    Ok(HttpResponse::Ok().json(json!({"id": id.as_str(), "object": "response", "deleted": true})))
}

#[utoipa::path(tag = "responses", responses((status = 200, description = "See README: Responses API")))]
#[get("/v1/responses/{id}/input_items")]
async fn input_items(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    query: Result<web::Query<page::PageQuery>, actix_web::Error>,
) -> Result<HttpResponse, OpenAiError> {
    let query = page::query(query)?;
    let found = lookup::response(&state, &caller?, &id).await?;
    let range = found.input_range(&state).await?;
    let page = page::page(state.store.as_ref(), &found.session.key(), range, &query).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(tag = "responses", responses((status = 200, description = "See README: Responses API")))]
#[post("/v1/responses/input_tokens")]
async fn input_tokens(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<ResponsesRequest>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let caller = caller?;
    let mut request = body?.value;
    let turns = input_turns(&state, &mut request)?;
    let tokens = lookup::count(&state, &caller, &request, &turns).await?;
    Ok(HttpResponse::Ok().json(json!({"object": "response.input_tokens", "input_tokens": tokens})))
}

/// The turns the request's input adds (taken out of it), for a model that exists.
fn input_turns(
    state: &AppState,
    request: &mut ResponsesRequest,
) -> Result<Vec<Message>, OpenAiError> {
    if state.models.get(&request.model).is_none() {
        return Err(OpenAiError::ModelNotFound);
    }
    let input = request
        .input
        .take()
        .unwrap_or(items::Input::Items(Vec::new()));
    Ok(items::turns_of(input, "input")?)
}

/// A new session for a response that continues nothing.
fn new_session(state: &AppState, caller: &Caller, model: &str) -> SessionConfig {
    SessionConfig {
        tenant: caller.tenant.clone(),
        user_id: None,
        model: model.to_string(),
        fallback_models: Vec::new(),
        system_prompt: None,
        context_window: None,
        max_context_tokens: None,
        max_tokens: None,
        temperature: None,
        ttl_seconds: state.settings.sessions.default_ttl_seconds,
        metadata: serde_json::Map::new(),
        max_cost_usd: None,
        tools: Vec::new(),
        response_format: None,
        compaction: state.settings.compaction.policy(),
        created_at: Utc::now(),
    }
}

/// Creates a session of `config`; returns its id.
async fn create_session(state: &AppState, config: &SessionConfig) -> Result<String, ApiError> {
    config.validate(&super::sessions::limits(state))?;
    let id = new_id();
    if !state.store.create_session(&id, config, now_ms()).await? {
        return Err(ApiError::Internal("session id collision".into()));
    }
    metrics::counter!("sessions_created_total").increment(1);
    Ok(id)
}
