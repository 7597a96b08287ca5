//! The end of a send: the answer stored with the turns that asked for it, in one atomic
//! commit (or, for a send that keeps nothing, only its cost recorded).

use std::sync::Arc;

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
    llm::{ChatResponse, Usage, registry::Model},
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
    /// The model that began the answer; `fallback_count` is its place in the chain.
    pub model_used: String,
    pub fallback_count: usize,
    /// Every model that wrote a part of the answer, in order: `model_used` alone, or, when
    /// its stream broke and a later model of the chain finished the answer, that one too.
    pub models_used: Vec<String>,
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

/// The start of an answer, streamed by a model of the chain before its stream broke and a
/// later model went on with it.
#[derive(Debug, Clone)]
pub struct Part {
    /// The model's place in the chain.
    pub index: usize,
    pub text: String,
}

/// What one model of the chain wrote of the answer, and what that cost.
struct Share {
    model: Arc<Model>,
    usage: Usage,
    cost_nano_usd: u64,
}

/// Stores the user and assistant turns together and builds the response. `earlier` are the
/// parts other models streamed before the one at `model_index` finished the answer.
pub async fn finish(
    state: &AppState,
    mut prepared: Prepared,
    earlier: Vec<Part>,
    model_index: usize,
    mut answer: ChatResponse,
) -> Result<SendResponse, ApiError> {
    let counter = TokenCounter::shared();
    let model_at = |index: usize| {
        (prepared.chain.get(index).cloned()).ok_or_else(|| ApiError::Internal("model index".into()))
    };
    let share = |model: Arc<Model>, said: &Message, reported: Option<Usage>| {
        // An earlier part was read once as the prompt and written once, however the
        // upstream would have counted it.
        let usage = reported.unwrap_or(Usage {
            prompt_tokens: prepared.assembled.tokens,
            completion_tokens: counter.count_said(model.tokenizer, said),
        });
        let cost_nano_usd = model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens);
        Share {
            model,
            usage,
            cost_nano_usd,
        }
    };
    let mut shares = Vec::with_capacity(earlier.len() + 1);
    for part in &earlier {
        let said = Message::text(Role::Assistant, part.text.as_str());
        shares.push(share(model_at(part.index)?, &said, None));
    }
    shares.push(share(model_at(model_index)?, &answer.message, answer.usage));
    if !earlier.is_empty() {
        let mut text: String = earlier.iter().map(|p| p.text.as_str()).collect();
        text.push_str(&answer.message.content.text());
        answer.message.content = Message::text(Role::Assistant, text).content;
    }
    let model = (shares.first().map(|s| s.model.clone()))
        .ok_or_else(|| ApiError::Internal("no model".into()))?;
    let assistant_tokens = counter.count_turn(model.tokenizer, &answer.message);
    let usage = shares.iter().fold(Usage::default(), |sum, s| Usage {
        prompt_tokens: sum.prompt_tokens.saturating_add(s.usage.prompt_tokens),
        completion_tokens: sum
            .completion_tokens
            .saturating_add(s.usage.completion_tokens),
    });
    let cost_nano_usd = shares.iter().map(|s| s.cost_nano_usd).sum();
    let fallback_count = earlier.first().map_or(model_index, |p| p.index);
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
        fallback_count,
        models_used: shares.iter().map(|s| s.model.name.clone()).collect(),
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
        prepared.metering.settle_parts(&parts(&shares)).await;
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
    let charged = parts(&shares);
    let settled = prepared.metering.settle_parts(&charged);
    let at = prepared.session.key();
    let committed = state.store.commit(&at, &commit);
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

fn parts(shares: &[Share]) -> Vec<(&Model, Usage, u64)> {
    (shares.iter())
        .map(|s| (s.model.as_ref(), s.usage, s.cost_nano_usd))
        .collect()
}
