#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::llm::fake_upstream::{
    json_response, refused_base_url, serve_once, sse_response, test_client,
};
use crate::llm::{ChatMessage, StatusKind, StreamEvent};

const KEY: &str = "sk-test-secret";

fn provider(base_url: &str) -> OpenAiProvider {
    let base_url = format!("{base_url}/v1/");
    OpenAiProvider::new(test_client(), base_url, Some(KEY.to_owned()))
}

fn request() -> ChatRequest {
    let message = |role, content: &str| ChatMessage {
        role,
        content: content.to_owned(),
    };
    ChatRequest {
        model: "gpt-4o".to_owned(),
        messages: vec![message(Role::System, "be brief"), message(Role::User, "hi")],
        max_tokens: Some(50),
        temperature: None,
    }
}

async fn collect(stream: EventStream) -> Vec<Result<StreamEvent, ProviderError>> {
    stream.collect().await
}

#[tokio::test]
async fn completes_and_sends_the_expected_request() {
    let body = r#"{"choices":[{"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1}}"#;
    let upstream = serve_once(json_response(200, "", body)).await;
    let answer = provider(&upstream.base_url)
        .complete(&request())
        .await
        .unwrap();

    let usage = Usage {
        prompt_tokens: 12,
        completion_tokens: 1,
    };
    assert_eq!(answer.content, "hello");
    assert_eq!(answer.usage, Some(usage));
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    let received = upstream.received().await;
    assert_eq!(received.path, "/v1/chat/completions");
    assert_eq!(received.headers["authorization"], format!("Bearer {KEY}"));
    let expected = json!({
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "stream": false,
    });
    assert_eq!(received.body, expected);
}

#[tokio::test]
async fn streams_deltas_then_done_with_usage() {
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    );
    let upstream = serve_once(sse_response(body)).await;
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
            prompt_tokens: 9,
            completion_tokens: 2,
        }),
        finish_reason: Some("stop".to_owned()),
    };
    let expected = vec![
        Ok(StreamEvent::Delta("Hel".to_owned())),
        Ok(StreamEvent::Delta("lo".to_owned())),
        Ok(StreamEvent::Done(done)),
    ];
    assert_eq!(events, expected);
    let received = upstream.received().await;
    assert_eq!(received.body["stream"], json!(true));
    assert_eq!(
        received.body["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn stream_without_done_is_cut() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let upstream = serve_once(sse_response(body)).await;
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
async fn malformed_chunk_ends_the_stream_with_protocol_error() {
    let body =
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {oops\n\ndata: [DONE]\n\n";
    let upstream = serve_once(sse_response(body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.len(), 2);
    assert!(
        matches!(events[1], Err(ProviderError::Protocol(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn chunk_without_choices_is_a_protocol_error() {
    let upstream = serve_once(sse_response("data: {\"id\":\"x\"}\n\n")).await;
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
async fn rate_limit_reports_retry_after() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    let upstream = serve_once(json_response(429, "retry-after: 7\r\n", body)).await;
    let err = provider(&upstream.base_url)
        .complete(&request())
        .await
        .unwrap_err();
    let expected = ProviderError::Status {
        status: 429,
        retry_after: Some(Duration::from_secs(7)),
        kind: StatusKind::Other,
        message: "Rate limit reached".to_owned(),
    };
    assert_eq!(err, expected);
}

#[tokio::test]
async fn context_length_error_is_classified() {
    let body = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
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
async fn auth_error_never_echoes_the_key() {
    let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}."}}}}"#);
    let upstream = serve_once(json_response(401, "", &body)).await;
    let err = provider(&upstream.base_url)
        .complete(&request())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(KEY), "{err}");
    assert!(!format!("{:?}", provider("http://x")).contains(KEY));
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    let base_url = refused_base_url().await;
    let err = provider(&base_url).complete(&request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
}
