//! Errors of the OpenAI-compatible endpoints in OpenAI's shape,
//! `{"error": {"message", "type", "code", "param"}}`, so the SDKs raise the right
//! exception. Mapped from [`ApiError`], whose flat session-API body stays untouched.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde_json::{Map, Value, json};

use crate::error::ApiError;

#[derive(Debug)]
pub enum OpenAiError {
    Api(ApiError),
    /// OpenAI answers an unknown model with 404 `model_not_found`.
    ModelNotFound(String),
}

impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        OpenAiError::Api(err)
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenAiError::Api(err) => write!(f, "{err}"),
            OpenAiError::ModelNotFound(_) => f.write_str("unknown model"),
        }
    }
}

impl OpenAiError {
    /// The `error` object.
    pub fn object(&self) -> Value {
        match self {
            OpenAiError::Api(err) => error_object(err),
            OpenAiError::ModelNotFound(model) => json!({
                "message": format!("The model `{model}` does not exist or is not configured."),
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
    if let Some((code, message)) = final_refusal(err) {
        object.insert("code".into(), code.into());
        object.insert("message".into(), message.into());
        object.insert("param".into(), "messages".into());
    }
    // What the contract adds beside the message (attempts, retry_after, …) is kept.
    object.extend(flat);
    Value::Object(object)
}

/// An upstream refusal that no other model or retry changes is the caller's problem
/// (400), as OpenAI itself reports it; any other upstream failure stays a 5xx.
fn final_refusal(err: &ApiError) -> Option<(&'static str, String)> {
    let ApiError::UpstreamError { attempts } = err else {
        return None;
    };
    let last = attempts.last()?;
    match last.reason {
        "content_filter" => Some(("content_filter", last.error.clone())),
        "rejected" => Some(("upstream_rejected", last.error.clone())),
        _ => None,
    }
}

fn status_of(err: &ApiError) -> StatusCode {
    if final_refusal(err).is_some() {
        StatusCode::BAD_REQUEST
    } else {
        err.status_code()
    }
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
            OpenAiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
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
        }
        response.json(json!({ "error": self.object() }))
    }
}
