//! One compaction: lease, read, fold chunk by chunk through the router, commit each.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::{
    conversation::{context::session_budget, upstream},
    domain::{
        compaction::{
            Summary,
            fold::{acceptable, chunks, fold_len, summarizer_prompt},
            summary_turn_text,
        },
        message::{Role, Turn},
        scope::SessionKey,
        session::{StoredSession, UsageTotals, new_id, now_ms},
        tokens::{TokenCounter, Tokenizer},
    },
    llm::{ChatRequest, Options, registry::Model},
    state::AppState,
    store::{
        Store, StoreError,
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

/// What a job folds with, worked out from the session and its summarizer.
#[derive(Debug, Clone, Copy)]
pub struct FoldPlan {
    /// What the newest turns keep unfolded: a share of the session's prompt budget.
    pub keep_tokens: u64,
    /// The most transcript one summarizer call takes.
    pub chunk_tokens: u64,
    /// The session model's: what the summary costs in its prompts.
    pub tokenizer: Tokenizer,
    pub max_summary_tokens: u32,
    /// The lease is renewed for this long at every chunk's commit.
    pub lease_ms: u64,
}

/// Writes the next summary: `previous` with `chunk` (turns after it, oldest first)
/// folded in, and what that cost.
#[async_trait]
pub trait Summarizer: Send + Sync {
    async fn summarize(
        &self,
        previous: Option<&str>,
        chunk: &[Turn],
    ) -> Result<(String, UsageTotals), JobError>;
}

pub async fn run(state: &AppState, id: &SessionKey) -> Result<Outcome, JobError> {
    let lease_ms = state.settings.compaction.lease_seconds * 1000;
    compact(&*state.store, id, lease_ms, |session| {
        Routed::for_session(state, session, lease_ms)
    })
    .await
}

/// One job on any store with any summarizer: takes the compaction lease, folds, gives
/// the lease back. `summarizer_for` sees the session as claimed; `None`: it has no
/// summarizer to fold with.
pub async fn compact<S: Summarizer>(
    store: &dyn Store,
    id: &SessionKey,
    lease_ms: u64,
    summarizer_for: impl FnOnce(&StoredSession) -> Result<Option<(FoldPlan, S)>, JobError>,
) -> Result<Outcome, JobError> {
    let token = new_id();
    let session = match store
        .claim_compaction(id, &token, lease_ms, now_ms())
        .await?
    {
        Claim::Claimed(session) => *session,
        Claim::Busy => return Ok(Outcome::Busy),
        Claim::Missing => return Ok(Outcome::Missing),
    };
    let result = match summarizer_for(&session) {
        Ok(Some((plan, summarizer))) => fold(store, &session, &token, &plan, &summarizer).await,
        Ok(None) => Ok(Outcome::NothingToFold),
        Err(err) => Err(err),
    };
    // A lease left behind (the store failing now) lapses by itself.
    let _ = store.release_compaction(id, &token).await;
    result
}

/// Folds the turns after the watermark that the newest `keep_tokens` leave out, chunk by
/// chunk, oldest first, each chunk committed on top of the one before.
async fn fold(
    store: &dyn Store,
    session: &StoredSession,
    token: &str,
    plan: &FoldPlan,
    summarizer: &dyn Summarizer,
) -> Result<Outcome, JobError> {
    let floor = session.summary.as_ref().map_or(0, |s| s.upto);
    let count = usize::try_from(session.message_count - floor).unwrap_or(usize::MAX);
    let turns = store.turns(&session.key(), floor, count).await?;
    let cut = fold_len(&turns, plan.keep_tokens);
    if cut == 0 {
        return Ok(Outcome::NothingToFold);
    }
    let counter = TokenCounter::shared();
    let mut generation = session.summary_generation;
    let mut text = session.summary.as_ref().map(|s| s.text.clone());
    let folded_cost: u64 = turns[..cut].iter().map(|t| u64::from(t.tokens)).sum();
    let mut summary_tokens = 0;
    let ranges = chunks(&turns[..cut], plan.chunk_tokens);
    for range in &ranges {
        let chunk = &turns[range.clone()];
        let (answer, usage) = summarizer.summarize(text.as_deref(), chunk).await?;
        let last = chunk.last().map(|t| t.id.clone()).unwrap_or_default();
        let turn_text = summary_turn_text(&answer);
        summary_tokens = counter.count_message(plan.tokenizer, Role::System, &turn_text);
        // A summary longer than asked for could crowd the turns it makes room for out
        // of every prompt: rejected like an empty one, and tried again later.
        if summary_tokens > plan.max_summary_tokens.saturating_mul(2) {
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
            lease_ms: plan.lease_ms,
            now_ms: now_ms(),
        };
        match store.commit_summary(&session.key(), &commit).await? {
            SummaryOutcome::Committed => generation += 1,
            SummaryOutcome::Stale => return Ok(Outcome::Stale),
            SummaryOutcome::Missing => return Ok(Outcome::Missing),
        }
        text = Some(summary.text);
    }
    let before = folded_cost + u64::from(session.summary.as_ref().map_or(0, |s| s.tokens));
    Ok(Outcome::Compacted {
        folded: cut as u64,
        chunks: ranges.len(),
        tokens_saved: before.saturating_sub(u64::from(summary_tokens)),
    })
}

/// The summarizer of a running service: the policy's model (or the session's, with its
/// fallbacks) through the router: retries, fallbacks, breakers.
struct Routed<'a> {
    state: &'a AppState,
    chain: Vec<Arc<Model>>,
    instructions: Option<String>,
    max_summary_tokens: u32,
    /// About four characters a token: a single unit over the window is shortened.
    max_chars: usize,
}

impl<'a> Routed<'a> {
    fn for_session(
        state: &'a AppState,
        session: &StoredSession,
        lease_ms: u64,
    ) -> Result<Option<(FoldPlan, Routed<'a>)>, JobError> {
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
            return Ok(None);
        };
        let budget = session_budget(&state.settings, session, &own);
        let instructions = policy.instructions.as_deref();
        let previous_room = session
            .summary
            .as_ref()
            .map_or(0, |s| s.tokens)
            .max(policy.max_summary_tokens);
        let counter = TokenCounter::shared();
        let overhead = u64::from(policy.max_summary_tokens)
            + u64::from(previous_room)
            + u64::from(instructions.map_or(0, |i| counter.count_text(first.tokenizer, i)))
            + PROMPT_OVERHEAD_TOKENS;
        let chunk_tokens = u64::from(first.context_tokens)
            .saturating_sub(overhead)
            .max(1);
        let plan = FoldPlan {
            keep_tokens: (policy.keep_ratio * f64::from(budget)) as u64,
            chunk_tokens,
            tokenizer: own.tokenizer,
            max_summary_tokens: policy.max_summary_tokens,
            lease_ms,
        };
        let routed = Routed {
            state,
            chain,
            instructions: instructions.map(str::to_string),
            max_summary_tokens: policy.max_summary_tokens,
            max_chars: usize::try_from(chunk_tokens.saturating_mul(4)).unwrap_or(usize::MAX),
        };
        Ok(Some((plan, routed)))
    }
}

#[async_trait]
impl Summarizer for Routed<'_> {
    async fn summarize(
        &self,
        previous: Option<&str>,
        chunk: &[Turn],
    ) -> Result<(String, UsageTotals), JobError> {
        let messages = summarizer_prompt(
            self.instructions.as_deref(),
            previous,
            chunk,
            self.max_summary_tokens,
            self.max_chars,
        );
        let options = Arc::new(Options::default());
        let routed = (self.state.router)
            .complete(
                &self.chain,
                |model| ChatRequest {
                    model: model.upstream_name.clone(),
                    messages: messages.clone(),
                    max_tokens: Some(self.max_summary_tokens),
                    temperature: Some(0.0),
                    options: options.clone(),
                    // The router sets it per attempt.
                    first_byte_timeout: None,
                    prefill: None,
                },
                upstream::deadline(self.state),
            )
            .await
            .map_err(|err| JobError::Upstream(upstream::api_error(err)))?;
        let model = upstream::answering(&self.chain, routed.index).map_err(JobError::Upstream)?;
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
}
