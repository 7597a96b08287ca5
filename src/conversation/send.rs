//! One turn of a conversation: admit, build the context, call the model, store both turns.

use std::sync::Arc;

use chrono::Utc;

use super::{
    context::{Around, Assembled, FIRST_CHUNK, assemble, budget},
    lease::Lease,
    upstream,
};
pub use super::{finish::SendResponse, input::SendInput};
use crate::{
    auth::Caller,
    domain::{
        message::{Turn, message_id},
        session::{StoredSession, is_session_id, new_id, now_ms},
        tokens::TokenCounter,
        tools,
        turns::{FieldName, check_new_turns, pending_calls},
    },
    error::ApiError,
    llm::{ChatRequest, ChatResponse, Options, registry::Model},
    metering::{Estimate, Metering, check_session_budget},
    state::AppState,
    store::{Admission, AdmitRequest, Admitted, IdempotencyClaim},
};

/// Besides the request's deadline (the upstream call), how long a send may take before
/// and after it (building the prompt, the commit): admission keeps the session that long.
const AROUND_THE_CALL_MS: u64 = 10_000;

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
    /// The id the answer will be stored under (known before it exists, for streams).
    pub answer_id: String,
    pub keep: bool,
    pub record: Option<serde_json::Value>,
}

pub enum Started {
    /// The same `Idempotency-Key` and body completed before: the stored response.
    Replay(String),
    Ready(Box<Prepared>),
    /// The turn the send was to continue is not the session's newest (or is gone):
    /// nothing was done, and the input comes back for the caller to decide (see
    /// [`SendInput::continues`]).
    NotNewest(Box<SendInput>),
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
        upstream::known_model(state, name)?;
    }
    let token = new_id();
    let request = AdmitRequest {
        tenant: &caller.tenant,
        lease_token: &token,
        lease_ms: state.settings.sessions.lease_seconds * 1000,
        claim: input.idempotency.as_ref(),
        now_ms: now_ms(),
        tail: FIRST_CHUNK,
        hold_ms: (state.settings.server.request_timeout_seconds * 1000)
            .saturating_add(AROUND_THE_CALL_MS),
    };
    let at = caller.session(id);
    let Admitted { session, tail } = match state.store.admit(&at, &request).await? {
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
        &at,
        token,
        input.idempotency.as_ref().map(|c| c.key.clone()),
    );
    if let Some(expected) = &input.continues
        && !tail
            .last()
            .is_some_and(|t| t.id == *expected && t.continuable())
    {
        lease.release().await;
        return Ok(Started::NotNewest(Box::new(input)));
    }
    let planned = plan(state, caller, &session, tail, &input).await;
    let planned = lease.release_on_err(planned).await?;
    let now = Utc::now();
    let new_turns: Vec<Turn> = (input.turns.into_iter().zip(planned.turn_tokens))
        .zip(session.message_count..)
        .map(|((message, tokens), index)| Turn::new(message_id(index), message, now, tokens))
        .collect();
    let answer_id = message_id(session.message_count + new_turns.len() as u64);
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
        answer_id,
        keep: input.keep,
        record: input.record,
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
    check_new_turns(&input.turns, pending, max_bytes, field, input.batch)?;
    let config = &session.config;
    let primary = input.model.as_deref().unwrap_or(&config.model);
    let chain = upstream::chain(state, primary, &config.fallback_models)?;
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
        instructions: input.instructions.as_deref(),
    };
    let store = state.store.as_ref();
    let assembled = assemble(store, session, &primary, &around, tail).await?;
    if input.whole_history && assembled.truncated {
        return Err(whole_history_exceeded(store, session, &around).await);
    }
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

/// What the whole conversation would cost, for the refusal of a send that may not leave
/// any of it out.
async fn whole_history_exceeded(
    store: &dyn crate::store::Store,
    session: &StoredSession,
    around: &Around<'_>,
) -> ApiError {
    let history = match store
        .turns(&session.key(), 0, session.message_count as usize)
        .await
    {
        Ok(turns) => turns,
        Err(err) => return err.into(),
    };
    let stored: u64 = history.iter().map(|t| u64::from(t.tokens)).sum();
    let fixed = u64::from(around.new_tokens) + u64::from(around.tools_tokens);
    ApiError::ContextExceeded {
        max_tokens: around.budget,
        current_tokens: u32::try_from(stored + fixed).unwrap_or(u32::MAX),
    }
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

impl Prepared {
    /// The request for one model of the chain, its prompt fitted to that model.
    pub fn request_for(&self, model: &Model) -> ChatRequest {
        let budget = budget(&self.session, model, self.max_tokens);
        let tools = &self.options.tools;
        ChatRequest {
            model: model.upstream_name.clone(),
            messages: self.assembled.fitted(model.tokenizer, tools, budget),
            max_tokens: Some(self.max_tokens),
            temperature: self.temperature,
            options: self.options.clone(),
            first_byte_timeout: None,
            prefill: None,
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
