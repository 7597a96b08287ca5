//! The end of a send: the answer stored with the turns that asked for it, in one atomic
//! commit (or, for a send that keeps nothing, only its cost recorded).

use chrono::Utc;
use serde::Serialize;

use super::send::Prepared;
use crate::{
    domain::{
        message::{AnswerRecord, Message, Role, Turn},
        session::{UsageTotals, nano_usd_to_usd, now_ms},
        tokens::TokenCounter,
        tools::ToolCall,
    },
    error::ApiError,
    llm::ChatResponse,
    state::AppState,
    store::{Commit, CommitOutcome},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendResponse {
    pub session_id: String,
    pub message_id: String,
    pub assistant_message: String,
    /// The calls the answer makes; the next send brings their results.
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// OpenAI's words: `stop`, `length`, `tool_calls`, `content_filter`.
    #[schema(value_type = String)]
    pub finish_reason: &'static str,
    pub model_used: String,
    pub fallback_count: usize,
    pub usage: TokenUsage,
    pub cost_usd: f64,
    pub context: ContextReport,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContextReport {
    pub messages: usize,
    pub tokens: u32,
    /// Turns after the summary's watermark left out.
    pub dropped_messages: u64,
    pub budget_tokens: u32,
    /// What the summary of the older turns costs (0: none was sent).
    pub summary_tokens: u32,
}

impl SendResponse {
    /// The answer as a chat message.
    pub fn assistant(&self) -> Message {
        Message {
            tool_calls: self.tool_calls.clone(),
            refusal: self.refusal.clone(),
            ..Message::text(Role::Assistant, self.assistant_message.as_str())
        }
    }
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
    let record = prepared.record.take().map(|request| {
        Box::new(AnswerRecord {
            request,
            model: model.name.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            finish_reason: finish_reason.to_string(),
            input_from: prepared.session.message_count,
            deleted: false,
        })
    });
    let assistant_turn = Turn {
        record,
        ..Turn::new(
            prepared.answer_id.clone(),
            answer.message,
            Utc::now(),
            assistant_tokens,
        )
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
            summary_tokens: prepared.assembled.summary_tokens,
        },
    };
    if !prepared.keep {
        // Nothing is stored, but the model answered: the cost was incurred.
        prepared.metering.settle(&model, usage, cost_nano_usd).await;
        prepared.lease.release().await;
        return Ok(response);
    }
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
            crate::metrics::record_turns_stored(commit.turns.iter().map(|t| t.message.role));
            let added: u64 = commit.turns.iter().map(|t| u64::from(t.tokens)).sum();
            let unfolded = prepared.assembled.unfolded_tokens.map(|sent| sent + added);
            state
                .compaction
                .after_commit(&prepared.session, unfolded, prepared.assembled.budget);
            Ok(response)
        }
        // Deleted or expired while the model answered: the reply is dropped, not stored.
        CommitOutcome::Missing => Err(ApiError::SessionNotFound),
        CommitOutcome::LeaseLost => Err(ApiError::SessionBusy { retry_after: 1 }),
    }
}
