//! The HTTP side of the subcommands: one client, and retries with backoff for what a
//! retry can fix (connection failures, 5xx, 429, a key still in flight).

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

pub struct Endpoint {
    pub url: String,
    pub key: Option<String>,
}

impl Endpoint {
    pub fn http(&self) -> Result<reqwest::Client, String> {
        // Installing twice is refused harmlessly; without it no TLS client can be built.
        drop(rustls::crypto::ring::default_provider().install_default());
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    pub fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
}

/// What one attempt came to.
pub enum Attempt {
    Done(Vec<u8>),
    /// Worth another try, after at least this long.
    Retry(String, Option<Duration>),
    Fatal(String),
}

/// Sends a request and reads the answer whole, classifying the failure.
pub async fn attempt(request: RequestBuilder) -> Attempt {
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return Attempt::Retry(format!("request failed: {err}"), None),
    };
    let status = response.status();
    let wait = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let body = match response.bytes().await {
        Ok(body) => body.to_vec(),
        Err(err) => return Attempt::Retry(format!("answer cut short: {err}"), None),
    };
    if status.is_success() {
        return Attempt::Done(body);
    }
    let text = format!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    let retryable = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::CONFLICT && text.contains("idempotency_key_in_use"));
    if retryable {
        Attempt::Retry(text, wait)
    } else {
        Attempt::Fatal(text)
    }
}

/// The wait before retry number `n` (from 0): 1 s doubling, at most 15 s.
pub fn backoff(n: u32, hint: Option<Duration>) -> Duration {
    let exponential = Duration::from_secs(1u64 << n.min(4)).min(Duration::from_secs(15));
    hint.map_or(exponential, |h| h.max(exponential))
}
