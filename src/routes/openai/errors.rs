//! Errors of the OpenAI-compatible endpoints in OpenAI's shape,
//! `{"error": {"message", "type", "code", "param"}}`, so the SDKs raise the right
//! exception. Mapped from [`ApiError`], whose flat session-API body stays untouched.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde_json::{Map, Value, json};

use crate::{
    domain::session::UNKNOWN_MODEL,
    error::{ApiError, FailedAttempt},
};

#[derive(Debug)]
pub enum OpenAiError {
    Api(ApiError),
    /// OpenAI answers an unknown model with 404 `model_not_found`.
    ModelNotFound,
}

impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        OpenAiError::Api(err)
    }
}

impl From<crate::domain::error::DomainError> for OpenAiError {
    fn from(err: crate::domain::error::DomainError) -> Self {
        OpenAiError::Api(err.into())
    }
}

impl From<crate::store::StoreError> for OpenAiError {
    fn from(err: crate::store::StoreError) -> Self {
        OpenAiError::Api(err.into())
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenAiError::Api(err) => write!(f, "{err}"),
            OpenAiError::ModelNotFound => f.write_str("unknown model"),
        }
    }
}

impl OpenAiError {
    /// The `error` object.
    pub fn object(&self) -> Value {
        match self {
            OpenAiError::Api(err) => error_object(err),
            OpenAiError::ModelNotFound => json!({
                "message": UNKNOWN_MODEL,
                "type": "invalid_request_error",
                "code": "model_not_found",
                "param": "model",
            }),
        }
    }
}

/// The `error` object of an [`ApiError`].
pub fn error_object(err: &ApiError) -> Value {
    let Value::Object(mut flat) = err.body() else {
        return json!({});
    };
    let code = flat.remove("error").unwrap_or(Value::Null);
    let message = flat.remove("message").unwrap_or(Value::Null);
    let param = flat.remove("field").unwrap_or(Value::Null);
    let mut object = Map::new();
    object.insert("message".into(), message);
    object.insert("type".into(), error_type(status_of(err)).into());
    object.insert("code".into(), code);
    object.insert("param".into(), param);
    if let Some(relayed) = relayed(err) {
        object.insert("code".into(), relayed.code.into());
        object.insert("type".into(), relayed.kind.into());
        if let Some(message) = relayed.message {
            object.insert("message".into(), message.into());
        }
        if let Some(param) = relayed.param {
            object.insert("param".into(), param.into());
        }
    }
    // What the contract adds beside the message (attempts, retry_after, …) is kept.
    object.extend(flat);
    Value::Object(object)
}

/// How the relay reports an error differently from the session API, so that the SDKs
/// raise the exception their users catch for it.
struct Relayed {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: Option<String>,
    param: Option<&'static str>,
    retry_after: Option<u64>,
}

fn relayed(err: &ApiError) -> Option<Relayed> {
    let view = |status, kind, code| Relayed {
        status,
        kind,
        code,
        message: None,
        param: None,
        retry_after: None,
    };
    match err {
        // The prompt does not fit: OpenAI's own code, a `BadRequestError`.
        ApiError::ContextExceeded { .. } => Some(Relayed {
            param: Some("messages"),
            ..view(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            )
        }),
        // A spending cap is a quota, which the SDKs raise as `RateLimitError`.
        ApiError::BudgetExceeded { .. } => Some(view(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
        )),
        ApiError::UpstreamError { attempts } => upstream_view(attempts),
        _ => None,
    }
}

/// A chain that ended on a refusal no other model or retry changes is the caller's
/// problem (400), as OpenAI reports it: content filtered, request rejected, prompt too
/// long for every model. One where every model tried was rate-limited is a 429 with the
/// shortest wait an upstream asked for. Any other failure stays a 5xx.
fn upstream_view(attempts: &[FailedAttempt]) -> Option<Relayed> {
    let last = attempts.last()?;
    let refusal = |code| Relayed {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        code,
        message: Some(last.error.clone()),
        param: Some("messages"),
        retry_after: None,
    };
    match last.reason {
        "content_filter" => return Some(refusal("content_filter")),
        "rejected" => return Some(refusal("upstream_rejected")),
        "context_length" => return Some(refusal("context_length_exceeded")),
        _ => {}
    }
    let tried: Vec<&FailedAttempt> = attempts
        .iter()
        .filter(|a| a.reason != "circuit_open")
        .collect();
    if !tried.is_empty() && tried.iter().all(|a| a.reason == "rate_limited") {
        let wait = tried
            .iter()
            .filter_map(|a| a.retry_after)
            .min()
            .unwrap_or(1);
        return Some(Relayed {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            code: "rate_limit_exceeded",
            message: Some("every model of the chain is rate-limited; retry later".into()),
            param: None,
            retry_after: Some(wait),
        });
    }
    None
}

fn status_of(err: &ApiError) -> StatusCode {
    relayed(err).map_or_else(|| err.status_code(), |r| r.status)
}

fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        match self {
            OpenAiError::ModelNotFound => StatusCode::NOT_FOUND,
            OpenAiError::Api(err) => status_of(err),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let OpenAiError::Api(err) = self {
            // Logging and headers (Retry-After) as the session API has them.
            let flat = err.error_response();
            for (name, value) in flat.headers() {
                if name != actix_web::http::header::CONTENT_TYPE
                    && name != actix_web::http::header::CONTENT_LENGTH
                {
                    response.insert_header((name.clone(), value.clone()));
                }
            }
            if let Some(wait) = relayed(err).and_then(|r| r.retry_after) {
                response.insert_header((actix_web::http::header::RETRY_AFTER, wait.to_string()));
            }
        }
        response.json(json!({ "error": self.object() }))
    }
}
