//! Compaction jobs: when they start, one at a time per session, backed off after failures.
//!
//! A committed send that leaves more than `trigger_ratio` of the budget in turns after
//! the watermark asks for a job; the job runs on its own task ([`job::run`]), never on
//! the send's critical path, and its failures never reach a send. Across instances the
//! store's compaction lease keeps it to one job per session; within one, `running` saves
//! asking the store.

pub mod job;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::{
    domain::{
        compaction::{SPLITS_A_UNIT, Summary, SummaryPatch, check_summary_text},
        message::{Role, message_index},
        scope::SessionKey,
        session::StoredSession,
        tokens::TokenCounter,
    },
    error::ApiError,
    state::AppState,
};
pub use job::{JobError, Outcome};

/// The per-instance side of compaction: the queue of sessions due, and backoff.
pub struct Jobs {
    due: mpsc::UnboundedSender<SessionKey>,
    queue: Mutex<Option<mpsc::UnboundedReceiver<SessionKey>>>,
    running: Mutex<HashSet<SessionKey>>,
    /// Failures in a row and when the session may be tried again.
    backoff: Mutex<HashMap<SessionKey, (u32, Instant)>>,
    retry_base: Duration,
}

impl Jobs {
    pub fn new(retry_base: Duration) -> Arc<Jobs> {
        let (due, queue) = mpsc::unbounded_channel();
        Arc::new(Jobs {
            due,
            queue: Mutex::new(Some(queue)),
            running: Mutex::default(),
            backoff: Mutex::default(),
            retry_base,
        })
    }

    /// Asks for a job if the session's policy says the unfolded turns (`None`: more than
    /// were sent) are due for one. Costs the send a comparison and a channel push.
    pub fn after_commit(&self, session: &StoredSession, unfolded: Option<u64>, budget: u32) {
        let policy = &session.config.compaction;
        if policy.triggers(unfolded.unwrap_or(u64::MAX), budget) {
            let _ = self.due.send(session.key());
        }
    }

    fn backed_off(&self, id: &SessionKey) -> bool {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff
            .get(id)
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    fn record(&self, id: &SessionKey, failed: bool) {
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if !failed {
            backoff.remove(id);
            return;
        }
        let failures = backoff.get(id).map_or(0, |(n, _)| *n) + 1;
        let wait = self.retry_base * 2u32.pow(failures.min(7) - 1);
        backoff.insert(id.clone(), (failures, Instant::now() + wait));
    }

    /// Marks the session's job as running here; `false` if one already is.
    fn start(&self, id: &SessionKey) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(id.clone())
    }

    fn end(&self, id: &SessionKey) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(id);
    }
}

/// Starts the task that runs the jobs asked for. It holds the state weakly: it must not
/// keep a stopped app alive, and it ends with it (the queue's sender is in the state).
pub fn serve(state: &Arc<AppState>) {
    let queue = (state
        .compaction
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner()))
    .take();
    let Some(mut queue) = queue else {
        return;
    };
    let weak: Weak<AppState> = Arc::downgrade(state);
    tokio::spawn(async move {
        while let Some(id) = queue.recv().await {
            let Some(state) = weak.upgrade() else {
                return;
            };
            if state.compaction.backed_off(&id) || !state.compaction.start(&id) {
                continue;
            }
            tokio::spawn(async move {
                let _ = run_now(&state, &id).await;
                state.compaction.end(&id);
            });
        }
    });
}

/// Runs a job on the session now and waits for it (`POST …/compact`, and the queue).
pub async fn run_now(state: &AppState, id: &SessionKey) -> Result<Outcome, JobError> {
    let started = Instant::now();
    let result = job::run(state, id).await;
    let outcome = match &result {
        Ok(outcome) => outcome.label(),
        Err(err) => err.label(),
    };
    metrics::counter!("compactions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("compaction_duration_seconds").record(started.elapsed().as_secs_f64());
    if let Ok(Outcome::Compacted { tokens_saved, .. }) = &result {
        metrics::counter!("compaction_tokens_saved_total").increment(*tokens_saved);
    }
    if !matches!(result, Ok(Outcome::Busy)) {
        state.compaction.record(id, result.is_err());
    }
    result
}

/// A PATCH's `summary`: written whatever the generation (a job in flight commits nothing
/// after it); `None` clears it, so every turn is sent or left out as without compaction.
pub async fn put_summary(
    state: &AppState,
    session: &mut StoredSession,
    patch: Option<&SummaryPatch>,
) -> Result<(), ApiError> {
    let summary = match patch {
        Some(patch) => Some(summary_of(state, session, patch).await?),
        None => None,
    };
    match state
        .store
        .put_summary(&session.key(), summary.as_ref())
        .await?
    {
        Some(generation) => {
            session.summary = summary;
            session.summary_generation = generation;
            Ok(())
        }
        None => Err(ApiError::SessionNotFound),
    }
}

/// The summary a PATCH asks for, if it covers a whole number of units: the turn after
/// its last one must not answer a call of it.
async fn summary_of(
    state: &AppState,
    session: &StoredSession,
    patch: &SummaryPatch,
) -> Result<Summary, ApiError> {
    let field = "summary.upto_message_id";
    let not_ours = || ApiError::invalid(field, "not a message of this session");
    let index = message_index(&patch.upto_message_id)
        .filter(|i| *i < session.message_count)
        .ok_or_else(not_ours)?;
    let around = state.store.turns(&session.key(), index, 2).await?;
    if around.first().is_none_or(|t| t.id != patch.upto_message_id) {
        return Err(not_ours());
    }
    if around
        .get(1)
        .is_some_and(|t| t.message.role.is_call_result())
    {
        return Err(ApiError::invalid(field, SPLITS_A_UNIT));
    }
    check_summary_text(&patch.text)?;
    let model = crate::conversation::upstream::known_model(state, &session.config.model)?;
    let text = crate::domain::compaction::summary_turn_text(&patch.text);
    Ok(Summary {
        text: patch.text.clone(),
        upto: index + 1,
        upto_id: patch.upto_message_id.clone(),
        tokens: TokenCounter::shared().count_message(model.tokenizer, Role::System, &text),
        updated_at: Utc::now(),
    })
}
