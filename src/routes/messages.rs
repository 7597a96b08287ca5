//! Sending a message (the delta) and previewing the context the next turn would send.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{docs::ErrorBody, extract::ApiJson, owned_session};
use crate::{
    auth::Caller,
    conversation::{
        answer,
        context::{Around, assemble, budget, read_tail},
        send::{SendInput, SendResponse, Started, prepare},
        stream::SessionEvents,
    },
    domain::{
        content::Content,
        message::{Message, Role},
        params::Params,
        tokens::TokenCounter,
        tools::{ResponseFormat, Tool, ToolChoice},
        turns::{field_in_content, field_in_messages, pending_calls},
    },
    error::ApiError,
    state::AppState,
    store::IdempotencyClaim,
};

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(send).service(context);
}

/// The new turn as `content` (text or parts, from the user), or as `messages` in OpenAI's
/// format (the results of the last answer's tool calls, then perhaps a user turn).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// The user's new turn: text, or OpenAI's content parts.
    #[schema(value_type = Option<Value>)]
    content: Option<Content>,
    /// Or the new turns in OpenAI's message format (tool results, then perhaps a user turn).
    #[schema(value_type = Option<Vec<Object>>)]
    messages: Option<Vec<Message>>,
    model: Option<String>,
    #[schema(minimum = 1)]
    max_tokens: Option<u32>,
    #[schema(minimum = 0, maximum = 2)]
    temperature: Option<f32>,
    #[serde(default)]
    stream: bool,
    /// This send's tools, instead of the session's (`[]`: none).
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Tool>>,
    #[schema(value_type = Option<Value>)]
    tool_choice: Option<ToolChoice>,
    #[schema(value_type = Option<Object>)]
    response_format: Option<ResponseFormat>,
    parallel_tool_calls: Option<bool>,
}

#[utoipa::path(
    tag = "messages",
    request_body = SendBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the stored answer is replayed")),
    responses(
        (status = 200, description = "The assistant's answer; with `stream: true`, `delta` events then one `done` event carrying this object",
            content((SendResponse = "application/json"), (String = "text/event-stream"))),
        (status = 402, description = "A spending cap would be passed (`limit_usd`, `spent_usd`)", body = ErrorBody),
        (status = 409, description = "Another message is in flight (`session_busy`), or the same Idempotency-Key is (`idempotency_key_in_use`)", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key came with another body", body = ErrorBody),
        (status = 502, description = "Every model of the chain failed (`attempts`)", body = ErrorBody),
        (status = 504, description = "The request deadline passed", body = ErrorBody),
    )
)]
#[post("/v1/sessions/{id}/messages")]
async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
    body: ApiJson<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let ApiJson { value, raw } = body;
    let streaming = value.stream;
    let input = send_input(&state, &req, value, &raw)?;
    let prepared = match prepare(&state, &caller, &id, input).await? {
        Started::Replay(stored) => return Ok(replay(stored, streaming)),
        Started::Ready(prepared) => *prepared,
        Started::NotNewest(_) => return Err(ApiError::Internal("a send continues nothing".into())),
    };
    let answering = answer::of_send(&state, prepared, streaming).await?;
    let writer_state = state.clone();
    Ok(answering.respond(
        state,
        |_, destination| SessionEvents::new(writer_state, destination),
        |completed| HttpResponse::Ok().json(completed.sent),
    ))
}

fn send_input(
    state: &AppState,
    req: &HttpRequest,
    body: SendBody,
    raw: &[u8],
) -> Result<SendInput, ApiError> {
    let SendBody {
        content,
        messages,
        model,
        max_tokens,
        temperature,
        stream: _,
        tools,
        tool_choice,
        response_format,
        parallel_tool_calls,
    } = body;
    let (turns, turn_field): (_, fn(usize, &str) -> String) = match (content, messages) {
        (Some(content), None) => (vec![Message::text(Role::User, content)], field_in_content),
        (None, Some(messages)) => (messages, field_in_messages),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "messages",
                "send `content` or `messages`, not both",
            ));
        }
        (None, None) => return Err(ApiError::invalid("content", "the new message is required")),
    };
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens", "must be at least 1"));
    }
    Ok(SendInput {
        model,
        max_tokens,
        temperature,
        tools,
        tool_choice,
        response_format,
        params: Params {
            parallel_tool_calls,
            ..Params::default()
        },
        idempotency: idempotency_claim(state, req, raw)?,
        ..SendInput::of_turns(turns, turn_field)
    })
}

/// `Idempotency-Key`: the body's digest tells a retry from a different request.
pub(crate) fn idempotency_claim(
    state: &AppState,
    req: &HttpRequest,
    raw: &[u8],
) -> Result<Option<IdempotencyClaim>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "1 to 255 visible ASCII characters"))?;
    Ok(Some(IdempotencyClaim {
        key: key.to_string(),
        fingerprint: hex::encode(Sha256::digest(raw)),
        ttl_ms: state.settings.sessions.idempotency_ttl_seconds * 1000,
    }))
}

/// A stored response replayed; as an event stream when the retry asked for one.
fn replay(stored: String, streaming: bool) -> HttpResponse {
    if !streaming {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(stored);
    }
    let content = serde_json::from_str::<serde_json::Value>(&stored)
        .ok()
        .and_then(|v| v["assistant_message"].as_str().map(str::to_string))
        .unwrap_or_default();
    let delta = json!({ "content": content });
    let body = format!("event: delta\ndata: {delta}\n\nevent: done\ndata: {stored}\n\n");
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .body(body)
}

/// `GET /v1/sessions/{id}/context`: exactly what the next turn would send upstream.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ContextView {
    /// In OpenAI's message format, as they would go upstream.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Message>,
    tokens: u32,
    budget_tokens: u32,
    /// Turns after the summary's watermark that are not sent.
    dropped_messages: u64,
    /// What the summary (sent as a system turn after the system prompt) costs.
    summary_tokens: u32,
    summary: Option<crate::domain::compaction::SummaryView>,
}

#[utoipa::path(tag = "messages", responses((status = 200, description = "The context the next turn would send", body = ContextView)))]
#[get("/v1/sessions/{id}/context")]
async fn context(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &caller, &id).await?;
    let model = state
        .models
        .get(&session.config.model)
        .ok_or_else(|| ApiError::Internal("session model is not configured".into()))?;
    let max_tokens = session
        .config
        .max_tokens
        .unwrap_or(state.settings.sessions.default_max_tokens);
    let store = state.store.as_ref();
    let history = read_tail(store, &session).await?;
    let around = Around {
        new_turns: &[],
        new_tokens: 0,
        tools_tokens: TokenCounter::shared().count_tools(model.tokenizer, &session.config.tools),
        pinned: usize::from(!pending_calls(&history).is_empty()),
        budget: budget(&session, model, max_tokens),
        instructions: None,
    };
    let assembled = assemble(store, &session, model, &around, history).await?;
    Ok(HttpResponse::Ok().json(ContextView {
        messages: assembled.messages,
        tokens: assembled.tokens,
        budget_tokens: assembled.budget,
        dropped_messages: assembled.dropped,
        summary_tokens: assembled.summary_tokens,
        summary: session.summary.as_ref().map(Into::into),
    }))
}
