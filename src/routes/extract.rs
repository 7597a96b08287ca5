//! Request extractors whose failures are the contract's errors, never actix defaults.

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header::{self, HeaderValue},
    middleware::Next,
    web,
};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tracing_actix_web::RequestId;

use super::connections;
use crate::{
    domain::{error::invalid_at, json},
    error::ApiError,
    state::AppState,
};

/// A JSON body decoded strictly ([`json::decode`]): anything but an object, unknown fields,
/// wrong types, bad UTF-8, malformed JSON and oversized bodies all become contract errors
/// naming the field when one is at fault.
/// The Content-Type is not checked (curl's `-d` says form data): the body must be JSON.
/// An empty body counts as `{}`, so "all fields optional" endpoints accept no body at all.
pub struct ApiJson<T> {
    pub value: T,
    /// The raw body, for idempotency fingerprints.
    pub raw: web::Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let server = req.app_data::<web::Data<AppState>>().map(|s| {
            (
                s.settings.server.max_body_bytes,
                s.settings.server.body_timeout_ms,
            )
        });
        let (limit, timeout_ms) = server.unwrap_or((usize::MAX, u64::MAX));
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let read = tokio::time::timeout(Duration::from_millis(timeout_ms), body);
            let raw = (read.await.map_err(|_| ApiError::RequestTimeout)?)
                .map_err(|err| body_error(err.as_error::<PayloadError>(), limit))?;
            let text: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                &raw
            };
            let value = json::decode(text)?;
            Ok(ApiJson { value, raw })
        })
    }
}

/// A body that could not be read, for every route that reads one. The cause (an OS error,
/// a decoder's message) goes to the debug log, not to the client.
pub fn body_error(err: Option<&PayloadError>, limit: usize) -> ApiError {
    match err {
        Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit_bytes: limit },
        Some(err) if connections::is_stalled(err) => ApiError::RequestTimeout,
        err => {
            tracing::debug!(?err, "request body not read");
            ApiError::invalid("body", "the request body could not be read")
        }
    }
}

/// A query string decoded like a body: unknown parameters and bad values answer
/// `invalid_request` naming the parameter, never quoting the value sent.
pub struct ApiQuery<T>(pub T);

impl<T> std::ops::Deref for ApiQuery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let pairs = form_urlencoded::parse(req.query_string().as_bytes());
        let decoded = serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs))
            .map(ApiQuery)
            .map_err(|err| invalid_at(&err.path().to_string(), &err.inner().to_string()).into());
        std::future::ready(decoded)
    }
}

/// Puts the request id (created by the tracing middleware) on every response.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut response = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
