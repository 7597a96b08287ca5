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

use std::sync::{Arc, LazyLock};

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::Utc;
use serde_json::{Value, json};

use self::{
    errors::OpenAiError,
    events::ChunkWriter,
    wire::{Answer, ChatCompletionRequest, Head, completion, estimate_usage},
};
use super::extract::ApiJson;
use crate::{
    auth::Caller,
    conversation::{
        send::{SendInput, Started, call_chain, finish, prepare},
        stream, upstream,
    },
    domain::{message::Message, session::new_id, tools::Tool, turns::field_in_messages},
    error::ApiError,
    llm::{ChatRequest, Usage, finish_reason, registry::Model},
    metering::{Estimate, Metering},
    state::AppState,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(chat_completions)
        .service(list_models)
        .service(retrieve_model);
}

/// Extractor failures (auth, body) are taken as values so they too leave in OpenAI's shape.
#[utoipa::path(tag = "openai-compatible", responses((status = 200, description = "See API.md")))]
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
        return Err(OpenAiError::ModelNotFound(body.model));
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
    let mut prepared = match prepare(&state, caller, id, input).await? {
        Started::Ready(prepared) => *prepared,
        // Only an Idempotency-Key replays, and the relay passes none.
        Started::Replay(_) => return Err(ApiError::Internal("unexpected replay".into())),
    };
    if body.streaming() {
        let deadline = upstream::deadline(&state);
        let opened = stream::open(
            &state,
            &prepared.chain,
            |m| prepared.request_for(m),
            deadline,
        )
        .await;
        let opened = prepared.lease.release_on_err(opened).await?;
        let head = head(&opened.model);
        let index = opened.index;
        let writer =
            ChunkWriter::session(head, body.include_usage(), state.clone(), prepared, index);
        return Ok(stream::serve(state, opened, writer, deadline));
    }
    let called = call_chain(&state, &prepared).await;
    let (index, answer) = prepared.lease.release_on_err(called).await?;
    let (logprobs, fingerprint) = (answer.logprobs.clone(), answer.system_fingerprint.clone());
    let sent = finish(&state, prepared, index, answer).await?;
    let answer = Answer {
        message: &sent.assistant(),
        finish_reason: sent.finish_reason,
        logprobs: logprobs.as_ref(),
        system_fingerprint: fingerprint.as_deref(),
        usage: Usage {
            prompt_tokens: sent.usage.prompt_tokens,
            completion_tokens: sent.usage.completion_tokens,
        },
    };
    Ok(HttpResponse::Ok().json(completion(&head(&sent.model_used), &answer)))
}

async fn stateless(
    state: web::Data<AppState>,
    caller: &Caller,
    body: ChatCompletionRequest,
) -> Result<HttpResponse, ApiError> {
    let (streaming, include_usage) = (body.streaming(), body.include_usage());
    let chain = upstream::chain(&state, &body.model, &[])?;
    let options = Arc::new(body.options());
    let (max_tokens, temperature) = (body.max_tokens(), body.temperature);
    let messages = body.messages;
    let mut metering = reserve(
        &state,
        caller,
        &chain,
        &messages,
        &options.tools,
        max_tokens,
    )
    .await?;
    let request_for = |model: &Model| ChatRequest {
        model: model.upstream_name.clone(),
        messages: messages.clone(),
        max_tokens,
        temperature,
        options: options.clone(),
    };
    let deadline = upstream::deadline(&state);
    if streaming {
        let opened = stream::open(&state, &chain, request_for, deadline).await?;
        let model = answering(&chain, opened.index)?;
        let writer = ChunkWriter::stateless(
            head(&model.name),
            include_usage,
            model.clone(),
            (messages, options),
            metering,
        );
        return Ok(stream::serve(state, opened, writer, deadline));
    }
    let routed = (state.router.complete(&chain, request_for, deadline).await)
        .map_err(upstream::api_error)?;
    let (model, answer) = (answering(&chain, routed.index)?, routed.value);
    let usage = answer.usage.unwrap_or_else(|| {
        estimate_usage(model.tokenizer, &messages, &options.tools, &answer.message)
    });
    let cost = model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens);
    metering.settle(model, usage, cost).await;
    let reply = Answer {
        message: &answer.message,
        finish_reason: finish_reason(answer.finish_reason.as_deref(), &answer.message),
        logprobs: answer.logprobs.as_ref(),
        system_fingerprint: answer.system_fingerprint.as_deref(),
        usage,
    };
    Ok(HttpResponse::Ok().json(completion(&head(&model.name), &reply)))
}

fn answering(chain: &[Arc<Model>], index: usize) -> Result<&Arc<Model>, ApiError> {
    chain
        .get(index)
        .ok_or_else(|| ApiError::Internal("model index".into()))
}

/// Reserves the call's worst case from the key's tokens-per-minute and daily budget, as
/// a session send does; settled with what the answering model used.
async fn reserve(
    state: &AppState,
    caller: &Caller,
    chain: &[Arc<Model>],
    messages: &[Message],
    tools: &[Tool],
    max_tokens: Option<u32>,
) -> Result<Metering, ApiError> {
    let primary = chain
        .first()
        .ok_or_else(|| ApiError::Internal("empty chain".into()))?;
    let nothing = Message::text(crate::domain::message::Role::Assistant, "");
    let prompt_tokens = estimate_usage(primary.tokenizer, messages, tools, &nothing).prompt_tokens;
    let max_tokens = max_tokens.unwrap_or(state.settings.sessions.default_max_tokens);
    Metering::reserve(
        state,
        caller,
        &Estimate::for_chain(chain, prompt_tokens, max_tokens),
    )
    .await
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

#[utoipa::path(tag = "openai-compatible", responses((status = 200, description = "See API.md")))]
#[get("/v1/models")]
async fn list_models(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<HttpResponse, OpenAiError> {
    caller?;
    let data: Vec<Value> = state
        .models
        .names()
        .iter()
        .map(|n| model_object(n))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}

/// Model names may contain `/` (`meta-llama/…`): the id is the rest of the path.
#[utoipa::path(tag = "openai-compatible", responses((status = 200, description = "See API.md")))]
#[get("/v1/models/{model:.*}")]
async fn retrieve_model(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    name: web::Path<String>,
) -> Result<HttpResponse, OpenAiError> {
    caller?;
    let model =
        (state.models.get(&name)).ok_or_else(|| OpenAiError::ModelNotFound(name.clone()))?;
    Ok(HttpResponse::Ok().json(model_object(&model.name)))
}

/// Models have no creation date here; the time this instance first listed them stands in.
fn model_object(name: &str) -> Value {
    static LISTED: LazyLock<i64> = LazyLock::new(|| Utc::now().timestamp());
    json!({ "id": name, "object": "model", "created": *LISTED, "owned_by": "session-relay" })
}
