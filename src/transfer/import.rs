//! One import, batch by batch: items are decoded, validated and tokenized on the blocking
//! pool (so both cores count tokens while the event loop keeps reading and writing), and
//! each batch is written in one pipelined round trip, in order. A bounded number of
//! batches is in flight at once, which bounds memory whatever the size of the body.

use std::collections::HashMap;

use actix_web::web;
use chrono::Utc;
use futures_util::{Stream, StreamExt};

use super::{
    items::RawItem,
    plan::{Step, check, head_after, plan},
    report::{ItemResult, Report, failure, refusal},
};
use crate::{
    domain::transfer::ImportMode,
    error::ApiError,
    state::AppState,
    store::import::{ImportOutcome, SessionHead},
};

/// Runs the batches through decode, validation, tokenization and the store.
pub async fn run(
    state: &web::Data<AppState>,
    tenant: &str,
    mode: ImportMode,
    batches: impl Stream<Item = Result<(u64, Vec<RawItem>), ApiError>>,
) -> Result<Report, ApiError> {
    // Decoding, validation and (for create) tokenization need nothing from the store:
    // several batches go through them at once, on the blocking pool.
    let prepared = batches
        .map(|batch| {
            let (state, tenant) = (state.clone(), tenant.to_string());
            async move {
                let (first, items) = batch?;
                Ok::<_, ApiError>((first, prepare(state, tenant, mode, items).await?))
            }
        })
        .buffered(state.settings.import.concurrency);
    let mut prepared = std::pin::pin!(prepared);
    let mut report = Report::default();
    // Writes go one batch at a time, in order, while the next batches are prepared: a
    // later line about the same session sees what an earlier one did.
    while let Some(batch) = prepared.next().await {
        let (first, mut steps) = batch?;
        if mode != ImportMode::Create {
            steps = resolve(state, tenant, mode, steps).await?;
        }
        for result in write(state, mode, first, steps).await? {
            match result.status {
                "error" => report.failed += 1,
                _ => report.imported += 1,
            }
            report.results.push(result);
        }
    }
    metrics::counter!("sessions_imported_total").increment(report.imported);
    Ok(report)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("import worker: {e}")))
}

async fn prepare(
    state: web::Data<AppState>,
    tenant: String,
    mode: ImportMode,
    items: Vec<RawItem>,
) -> Result<Vec<Step>, ApiError> {
    let now = Utc::now();
    blocking(move || {
        let steps = items
            .into_iter()
            .map(|raw| check(&state, &tenant, mode, raw));
        // Create needs nothing from the store first: tokenize in the same pass.
        match mode {
            ImportMode::Create => steps
                .map(|s| plan(&state, &tenant, mode, s, None, now))
                .collect(),
            _ => steps.collect(),
        }
    })
    .await
}

/// Append and replace: reads the sessions, then plans each write against what it found —
/// or against what an earlier item of the batch will have left.
async fn resolve(
    state: &web::Data<AppState>,
    tenant: &str,
    mode: ImportMode,
    steps: Vec<Step>,
) -> Result<Vec<Step>, ApiError> {
    let ids: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Valid(item) => item.session_id.clone(),
            _ => None,
        })
        .collect();
    let mut heads = state.store.import_heads(tenant, &ids).await?.into_iter();
    let (state, tenant, now) = (state.clone(), tenant.to_string(), Utc::now());
    blocking(move || {
        let mut after: HashMap<String, SessionHead> = HashMap::new();
        let mut plan_one = |step: Step| {
            let Step::Valid(item) = &step else {
                return step;
            };
            let id = item.session_id.clone().unwrap_or_default();
            let read = heads.next().flatten();
            let head = after.get(&id).cloned().or(read);
            let planned = plan(&state, &tenant, mode, step, Some(head), now);
            if let Step::Ready(write, _) = &planned {
                after.extend(head_after(write).map(|h| (id, h)));
            }
            planned
        };
        steps.into_iter().map(&mut plan_one).collect()
    })
    .await
}

async fn write(
    state: &AppState,
    mode: ImportMode,
    first: u64,
    steps: Vec<Step>,
) -> Result<Vec<ItemResult>, ApiError> {
    let mut results = Vec::with_capacity(steps.len());
    let (mut writes, mut pending) = (Vec::new(), Vec::new());
    for (i, step) in steps.into_iter().enumerate() {
        let index = first + i as u64;
        match step {
            Step::Ready(write, count) => {
                pending.push((results.len(), count));
                results.push(failure(
                    index,
                    Some(write.id.clone()),
                    &ApiError::StoreUnavailable,
                ));
                writes.push(*write);
            }
            Step::Failed(id, err) => results.push(failure(index, id, &err)),
            Step::TooLarge(message) => results.push(ItemResult {
                error: Some("payload_too_large"),
                message: Some(message),
                ..failure(index, None, &ApiError::StoreUnavailable)
            }),
            Step::Valid(item) => {
                let err = ApiError::Internal("item not planned".into());
                results.push(failure(index, item.session_id, &err));
            }
        }
    }
    let outcomes = state.store.import_sessions(&writes).await?;
    let mut messages = 0;
    for ((at, count), outcome) in pending.into_iter().zip(outcomes) {
        let result = &mut results[at];
        if outcome == ImportOutcome::Written {
            messages += count as u64;
            (result.status, result.messages) = (mode.done_status(), Some(count));
            (result.error, result.message, result.field) = (None, None, None);
        } else {
            let (code, message, field) = refusal(outcome);
            result.error = Some(code);
            result.message = Some(message.into());
            result.field = field.map(str::to_string);
        }
    }
    metrics::counter!("messages_imported_total").increment(messages);
    Ok(results)
}
