#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::domain::message::{Message, Role};
use crate::llm::fake_upstream::{
    json_response, refused_base_url, serve_once, sse_response, test_client,
};
use crate::llm::{Delta, Options, StatusKind, StreamEvent, Usage};

const KEY: &str = "ant-test-secret";

fn provider(base_url: &str) -> AnthropicProvider {
    AnthropicProvider::new(test_client(), base_url.to_owned(), Some(KEY.to_owned()))
}

fn request() -> ChatRequest {
    let message = |role, content: &str| Message::text(role, content);
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
        options: Default::default(),
        first_byte_timeout: None,
    }
}

fn with_options(options: serde_json::Value, messages: serde_json::Value) -> ChatRequest {
    let options = options.as_object().unwrap();
    let field = |name: &str| {
        options
            .get(name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    ChatRequest {
        messages: serde_json::from_value(messages).unwrap(),
        options: std::sync::Arc::new(Options {
            tools: serde_json::from_value(field("tools")).unwrap_or_default(),
            tool_choice: serde_json::from_value(field("tool_choice")).unwrap_or_default(),
            response_format: serde_json::from_value(field("response_format")).unwrap_or_default(),
            params: serde_json::from_value(field("params")).unwrap_or_default(),
            extra: serde_json::from_value(field("extra")).unwrap_or_default(),
        }),
        ..request()
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

    assert_eq!(answer.message.content.text(), "Hello");
    assert!(answer.message.tool_calls[0].id == "t");
    assert_eq!(
        answer.usage,
        Some(Usage {
            prompt_tokens: 25,
            completion_tokens: 2
        })
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
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
        message: Message::text(Role::Assistant, "Hello"),
        usage: Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 3,
        }),
        finish_reason: Some("stop".to_owned()),
        logprobs: None,
        system_fingerprint: None,
    };
    let expected = vec![
        Ok(StreamEvent::Delta(Delta::text("Hel"))),
        Ok(StreamEvent::Delta(Delta::text("lo"))),
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
        Ok(StreamEvent::Delta(Delta::text("Hel"))),
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

#[tokio::test]
async fn tools_calls_results_images_and_parameters_are_translated() {
    let request = with_options(
        json!({
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "params": {"top_p": 0.9, "stop": "END", "user": "u-7", "parallel_tool_calls": false},
            "extra": {"top_k": 5}
        }),
        json!([
            {"role": "developer", "content": "use the tool"},
            {"role": "user", "content": [
                {"type": "text", "text": "and here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.jpg"}}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "user", "content": "thanks"}
        ]),
    );
    let body = r#"{"content":[{"type":"tool_use","id":"toolu_2","name":"weather","input":{"city":"Bergen"}}],"stop_reason":"tool_use"}"#;
    let upstream = serve_once(json_response(200, "", body)).await;
    let answer = provider(&upstream.base_url)
        .complete(&request)
        .await
        .unwrap();
    let call = &answer.message.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.function.name.as_str()),
        ("toolu_2", "weather")
    );
    assert_eq!(call.function.arguments, r#"{"city":"Bergen"}"#);
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));

    let sent = upstream.received().await.body;
    assert_eq!(sent["system"], "use the tool");
    let user = &sent["messages"][0]["content"];
    assert_eq!(
        user[1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
    );
    assert_eq!(
        user[2]["source"],
        json!({"type": "url", "url": "https://example.com/map.jpg"})
    );
    assert_eq!(
        sent["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}])
    );
    // The tool result and the next user text are one user turn, result first.
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(sent["messages"][2]["content"][1]["text"], "thanks");
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["top_p"], json!(0.9));
    assert_eq!(sent["metadata"], json!({"user_id": "u-7"}));
    assert!(
        sent.get("top_k").is_none(),
        "extensions go to OpenAI-compatible APIs only"
    );
}

#[tokio::test]
async fn what_the_api_cannot_honour_is_refused_by_name_before_sending() {
    let messages = json!([{"role": "user", "content": "hi"}]);
    for (options, param) in [
        (json!({"params": {"seed": 1}}), "seed"),
        (json!({"params": {"logprobs": true}}), "logprobs"),
        (
            json!({"params": {"presence_penalty": 0.5}}),
            "presence_penalty",
        ),
    ] {
        let err = request::translate(&with_options(options, messages.clone()), false)
            .err()
            .unwrap();
        assert!(
            matches!(&err, ProviderError::Unsupported { param: p, .. } if p == param),
            "{err:?}"
        );
    }
    let audio = json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]}]);
    let err = request::translate(&with_options(json!({}), audio), false)
        .err()
        .unwrap();
    assert!(
        matches!(&err, ProviderError::Unsupported { param, .. } if param == "messages[0].content[0]"),
        "{err:?}"
    );
    let schema_and_tools = json!({
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}
    });
    let err = request::translate(&with_options(schema_and_tools, messages), false)
        .err()
        .unwrap();
    assert!(
        matches!(&err, ProviderError::Unsupported { param, .. } if param == "response_format"),
        "{err:?}"
    );
}

#[tokio::test]
async fn structured_output_is_a_forced_tool_whose_input_is_the_answer() {
    let request = with_options(
        json!({"response_format": {"type": "json_schema", "json_schema": {"name": "weather_report", "schema": {"type": "object", "properties": {"temp": {"type": "number"}}}}}}),
        json!([{"role": "user", "content": "report"}]),
    );
    let body = r#"{"content":[{"type":"tool_use","id":"toolu_3","name":"weather_report","input":{"temp":21}}],"stop_reason":"tool_use"}"#;
    let upstream = serve_once(json_response(200, "", body)).await;
    let answer = provider(&upstream.base_url)
        .complete(&request)
        .await
        .unwrap();
    assert_eq!(answer.message.content.text(), r#"{"temp":21}"#);
    assert!(answer.message.tool_calls.is_empty());
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    let sent = upstream.received().await.body;
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "weather_report"})
    );
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["temp"]["type"],
        "number"
    );

    // Streamed, the forced tool's input arrives as the answer's text.
    let stream = [
        event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_4", "name": "weather_report", "input": {}}})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"temp\""}})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ": 21}"}})),
        event(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}})),
        event(json!({"type": "message_stop"})),
    ]
    .concat();
    let upstream = serve_once(sse_response(&stream)).await;
    let events = collect(provider(&upstream.base_url).stream(&request).await.unwrap()).await;
    let Some(Ok(StreamEvent::Done(done))) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(done.message.content.text(), "{\"temp\": 21}");
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn streamed_tool_use_becomes_openai_tool_call_pieces() {
    let body = [
        event(json!({"type": "message_start", "message": {"usage": {"input_tokens": 30}}})),
        event(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}})),
        event(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_5", "name": "weather", "input": {}}})),
        event(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
        event(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"Oslo\"}"}})),
        event(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}})),
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
    let deltas: Vec<&Delta> = events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::Delta(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.len(), 4, "{events:?}");
    assert_eq!(
        deltas[1].tool_calls[0].index, 0,
        "calls are numbered among calls, not blocks"
    );
    assert_eq!(deltas[1].tool_calls[0].id.as_deref(), Some("toolu_5"));
    assert_eq!(deltas[3].tool_calls[0].arguments, " \"Oslo\"}");
    let Some(Ok(StreamEvent::Done(done))) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(done.message.content.text(), "Checking.");
    assert_eq!(
        done.message.tool_calls[0].function.arguments,
        "{\"city\": \"Oslo\"}"
    );
    assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        done.usage,
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 12
        })
    );
}
