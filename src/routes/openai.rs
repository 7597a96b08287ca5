//! The OpenAI-compatible relay: `POST /v1/chat/completions` and `GET /v1/models`, in
//! OpenAI's formats (errors included) so the official SDKs work unchanged.
//!
//! Without a session the messages go upstream as given. With `session_id` (body field or
//! `X-Session-Id` header) the request carries only the new user message: the session's
//! context is put in front of it and both turns are stored on success, exactly as
//! `POST /v1/sessions/{id}/messages` does. Both go through the same chains and breakers.

mod errors;
mod events;
mod wire;

pub(crate) use errors::{OpenAiError, error_object};

use std::sync::{Arc, LazyLock};

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::Utc;

use self::{
    events::ChunkWriter,
    wire::{Answer, ChatCompletionRequest, Head, completion},
};
use super::{docs::OpenAiErrorBody, extract::ApiJson};
use crate::{
    auth::Caller,
    conversation::{
        answer::{self, Answering},
        send::{SendInput, Started, prepare},
    },
    domain::{session::new_id, turns::field_in_messages},
    error::ApiError,
    state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(chat_completions)
        .service(list_models)
        .service(retrieve_model);
}

/// Extractor failures (auth, body) are taken as values so they too leave in OpenAI's shape.
#[utoipa::path(
    tag = "openai-compatible",
    request_body = ChatCompletionRequest,
    params(("X-Session-Id" = Option<String>, Header, description = "Same as the body's `session_id`")),
    responses(
        (status = 200, description = "OpenAI's `chat.completion` object; with `stream: true`, its `chat.completion.chunk` events",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 402, description = "A spending cap would be passed", body = OpenAiErrorBody),
        (status = 409, description = "Another message of the session is in flight", body = OpenAiErrorBody),
        (status = 502, description = "Every model of the chain failed", body = OpenAiErrorBody),
        (status = 504, description = "The request deadline passed", body = OpenAiErrorBody),
    )
)]
#[post("/v1/chat/completions")]
async fn chat_completions(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: Result<ApiJson<ChatCompletionRequest>, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    let caller = caller?;
    let body = body?.value;
    body.validate()?;
    if state.models.get(&body.model).is_none() {
        return Err(OpenAiError::ModelNotFound);
    }
    let response = match session_id(&req, &body)? {
        Some(id) => with_session(state, &caller, &id, body).await?,
        None => stateless(state, &caller, body).await?,
    };
    Ok(response)
}

async fn with_session(
    state: web::Data<AppState>,
    caller: &Caller,
    id: &str,
    body: ChatCompletionRequest,
) -> Result<HttpResponse, ApiError> {
    let input = session_input(&body);
    let prepared = match prepare(&state, caller, id, input).await? {
        Started::Ready(prepared) => *prepared,
        // Only an Idempotency-Key replays, and the relay passes none.
        Started::Replay(_) | Started::NotNewest(_) => {
            return Err(ApiError::Internal("unexpected replay".into()));
        }
    };
    let answering = answer::of_send(&state, prepared, body.streaming()).await?;
    Ok(respond(state, answering, body.include_usage()))
}

async fn stateless(
    state: web::Data<AppState>,
    caller: &Caller,
    body: ChatCompletionRequest,
) -> Result<HttpResponse, ApiError> {
    let (streaming, include_usage) = (body.streaming(), body.include_usage());
    let call = answer::Call {
        options: Arc::new(body.options()),
        max_tokens: body.max_tokens(),
        temperature: body.temperature,
        model: body.model,
        prompt: body.messages,
    };
    let answering = answer::of_call(&state, caller, call, streaming).await?;
    Ok(respond(state, answering, include_usage))
}

/// Chunks for a stream, a `chat.completion` for a whole answer.
fn respond(state: web::Data<AppState>, answering: Answering, include_usage: bool) -> HttpResponse {
    let writer_state = state.clone();
    answering.respond(
        state,
        |opened, destination| {
            ChunkWriter::new(
                head(&opened.model),
                include_usage,
                writer_state,
                destination,
            )
        },
        |completed| {
            let body = completion(&head(&completed.model), &Answer::of(&completed));
            HttpResponse::Ok().json(body)
        },
    )
}

/// The body's `session_id` or the `X-Session-Id` header (they must agree when both are sent).
fn session_id(req: &HttpRequest, body: &ChatCompletionRequest) -> Result<Option<String>, ApiError> {
    let header = match req.headers().get("x-session-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("X-Session-Id", "not a valid session id"))?,
        ),
        None => None,
    };
    match (header, body.session_id.as_deref()) {
        (Some(h), Some(b)) if h != b => Err(ApiError::invalid(
            "session_id",
            "differs from the X-Session-Id header",
        )),
        (h, b) => Ok(b.or(h).map(str::to_string)),
    }
}

/// The session holds the history and the system prompt: the request brings only the new
/// turns (a user message, or the results of the last answer's tool calls).
fn session_input(body: &ChatCompletionRequest) -> SendInput {
    SendInput {
        model: Some(body.model.clone()),
        max_tokens: body.max_tokens(),
        temperature: body.temperature,
        tools: body.tools.clone(),
        tool_choice: body.tool_choice.clone(),
        response_format: body.response_format.clone(),
        params: body.params.clone(),
        extra: body.extra.clone(),
        ..SendInput::of_turns(body.messages.clone(), field_in_messages)
    }
}

fn head(model: &str) -> Head {
    Head {
        id: format!("chatcmpl-{}", new_id()),
        created: Utc::now().timestamp(),
        model: model.to_string(),
        system_fingerprint: None,
    }
}

/// OpenAI's list of models.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<ModelObject>,
}

/// One name a request may use: a configured model or an alias.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ModelObject {
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Models have no creation date here: when this instance first listed them.
    created: i64,
    owned_by: &'static str,
}

#[utoipa::path(tag = "openai-compatible", responses((status = 200, description = "Every name a request may use, aliases included", body = ModelList)))]
#[get("/v1/models")]
async fn list_models(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    caller?;
    let data = state.models.accepted_names().map(model_object).collect();
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    }))
}

/// Model names may contain `/` (`meta-llama/…`): the id is the rest of the path.
#[utoipa::path(tag = "openai-compatible", responses((status = 200, description = "The model (or alias)", body = ModelObject)))]
#[get("/v1/models/{model:.*}")]
async fn retrieve_model(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    name: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    caller?;
    state.models.get(&name).ok_or(OpenAiError::ModelNotFound)?;
    Ok(HttpResponse::Ok().json(model_object(&name)))
}

fn model_object(name: &str) -> ModelObject {
    static LISTED: LazyLock<i64> = LazyLock::new(|| Utc::now().timestamp());
    ModelObject {
        id: name.to_string(),
        object: "model",
        created: *LISTED,
        owned_by: "session-relay",
    }
}
