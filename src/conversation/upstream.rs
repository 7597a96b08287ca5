//! Between the router and the contract: the request deadline, and routing failures turned
//! into `upstream_error` (with every attempt) or `upstream_timeout`.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    domain::session::UNKNOWN_MODEL,
    error::{ApiError, FailedAttempt},
    llm::{
        ProviderError,
        registry::Model,
        router::{Attempt, RouteError},
    },
    state::AppState,
};

/// The overall deadline of a request that calls upstream models, from now.
pub fn deadline(state: &AppState) -> Instant {
    Instant::now() + Duration::from_secs(state.settings.server.request_timeout_seconds)
}

pub fn api_error(err: RouteError) -> ApiError {
    match err {
        RouteError::Deadline(_) => ApiError::UpstreamTimeout,
        RouteError::Exhausted(attempts) => match attempts.last() {
            // No model of the chain could honour a parameter: the caller's to change.
            Some(Attempt {
                error: Some(ProviderError::Unsupported { param, message }),
                ..
            }) => ApiError::invalid(param.clone(), message.clone()),
            _ => ApiError::UpstreamError {
                attempts: attempts.iter().map(report).collect(),
            },
        },
    }
}

pub fn report(attempt: &Attempt) -> FailedAttempt {
    let (status, retry_after) = match &attempt.error {
        Some(ProviderError::Status {
            status,
            retry_after,
            ..
        }) => (Some(*status), retry_after.map(|wait| wait.as_secs().max(1))),
        _ => (None, None),
    };
    let error = attempt.error.as_ref().map_or_else(
        || "skipped: the model's circuit breaker is open".to_string(),
        ToString::to_string,
    );
    FailedAttempt {
        model: attempt.model.clone(),
        status,
        error,
        reason: attempt.reason(),
        retry_after,
    }
}

/// The model of the chain that answered.
pub fn answering(chain: &[Arc<Model>], index: usize) -> Result<Arc<Model>, ApiError> {
    chain
        .get(index)
        .cloned()
        .ok_or_else(|| ApiError::Internal("model index".into()))
}

pub fn known_model(state: &AppState, name: &str) -> Result<Arc<Model>, ApiError> {
    (state.models.get(name).cloned()).ok_or_else(|| ApiError::invalid("model", UNKNOWN_MODEL))
}

/// The models a call tries, in order: `primary`, then `fallbacks` — or, when that names
/// none (a session without its own), the model's configured fallbacks. Unknown names and
/// repeats are skipped.
pub fn chain(
    state: &AppState,
    primary: &str,
    fallbacks: &[String],
) -> Result<Vec<Arc<Model>>, ApiError> {
    let primary = known_model(state, primary)?;
    let fallbacks = if fallbacks.is_empty() {
        &primary.fallbacks
    } else {
        fallbacks
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
