#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::llm::fake_upstream::{
    json_response, refused_base_url, serve_once, sse_response, test_client,
};
use crate::llm::{Options, StatusKind, StreamEvent};

const KEY: &str = "sk-test-secret";

fn provider(base_url: &str) -> OpenAiProvider {
    let base_url = format!("{base_url}/v1/");
    OpenAiProvider::new(test_client(), base_url, Some(KEY.to_owned()))
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o".to_owned(),
        messages: vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::User, "hi"),
        ],
        max_tokens: Some(50),
        temperature: None,
        options: Default::default(),
        first_byte_timeout: None,
    }
}

fn text_answer(text: &str, usage: Option<Usage>) -> ChatResponse {
    ChatResponse {
        message: Message::text(Role::Assistant, text),
        usage,
        finish_reason: Some("stop".to_owned()),
        logprobs: None,
        system_fingerprint: None,
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
    assert_eq!(answer, text_answer("hello", Some(usage)));
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

    let usage = Usage {
        prompt_tokens: 9,
        completion_tokens: 2,
    };
    let expected = vec![
        Ok(StreamEvent::Delta(Delta::text("Hel"))),
        Ok(StreamEvent::Delta(Delta::text("lo"))),
        Ok(StreamEvent::Done(text_answer("Hello", Some(usage)))),
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
        Ok(StreamEvent::Delta(Delta::text("Hel"))),
        Err(ProviderError::StreamCut),
    ];
    assert_eq!(events, expected);
}

#[tokio::test]
async fn stream_that_finished_without_done_is_complete() {
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    let upstream = serve_once(sse_response(body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&request())
            .await
            .unwrap(),
    )
    .await;
    let expected = vec![
        Ok(StreamEvent::Delta(Delta::text("Hel"))),
        Ok(StreamEvent::Delta(Delta::text("lo"))),
        Ok(StreamEvent::Done(text_answer("Hello", None))),
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

fn tool_request() -> ChatRequest {
    let history: Vec<Message> = serde_json::from_value(json!([
        {"role": "developer", "content": "use tools"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/map.png", "detail": "low"}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "content": "an old tool turn without a call id"}
    ]))
    .unwrap();
    let options: Options = Options {
        tools: serde_json::from_value(json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}])).unwrap(),
        tool_choice: Some(serde_json::from_value(json!("auto")).unwrap()),
        response_format: None,
        params: serde_json::from_value(json!({"top_p": 0.5, "seed": 3, "stop": ["x"]})).unwrap(),
        extra: serde_json::from_value(json!({"top_k": 40})).unwrap(),
    };
    ChatRequest {
        messages: history,
        options: std::sync::Arc::new(options),
        ..request()
    }
}

#[tokio::test]
async fn tools_parameters_and_extensions_go_out_as_given() {
    let body = r#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_2","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":"tool_calls","logprobs":{"content":[]}}],"system_fingerprint":"fp_1"}"#;
    let upstream = serve_once(json_response(200, "", body)).await;
    let answer = provider(&upstream.base_url)
        .complete(&tool_request())
        .await
        .unwrap();
    let call = &answer.message.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.function.arguments.as_str()),
        ("call_2", "{\"city\":\"Oslo\"}")
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(answer.system_fingerprint.as_deref(), Some("fp_1"));
    assert_eq!(answer.logprobs, Some(json!({"content": []})));
    let sent = upstream.received().await.body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "use tools"})
    );
    assert_eq!(
        sent["messages"][1]["content"][1]["image_url"]["detail"],
        "low"
    );
    assert_eq!(sent["messages"][2]["content"], serde_json::Value::Null);
    assert_eq!(sent["messages"][2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"})
    );
    assert_eq!(sent["messages"][4]["role"], "user");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(
        (
            sent["top_p"].clone(),
            sent["seed"].clone(),
            sent["stop"].clone()
        ),
        (json!(0.5), json!(3), json!(["x"]))
    );
    assert_eq!(sent["top_k"], 40);
}

#[tokio::test]
async fn streamed_tool_calls_are_relayed_piece_by_piece_and_assembled() {
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let upstream = serve_once(sse_response(body)).await;
    let events = collect(
        provider(&upstream.base_url)
            .stream(&tool_request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.len(), 4, "{events:?}");
    let Ok(StreamEvent::Delta(first)) = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(first.tool_calls[0].id.as_deref(), Some("call_9"));
    assert_eq!(first.wire()["tool_calls"][0]["function"]["name"], "weather");
    let Ok(StreamEvent::Done(done)) = &events[3] else {
        panic!("{events:?}");
    };
    assert_eq!(
        done.message.tool_calls[0].function.arguments,
        "{\"city\":1}"
    );
    assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
}
