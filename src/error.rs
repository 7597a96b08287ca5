//! The one place where failures become HTTP answers.
//!
//! Every handler returns [`ApiError`]; each variant owns a stable code that decides both
//! the status and the flat body of the contract. 5xx bodies stay generic: the cause goes
//! to the log, never to the client.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    domain::error::DomainError,
    store::{Refusal, StoreError},
};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedAttempt {
    pub model: String,
    pub status: Option<u16>,
    pub error: String,
    /// Machine-readable cause: `server_error`, `timeout`, `content_filter`, `circuit_open`, …
    pub reason: &'static str,
    /// The wait a rate-limited upstream asked for, in seconds.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// `Display` is what the logs show (request logging records it): it never carries
/// request content, which serde's messages may quote. The detailed text goes only
/// to the client, through [`ApiError::body`]. `Debug` is kept as terse, for the same reason.
#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    InvalidRequest {
        message: String,
        field: Option<String>,
    },
    #[error("the prompt needs {current_tokens} tokens but the budget is {max_tokens}")]
    ContextExceeded {
        max_tokens: u32,
        current_tokens: u32,
    },
    #[error("missing, unknown, expired or revoked API key")]
    InvalidApiKey,
    #[error("this key is not allowed here")]
    Forbidden,
    #[error("no such session")]
    SessionNotFound,
    #[error("this tenant already holds a session of this id")]
    SessionExists,
    #[error("another message on this session is still being processed")]
    SessionBusy { retry_after: u64 },
    #[error("a request with this Idempotency-Key is still in flight")]
    IdempotencyKeyInUse,
    #[error("this Idempotency-Key was used with a different body")]
    IdempotencyKeyReused,
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// The client stopped sending its body; the connection is closed.
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// This client address holds too many open connections; this one is closed.
    #[error("too many open connections from this address")]
    TooManyConnections,
    #[error("every model in the chain failed")]
    UpstreamError { attempts: Vec<FailedAttempt> },
    #[error("the request deadline passed before the model answered")]
    UpstreamTimeout,
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// Also `store_unavailable` for clients; the message says why, for their operators.
    #[error("the session store refuses writes: {0}")]
    StoreRefusing(Refusal),
    #[error("no such route")]
    RouteNotFound,
    /// A stream cut short when the shutdown's grace period ended.
    #[error("this server is shutting down; retry and another instance will answer")]
    ShuttingDown,
    /// The path is served, under other methods (listed in `Allow`).
    #[error("this path does not accept this method")]
    MethodNotAllowed { allow: String },
    #[error("this key is over its rate limit")]
    RateLimited { retry_after: u64 },
    #[error("this request could pass the spending cap of the session or key")]
    BudgetExceeded { limit_usd: f64, spent_usd: f64 },
    #[error("no such API key")]
    KeyNotFound,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::ContextExceeded { .. } => "context_exceeded",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::Forbidden => "forbidden",
            ApiError::SessionNotFound => "session_not_found",
            ApiError::SessionExists => "session_exists",
            ApiError::SessionBusy { .. } => "session_busy",
            ApiError::IdempotencyKeyInUse => "idempotency_key_in_use",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::UpstreamError { .. } => "upstream_error",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::StoreUnavailable | ApiError::StoreRefusing(_) => "store_unavailable",
            ApiError::RouteNotFound => "not_found",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RateLimited { .. } => "rate_limit_exceeded",
            ApiError::BudgetExceeded { .. } => "budget_exceeded",
            ApiError::KeyNotFound => "key_not_found",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Extra fields of the flat body, beside `error` and `message`.
    fn extra(&self) -> Value {
        match self {
            ApiError::InvalidRequest { field: Some(f), .. } => json!({ "field": f }),
            ApiError::ContextExceeded {
                max_tokens,
                current_tokens,
            } => json!({ "max_tokens": max_tokens, "current_tokens": current_tokens }),
            ApiError::SessionBusy { retry_after } => json!({ "retry_after": retry_after }),
            ApiError::PayloadTooLarge { limit_bytes } => json!({ "limit_bytes": limit_bytes }),
            ApiError::UpstreamError { attempts } => json!({ "attempts": attempts }),
            ApiError::StoreUnavailable
            | ApiError::StoreRefusing(_)
            | ApiError::ShuttingDown
            | ApiError::TooManyConnections => {
                json!({ "retry_after": 1 })
            }
            ApiError::RateLimited { retry_after } => json!({ "retry_after": retry_after }),
            ApiError::BudgetExceeded {
                limit_usd,
                spent_usd,
            } => json!({ "limit_usd": limit_usd, "spent_usd": spent_usd }),
            ApiError::MethodNotAllowed { allow } => json!({ "allow": allow }),
            _ => json!({}),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::SessionBusy { retry_after } => Some(*retry_after),
            ApiError::StoreUnavailable
            | ApiError::StoreRefusing(_)
            | ApiError::ShuttingDown
            | ApiError::TooManyConnections => Some(1),
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The flat contract body.
    pub fn body(&self) -> Value {
        let message = match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        let mut body = json!({ "error": self.code(), "message": message });
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, self.extra()) {
            body.extend(extra);
        }
        body
    }
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {self}", self.code())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::ContextExceeded { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::SessionNotFound | ApiError::RouteNotFound | ApiError::KeyNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::RateLimited { .. } | ApiError::TooManyConnections => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::SessionBusy { .. }
            | ApiError::IdempotencyKeyInUse
            | ApiError::SessionExists => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UpstreamError { .. } => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::StoreUnavailable | ApiError::StoreRefusing(_) | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(code = self.code(), cause = %self, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        // The rest of a stalled body may still come: the connection cannot be reused.
        if matches!(
            self,
            ApiError::RequestTimeout | ApiError::TooManyConnections
        ) {
            response.force_close();
        }
        response.json(self.body())
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Invalid { message, field } => ApiError::InvalidRequest { message, field },
            DomainError::Encoding(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<crate::domain::context::ContextExceeded> for ApiError {
    fn from(err: crate::domain::context::ContextExceeded) -> Self {
        ApiError::ContextExceeded {
            max_tokens: err.max_tokens,
            current_tokens: err.current_tokens,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) | StoreError::NotSent(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Refused(refusal) => ApiError::StoreRefusing(refusal),
            StoreError::Corrupt(cause) => ApiError::Internal(format!("store data: {cause}")),
        }
    }
}
