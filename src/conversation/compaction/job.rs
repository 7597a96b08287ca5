//! One compaction: lease, read, fold chunk by chunk through the router, commit each.

use std::sync::Arc;

use chrono::Utc;

use crate::{
    conversation::{context::budget, upstream},
    domain::{
        compaction::{
            Summary,
            fold::{acceptable, chunks, fold_len, summarizer_prompt},
            summary_turn_text,
        },
        message::{Role, Turn},
        scope::SessionKey,
        session::{StoredSession, UsageTotals, new_id, now_ms},
        tokens::TokenCounter,
    },
    llm::{ChatRequest, Options, registry::Model},
    state::AppState,
    store::{
        StoreError,
        compaction::{Claim, SummaryCommit, SummaryOutcome},
    },
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `folded` turns were folded into the summary in `chunks` summarizer calls.
    Compacted {
        folded: u64,
        chunks: usize,
        tokens_saved: u64,
    },
    /// Everything after the watermark fits what is kept unfolded.
    NothingToFold,
    /// Another job holds the session's compaction lease.
    Busy,
    /// The summary changed under the job (a PATCH, another job): its work was dropped.
    Stale,
    Missing,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Compacted { .. } => "compacted",
            Outcome::NothingToFold => "nothing_to_fold",
            Outcome::Busy => "busy",
            Outcome::Stale => "stale",
            Outcome::Missing => "missing",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("summarizer: {0}")]
    Upstream(crate::error::ApiError),
    /// Empty output or a refusal: not a summary. Tried again later.
    #[error("the summarizer's answer is not a summary")]
    Rejected,
    #[error("{0}")]
    Config(crate::error::ApiError),
}

impl JobError {
    pub fn label(&self) -> &'static str {
        match self {
            JobError::Store(_) => "store_error",
            JobError::Upstream(_) => "upstream_error",
            JobError::Rejected => "rejected",
            JobError::Config(_) => "config_error",
        }
    }
}

/// Leaves room for the prompt's framing around the transcript.
const PROMPT_OVERHEAD_TOKENS: u64 = 128;

pub async fn run(state: &AppState, id: &SessionKey) -> Result<Outcome, JobError> {
    let token = new_id();
    let lease_ms = state.settings.compaction.lease_seconds * 1000;
    let session = match state
        .store
        .claim_compaction(id, &token, lease_ms, now_ms())
        .await?
    {
        Claim::Claimed(session) => *session,
        Claim::Busy => return Ok(Outcome::Busy),
        Claim::Missing => return Ok(Outcome::Missing),
    };
    let result = fold(state, &session, &token).await;
    // A lease left behind (the store failing now) lapses by itself.
    let _ = state.store.release_compaction(id, &token).await;
    result
}

async fn fold(state: &AppState, session: &StoredSession, token: &str) -> Result<Outcome, JobError> {
    let policy = &session.config.compaction;
    let own = upstream::known_model(state, &session.config.model).map_err(JobError::Config)?;
    let (summarizer, fallbacks) = match &policy.model {
        Some(model) => (model.as_str(), &[][..]),
        None => (
            session.config.model.as_str(),
            &session.config.fallback_models[..],
        ),
    };
    let chain = upstream::chain(state, summarizer, fallbacks).map_err(JobError::Config)?;
    let Some(first) = chain.first().cloned() else {
        return Ok(Outcome::NothingToFold);
    };
    let max_tokens =
        (session.config.max_tokens).unwrap_or(state.settings.sessions.default_max_tokens);
    let budget = budget(session, &own, max_tokens);
    let floor = session.summary.as_ref().map_or(0, |s| s.upto);
    let count = usize::try_from(session.message_count - floor).unwrap_or(usize::MAX);
    let turns = state.store.turns(&session.key(), floor, count).await?;
    let keep = (policy.keep_ratio * f64::from(budget)) as u64;
    let cut = fold_len(&turns, keep);
    if cut == 0 {
        return Ok(Outcome::NothingToFold);
    }
    let counter = TokenCounter::shared();
    let instructions = policy.instructions.as_deref();
    let previous_room = session
        .summary
        .as_ref()
        .map_or(0, |s| s.tokens)
        .max(policy.max_summary_tokens);
    let overhead = u64::from(policy.max_summary_tokens)
        + u64::from(previous_room)
        + u64::from(instructions.map_or(0, |i| counter.count_text(first.tokenizer, i)))
        + PROMPT_OVERHEAD_TOKENS;
    let capacity = u64::from(first.context_tokens)
        .saturating_sub(overhead)
        .max(1);
    let mut generation = session.summary_generation;
    let mut text = session.summary.as_ref().map(|s| s.text.clone());
    let folded_cost: u64 = turns[..cut].iter().map(|t| u64::from(t.tokens)).sum();
    let mut summary_tokens = 0;
    let plan = chunks(&turns[..cut], capacity);
    for range in &plan {
        let chunk = &turns[range.clone()];
        let call = Call {
            chain: &chain,
            instructions,
            previous: text.as_deref(),
            chunk,
            max_summary_tokens: policy.max_summary_tokens,
            // About four characters a token: a single unit over the window is shortened.
            max_chars: usize::try_from(capacity.saturating_mul(4)).unwrap_or(usize::MAX),
        };
        let (answer, usage) = summarize(state, &call).await?;
        let last = chunk.last().map(|t| t.id.clone()).unwrap_or_default();
        let turn_text = summary_turn_text(&answer);
        summary_tokens = counter.count_message(own.tokenizer, Role::System, &turn_text);
        // A summary longer than asked for could crowd the turns it makes room for out
        // of every prompt: rejected like an empty one, and tried again later.
        if summary_tokens > policy.max_summary_tokens.saturating_mul(2) {
            return Err(JobError::Rejected);
        }
        let summary = Summary {
            text: answer,
            upto: floor + range.end as u64,
            upto_id: last,
            tokens: summary_tokens,
            updated_at: Utc::now(),
        };
        let commit = SummaryCommit {
            lease_token: token,
            expected_generation: generation,
            summary: &summary,
            usage,
            lease_ms: state.settings.compaction.lease_seconds * 1000,
            now_ms: now_ms(),
        };
        match state.store.commit_summary(&session.key(), &commit).await? {
            SummaryOutcome::Committed => generation += 1,
            SummaryOutcome::Stale => return Ok(Outcome::Stale),
            SummaryOutcome::Missing => return Ok(Outcome::Missing),
        }
        text = Some(summary.text);
    }
    let before = folded_cost + u64::from(session.summary.as_ref().map_or(0, |s| s.tokens));
    Ok(Outcome::Compacted {
        folded: cut as u64,
        chunks: plan.len(),
        tokens_saved: before.saturating_sub(u64::from(summary_tokens)),
    })
}

struct Call<'a> {
    chain: &'a [Arc<Model>],
    instructions: Option<&'a str>,
    previous: Option<&'a str>,
    chunk: &'a [Turn],
    max_summary_tokens: u32,
    max_chars: usize,
}

/// One summarizer call through the router (retries, fallbacks, breakers): the new
/// summary and what it cost.
async fn summarize(state: &AppState, call: &Call<'_>) -> Result<(String, UsageTotals), JobError> {
    let messages = summarizer_prompt(
        call.instructions,
        call.previous,
        call.chunk,
        call.max_summary_tokens,
        call.max_chars,
    );
    let options = Arc::new(Options::default());
    let routed = state
        .router
        .complete(
            call.chain,
            |model| ChatRequest {
                model: model.upstream_name.clone(),
                messages: messages.clone(),
                max_tokens: Some(call.max_summary_tokens),
                temperature: Some(0.0),
                options: options.clone(),
                // The router sets it per attempt.
                first_byte_timeout: None,
                prefill: None,
            },
            upstream::deadline(state),
        )
        .await
        .map_err(|err| JobError::Upstream(upstream::api_error(err)))?;
    let model = upstream::answering(call.chain, routed.index).map_err(JobError::Upstream)?;
    let answer = routed.value;
    if !acceptable(&answer.message) {
        return Err(JobError::Rejected);
    }
    let counter = TokenCounter::shared();
    let usage = answer.usage.unwrap_or(crate::llm::Usage {
        prompt_tokens: messages
            .iter()
            .map(|m| counter.count_turn(model.tokenizer, m))
            .sum(),
        completion_tokens: counter.count_said(model.tokenizer, &answer.message),
    });
    let text = answer.message.content.text().trim().to_string();
    Ok((
        text,
        UsageTotals {
            prompt_tokens: u64::from(usage.prompt_tokens),
            completion_tokens: u64::from(usage.completion_tokens),
            cost_nano_usd: model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens),
        },
    ))
}
