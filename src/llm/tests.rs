#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use super::*;

fn retry_after_of(value: &str) -> Option<Duration> {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
    retry_after(&headers)
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    assert_eq!(retry_after_of("7"), Some(Duration::from_secs(7)));
    assert_eq!(
        retry_after_of("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after_of("soon"), None);
    assert_eq!(retry_after(&HeaderMap::new()), None);
}

#[test]
fn classifies_openai_and_anthropic_bodies() {
    let openai = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    let anthropic = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let filtered = r#"{"error":{"message":"filtered","code":"content_filter"}}"#;
    assert_eq!(classify_error_body(openai).0, StatusKind::ContextLength);
    assert_eq!(classify_error_body(anthropic).0, StatusKind::ContextLength);
    assert_eq!(classify_error_body(filtered).0, StatusKind::ContentFilter);
    let (kind, message) = classify_error_body("Bad Gateway");
    assert_eq!((kind, message.as_str()), (StatusKind::Other, "Bad Gateway"));
}

#[test]
fn sanitize_removes_keys_and_caps_length() {
    let text = "Incorrect API key provided: sk-proj-****abcd. Key my-secret-key\nrejected";
    let clean = sanitize(text, Some("my-secret-key"));
    assert_eq!(
        clean,
        "Incorrect API key provided: [redacted] Key [redacted] rejected"
    );
    let long = sanitize(&"é".repeat(1000), None);
    assert_eq!(long.chars().count(), ERROR_MESSAGE_LIMIT + 1);
}
