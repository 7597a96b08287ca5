#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::llm::fake_upstream::{
    json_response, refused_base_url, serve_once, sse_response, test_client,
};
use crate::llm::{ChatMessage, StatusKind, StreamEvent};

const KEY: &str = "ant-test-secret";

fn provider(base_url: &str) -> AnthropicProvider {
    AnthropicProvider::new(test_client(), base_url.to_owned(), Some(KEY.to_owned()))
}

fn request() -> ChatRequest {
    let message = |role, content: &str| ChatMessage {
        role,
        content: content.to_owned(),
    };
    ChatRequest {
        model: "claude-sonnet-4".to_owned(),
        messages: vec![
            message(Role::System, "be brief"),
            message(Role::System, "be kind"),
            message(Role::User, "hi"),
            message(Role::Assistant, "hello"),
            message(Role::Tool, "42"),
        ],
        max_tokens: None,
        temperature: Some(0.5),
    }
}

/// One SSE event the way Anthropic frames it: an `event:` line naming the type.
fn event(data: serde_json::Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

async fn collect(stream: EventStream) -> Vec<Result<StreamEvent, ProviderError>> {
    stream.collect().await
}

#[test]
fn endpoint_adds_the_version_only_when_missing() {
    let endpoint = |base: &str| AnthropicProvider::new(test_client(), base.into(), None).endpoint;
    assert_eq!(
        endpoint("https://api.anthropic.com/"),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(endpoint("http://proxy/v1"), "http://proxy/v1/messages");
}

#[tokio::test]
async fn completes_with_system_at_top_level() {
    let body = r#"{"content":[{"type":"text","text":"Hel"},{"type":"tool_use","id":"t"},{"type":"text","text":"lo"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":2}}"#;
    let upstream = serve_once(json_response(200, "", body)).await;
    let answer = provider(&upstream.base_url)
        .complete(&request())
        .await
        .unwrap();

    assert_eq!(answer.content, "Hello");
    assert_eq!(
        answer.usage,
        Some(Usage {
            prompt_tokens: 25,
            completion_tokens: 2
        })
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("end_turn"));
    let received = upstream.received().await;
    assert_eq!(received.path, "/v1/messages");
    assert_eq!(received.headers["x-api-key"], KEY);
    assert_eq!(received.headers["anthropic-version"], "2023-06-01");
    let expected = json!({
        "model": "claude-sonnet-4",
        "system": "be brief\n\nbe kind",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "42"},
        ],
        "max_tokens": 1024,
        "temperature": 0.5,
        "stream": false,
    });
    assert_eq!(received.body, expected);
}

#[tokio::test]
async fn streams_text_deltas_then_done_with_usage() {
    let body = [
        event(json!({"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}})),
        event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        event(json!({"type": "ping"})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}})),
        event(json!({"type": "content_block_stop", "index": 0})),
        event(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}})),
        event(json!({"type": "message_stop"})),
    ]
    .concat();
    let upstream = serve_once(sse_response(&body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;

    let done = ChatResponse {
        content: "Hello".to_owned(),
        usage: Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 3,
        }),
        finish_reason: Some("end_turn".to_owned()),
    };
    let expected = vec![
        Ok(StreamEvent::Delta("Hel".to_owned())),
        Ok(StreamEvent::Delta("lo".to_owned())),
        Ok(StreamEvent::Done(done)),
    ];
    assert_eq!(events, expected);
    assert_eq!(upstream.received().await.body["stream"], json!(true));
}

#[tokio::test]
async fn stream_without_message_stop_is_cut() {
    let body = event(
        json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}}),
    );
    let upstream = serve_once(sse_response(&body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;
    let expected = vec![
        Ok(StreamEvent::Delta("Hel".to_owned())),
        Err(ProviderError::StreamCut),
    ];
    assert_eq!(events, expected);
}

#[tokio::test]
async fn malformed_event_is_a_protocol_error() {
    let body = format!(
        "event: ping\ndata: {{oops\n\n{}",
        event(json!({"type": "message_stop"}))
    );
    let upstream = serve_once(sse_response(&body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(events[..], [Err(ProviderError::Protocol(_))]),
        "{events:?}"
    );
}

#[tokio::test]
async fn error_event_ends_the_stream_with_its_status() {
    let error =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let upstream = serve_once(sse_response(&event(error))).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;
    let expected = ProviderError::Status {
        status: 529,
        retry_after: None,
        kind: StatusKind::Other,
        message: "Overloaded".to_owned(),
    };
    assert_eq!(events, vec![Err(expected)]);
}

#[tokio::test]
async fn rate_limit_reports_retry_after() {
    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let upstream = serve_once(json_response(429, "retry-after: 3\r\n", body)).await;
    let err = provider(&upstream.base_url)
        .complete(&request())
        .await
        .unwrap_err();
    let expected = ProviderError::Status {
        status: 429,
        retry_after: Some(Duration::from_secs(3)),
        kind: StatusKind::Other,
        message: "slow down".to_owned(),
    };
    assert_eq!(err, expected);
}

#[tokio::test]
async fn prompt_too_long_is_context_length() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 201000 tokens > 200000 maximum"}}"#;
    let upstream = serve_once(json_response(400, "", body)).await;
    let err = provider(&upstream.base_url)
        .stream(&request())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ProviderError::Status {
                status: 400,
                kind: StatusKind::ContextLength,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    let base_url = refused_base_url().await;
    let err = provider(&base_url).complete(&request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(!format!("{err} {:?}", provider(&base_url)).contains(KEY));
}
