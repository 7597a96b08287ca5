//! One turn of a conversation: admit, build the context, call the model, store both turns.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use super::{
    context::{Around, Assembled, FIRST_CHUNK, assemble, budget},
    lease::Lease,
    upstream,
};
use crate::{
    auth::Caller,
    domain::{
        message::{Message, Turn, message_id},
        params::Params,
        session::{StoredSession, UsageTotals, is_session_id, nano_usd_to_usd, new_id, now_ms},
        tokens::TokenCounter,
        tools::{self, ResponseFormat, Tool, ToolCall, ToolChoice},
        turns::{FieldName, check_new_turns, pending_calls},
    },
    error::ApiError,
    llm::{ChatRequest, ChatResponse, Options, registry::Model},
    metering::{Estimate, Metering, check_session_budget},
    state::AppState,
    store::{Admission, AdmitRequest, Admitted, Commit, CommitOutcome, IdempotencyClaim},
};

/// What the client asked for, already decoded.
#[derive(Debug, Clone)]
pub struct SendInput {
    /// The new turns: a user turn, or the results of the last answer's tool calls.
    pub turns: Vec<Message>,
    /// How errors name the field of a new turn, as the client sent it.
    pub turn_field: fn(usize, &str) -> String,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// `None` uses the session's tools (`Some(vec![])`: none this time).
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<ToolChoice>,
    /// `None` uses the session's format.
    pub response_format: Option<ResponseFormat>,
    pub params: Params,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub idempotency: Option<IdempotencyClaim>,
}

/// A send that holds the session's lease and has its prompt ready.
pub struct Prepared {
    pub session: StoredSession,
    /// The models to try, in order.
    pub chain: Vec<Arc<Model>>,
    pub assembled: Assembled,
    /// The new turns as they will be stored.
    pub new_turns: Vec<Turn>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub options: Arc<Options>,
    pub lease: Lease,
    pub idempotency: Option<IdempotencyClaim>,
    /// The key's token-limit and budget reservation, settled by `finish`.
    pub metering: Metering,
}

pub enum Started {
    /// The same `Idempotency-Key` and body completed before: the stored response.
    Replay(String),
    Ready(Box<Prepared>),
}

#[derive(Debug, Serialize)]
pub struct SendResponse {
    pub session_id: String,
    pub message_id: String,
    pub assistant_message: String,
    /// The calls the answer makes; the next send brings their results.
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// OpenAI's words: `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: &'static str,
    pub model_used: String,
    pub fallback_count: usize,
    pub usage: TokenUsage,
    pub cost_usd: f64,
    pub context: ContextReport,
}

#[derive(Debug, Serialize)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Serialize)]
pub struct ContextReport {
    pub messages: usize,
    pub tokens: u32,
    pub dropped_messages: u64,
    pub budget_tokens: u32,
}

impl SendResponse {
    /// The answer as a chat message.
    pub fn assistant(&self) -> Message {
        Message {
            tool_calls: self.tool_calls.clone(),
            refusal: self.refusal.clone(),
            ..Message::text(
                crate::domain::message::Role::Assistant,
                self.assistant_message.as_str(),
            )
        }
    }
}

/// Checks the request, takes the lease and builds the prompt. Nothing is written yet.
pub async fn prepare(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: SendInput,
) -> Result<Started, ApiError> {
    if !is_session_id(id) {
        return Err(ApiError::SessionNotFound);
    }
    // A bad request answers 400 before it takes the session's lease.
    if let Some(name) = input.model.as_deref() {
        known_model(state, name)?;
    }
    let token = new_id();
    let request = AdmitRequest {
        tenant: &caller.tenant,
        lease_token: &token,
        lease_ms: state.settings.sessions.lease_seconds * 1000,
        claim: input.idempotency.as_ref(),
        now_ms: now_ms(),
        tail: FIRST_CHUNK,
    };
    let Admitted { session, tail } = match state.store.admit(id, &request).await? {
        Admission::Admitted(admitted) => *admitted,
        Admission::Missing => return Err(ApiError::SessionNotFound),
        Admission::Busy { retry_after_ms } => {
            return Err(ApiError::SessionBusy {
                // The lease's remaining time is only an upper bound (most sends take
                // seconds), so the hint stays short: clients back off from there.
                retry_after: retry_after_ms.div_ceil(1000).clamp(1, 2),
            });
        }
        Admission::Replay(response) => return Ok(Started::Replay(response)),
        Admission::KeyInUse => return Err(ApiError::IdempotencyKeyInUse),
        Admission::KeyReused => return Err(ApiError::IdempotencyKeyReused),
    };
    // From here on the lease is released on every exit, early returns and panics included.
    let mut lease = Lease::new(
        state,
        id,
        token,
        input.idempotency.as_ref().map(|c| c.key.clone()),
    );
    let planned = plan(state, caller, &session, tail, &input).await;
    let planned = lease.release_on_err(planned).await?;
    let now = Utc::now();
    let new_turns = (input.turns.into_iter().zip(planned.turn_tokens))
        .zip(session.message_count..)
        .map(|((message, tokens), index)| Turn {
            id: message_id(index),
            message,
            created_at: now,
            tokens,
        })
        .collect();
    Ok(Started::Ready(Box::new(Prepared {
        temperature: input.temperature.or(session.config.temperature),
        session,
        chain: planned.chain,
        assembled: planned.assembled,
        new_turns,
        max_tokens: planned.max_tokens,
        options: planned.options,
        lease,
        idempotency: input.idempotency,
        metering: planned.metering,
    })))
}

/// What an admitted send works out before calling upstream.
struct Planned {
    chain: Vec<Arc<Model>>,
    assembled: Assembled,
    /// The cost of each new turn.
    turn_tokens: Vec<u32>,
    max_tokens: u32,
    options: Arc<Options>,
    metering: Metering,
}

/// The model chain, the prompt and its token count, and the key's reservation, checked
/// against every cap.
async fn plan(
    state: &AppState,
    caller: &Caller,
    session: &StoredSession,
    tail: Vec<Turn>,
    input: &SendInput,
) -> Result<Planned, ApiError> {
    let pending = pending_calls(&tail);
    let max_bytes = state.settings.sessions.max_message_bytes;
    let field: FieldName = &input.turn_field;
    check_new_turns(&input.turns, pending, max_bytes, field)?;
    let chain = model_chain(state, session, input.model.as_deref())?;
    let Some(primary) = chain.first().cloned() else {
        return Err(ApiError::invalid("model", "no model to call"));
    };
    let max_tokens = input
        .max_tokens
        .or(session.config.max_tokens)
        .unwrap_or(state.settings.sessions.default_max_tokens);
    let options = Arc::new(options(session, input)?);
    let counter = TokenCounter::shared();
    let turn_tokens: Vec<u32> = (input.turns.iter())
        .map(|turn| counter.count_turn(primary.tokenizer, turn))
        .collect();
    let around = Around {
        new_turns: &input.turns,
        new_tokens: turn_tokens.iter().fold(0, |a, b| a.saturating_add(*b)),
        tools_tokens: counter.count_tools(primary.tokenizer, &options.tools),
        pinned: usize::from(!pending.is_empty()),
        budget: budget(session, &primary, max_tokens),
    };
    let store = state.store.as_ref();
    let assembled = assemble(store, session, &primary, &around, tail).await?;
    // Caps and the token limit are checked on the worst case, before any upstream call.
    let estimate = Estimate::for_chain(&chain, assembled.tokens, max_tokens);
    check_session_budget(session, &estimate)?;
    let metering = Metering::reserve(state, caller, &estimate).await?;
    Ok(Planned {
        chain,
        assembled,
        turn_tokens,
        max_tokens,
        options,
        metering,
    })
}

/// The send's tools and format, else the session's; checked together.
fn options(session: &StoredSession, input: &SendInput) -> Result<Options, ApiError> {
    let config = &session.config;
    let options = Options {
        tools: input.tools.clone().unwrap_or_else(|| config.tools.clone()),
        tool_choice: input.tool_choice.clone(),
        response_format: (input.response_format.clone()).or_else(|| config.response_format.clone()),
        params: input.params.clone(),
        extra: input.extra.clone(),
    };
    tools::validate(
        &options.tools,
        options.tool_choice.as_ref(),
        options.response_format.as_ref(),
    )?;
    options.params.validate()?;
    if options.params.functions.is_some() || options.params.function_call.is_some() {
        return Err(ApiError::invalid(
            "functions",
            "sessions keep tool calls: send `tools` instead of the deprecated `functions`",
        ));
    }
    Ok(options)
}

fn known_model(state: &AppState, name: &str) -> Result<Arc<Model>, ApiError> {
    state
        .models
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::invalid("model", format!("unknown model `{name}`")))
}

/// The request's model (or the session's), then the session's fallbacks — or, when the
/// session names none, the model's configured ones.
fn model_chain(
    state: &AppState,
    session: &StoredSession,
    requested: Option<&str>,
) -> Result<Vec<Arc<Model>>, ApiError> {
    let primary = known_model(state, requested.unwrap_or(&session.config.model))?;
    let fallbacks = if session.config.fallback_models.is_empty() {
        &primary.fallbacks
    } else {
        &session.config.fallback_models
    };
    let mut chain = vec![primary.clone()];
    for name in fallbacks {
        if let Some(model) = state.models.get(name)
            && !chain.iter().any(|m| m.name == model.name)
        {
            chain.push(model.clone());
        }
    }
    Ok(chain)
}

impl Prepared {
    pub fn request_for(&self, model: &Model) -> ChatRequest {
        ChatRequest {
            model: model.upstream_name.clone(),
            messages: self.assembled.messages.clone(),
            max_tokens: Some(self.max_tokens),
            temperature: self.temperature,
            options: self.options.clone(),
        }
    }
}

/// Routes the request along the chain (retries, fallbacks, breakers) until one model
/// answers, within the request's deadline.
pub async fn call_chain(
    state: &AppState,
    prepared: &Prepared,
) -> Result<(usize, ChatResponse), ApiError> {
    let routed = state
        .router
        .complete(
            &prepared.chain,
            |m| prepared.request_for(m),
            upstream::deadline(state),
        )
        .await
        .map_err(upstream::api_error)?;
    Ok((routed.index, routed.value))
}

/// Stores the user and assistant turns together and builds the response.
pub async fn finish(
    state: &AppState,
    mut prepared: Prepared,
    model_index: usize,
    answer: ChatResponse,
) -> Result<SendResponse, ApiError> {
    let model = prepared
        .chain
        .get(model_index)
        .cloned()
        .ok_or_else(|| ApiError::Internal("model index".into()))?;
    let counter = TokenCounter::shared();
    let assistant_tokens = counter.count_turn(model.tokenizer, &answer.message);
    let usage = answer.usage.unwrap_or(crate::llm::Usage {
        prompt_tokens: prepared.assembled.tokens,
        completion_tokens: counter.count_said(model.tokenizer, &answer.message),
    });
    let cost_nano_usd = model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens);
    let finish_reason = crate::llm::finish_reason(answer.finish_reason.as_deref(), &answer.message);
    let index = prepared.session.message_count + prepared.new_turns.len() as u64;
    let assistant_turn = Turn {
        id: message_id(index),
        message: answer.message,
        created_at: Utc::now(),
        tokens: assistant_tokens,
    };
    let response = SendResponse {
        session_id: prepared.session.id.clone(),
        message_id: assistant_turn.id.clone(),
        assistant_message: assistant_turn.message.content.text().into_owned(),
        tool_calls: assistant_turn.message.tool_calls.clone(),
        refusal: assistant_turn.message.refusal.clone(),
        finish_reason,
        model_used: model.name.clone(),
        fallback_count: model_index,
        usage: TokenUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
        },
        cost_usd: nano_usd_to_usd(cost_nano_usd),
        context: ContextReport {
            messages: prepared.assembled.messages.len(),
            tokens: prepared.assembled.tokens,
            dropped_messages: prepared.assembled.dropped,
            budget_tokens: prepared.assembled.budget,
        },
    };
    let response_json =
        serde_json::to_string(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
    let commit = Commit {
        lease_token: prepared.lease.token().to_string(),
        expected_len: prepared.session.message_count,
        turns: std::mem::take(&mut prepared.new_turns)
            .into_iter()
            .chain([assistant_turn])
            .collect(),
        usage: UsageTotals {
            prompt_tokens: u64::from(usage.prompt_tokens),
            completion_tokens: u64::from(usage.completion_tokens),
            cost_nano_usd,
        },
        now_ms: now_ms(),
        idempotency: prepared
            .idempotency
            .take()
            .map(|claim| (claim, response_json)),
    };
    // Settled whatever the commit says: the model answered, so the cost was incurred.
    // The two touch different keys, so they run side by side.
    let settled = prepared.metering.settle(&model, usage, cost_nano_usd);
    let committed = state.store.commit(&prepared.session.id, &commit);
    let ((), outcome) = tokio::join!(settled, committed);
    match outcome? {
        CommitOutcome::Committed => {
            prepared.lease.committed();
            Ok(response)
        }
        // Deleted or expired while the model answered: the reply is dropped, not stored.
        CommitOutcome::Missing => Err(ApiError::SessionNotFound),
        CommitOutcome::LeaseLost => Err(ApiError::SessionBusy { retry_after: 1 }),
    }
}
