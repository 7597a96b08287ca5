//! Bulk import and export of whole conversations.
//!
//! - [`source`] reads an import body as batches of items ([`items`] cuts them), within
//!   the `[import]` limits, without holding an NDJSON body whole.
//! - [`import`] decodes, validates and tokenizes each batch on the blocking pool and writes
//!   it with one pipelined round trip, a few batches in flight.
//! - [`report`] is the answer: one result per item, in order.
//! - [`idempotency`] makes a retried import (same `Idempotency-Key`, same body) harmless.
//! - [`export`] streams sessions back out as NDJSON in the import format.

pub mod export;
pub mod idempotency;
pub mod import;
pub mod items;
mod plan;
pub mod report;
pub mod source;

use actix_web::web;
use sha2::Digest;

use self::{
    idempotency::Begin,
    source::{Chunks, Format, Source},
};
use crate::{domain::transfer::ImportMode, error::ApiError, state::AppState};

/// Runs one import request and returns its answer (JSON), replayed or fresh.
pub async fn run_import(
    state: &web::Data<AppState>,
    tenant: &str,
    mode: ImportMode,
    format: Format,
    idempotency_key: Option<String>,
    chunks: Chunks,
) -> Result<String, ApiError> {
    let salt = format!("{}:{format:?}", mode.as_str());
    let mut source = Source::new(chunks, format, &state.settings.import, &salt);
    let digest = source.digest();
    let fingerprint = move || hex::encode(digest.borrow().clone().finalize());
    let claim = match idempotency_key {
        None => None,
        Some(key) => match idempotency::begin(state, tenant, &key).await? {
            Begin::Run(claim) => Some(claim),
            Begin::Replay {
                fingerprint: stored,
                result,
            } => {
                source.drain().await?;
                return if fingerprint() == stored {
                    Ok(result)
                } else {
                    Err(ApiError::IdempotencyKeyReused)
                };
            }
        },
    };
    let outcome = import::run(state, tenant, mode, source.into_stream()).await;
    let answer = outcome.and_then(|report| {
        let body = serde_json::to_string(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((body, !report.has_transient_errors()))
    });
    let Some(claim) = claim else {
        return answer.map(|(body, _)| body);
    };
    match answer {
        Ok((body, keep)) => {
            let fp = fingerprint();
            let settled = claim
                .finish(keep.then_some((fp.as_str(), body.as_str())))
                .await;
            if let Err(err) = settled {
                // The import itself is done: its answer matters more than the record.
                tracing::warn!(?err, "could not record an import's idempotency key");
            }
            Ok(body)
        }
        Err(err) => {
            let _ = claim.finish(None).await;
            Err(err)
        }
    }
}
