//! The OpenAI-compatible relay as the official SDKs use it: requests replayed byte for byte
//! from what the OpenAI Python SDK sends (body and headers), responses checked field by
//! field against what the SDK parses. Plus sessions through the relay, and its errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Rig, data_lines, rig};
use crate::{
    faults::{Reply, USAGE},
    helpers::{Reply as HttpReply, send},
};

/// Recorded from openai-python 3.54.0: `client.chat.completions.create(model="alpha",
/// messages=[…], max_tokens=50, temperature=0.2)`.
const SDK_BODY: &str = r#"{"model":"alpha","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}],"max_tokens":50,"temperature":0.2}"#;
/// The same with `stream=True, stream_options={"include_usage": True}`.
const SDK_STREAM_BODY: &str = r#"{"model":"alpha","stream":true,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}],"stream_options":{"include_usage":true}}"#;
/// The headers it sent with both (besides Authorization, Host, Content-Length).
const SDK_HEADERS: [(&str, &str); 14] = [
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 3.54.0"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "3.54.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("x-stainless-async", "false"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
];

async fn replay(rig: &Rig, body: &str, key: &str) -> reqwest::Response {
    let mut request = rig
        .app
        .http
        .post(format!("{}/v1/chat/completions", rig.app.address))
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string());
    for (name, value) in SDK_HEADERS {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

pub fn assert_usage(usage: &Value) {
    let (prompt, completion) = USAGE;
    let expected = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    assert_eq!(usage, &expected);
}

#[tokio::test]
async fn sdk_non_streaming_request_gets_a_chat_completion() {
    let rig = rig(Reply::answer("Hi there"), Reply::answer("beta")).await;
    let response = replay(&rig, SDK_BODY, &rig.app.key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].is_i64());
    assert_eq!(body["model"], "alpha");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Hi there");
    assert_eq!(choice["finish_reason"], "stop");
    assert_usage(&body["usage"]);

    let seen = &rig.primary.seen()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    let messages = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]);
    assert_eq!(
        seen.body["messages"], messages,
        "stateless: messages as given"
    );
    assert_eq!(seen.body["model"], "alpha-upstream");
    assert_eq!(
        (
            seen.body["max_tokens"].clone(),
            seen.body["temperature"].clone()
        ),
        (json!(50), json!(0.2))
    );
}

#[tokio::test]
async fn sdk_streaming_request_gets_chunks_usage_and_done() {
    let rig = rig(Reply::answer("Hi there friend"), Reply::answer("beta")).await;
    let response = replay(&rig, SDK_STREAM_BODY, &rig.app.key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut data = data_lines(response).await;
    assert_eq!(data.pop(), Some(json!("[DONE]")));
    let usage_chunk = data.pop().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_usage(&usage_chunk["usage"]);
    let id = data[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in data.iter().chain([&usage_chunk]) {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            (chunk["id"].as_str(), chunk["model"].as_str()),
            (Some(id.as_str()), Some("alpha"))
        );
        assert!(chunk["created"].is_i64());
    }
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = data
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hi there friend");
    assert_eq!(data.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(
        data[..data.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(rig.primary.seen()[0].body["stream"], true);
}

#[tokio::test]
async fn errors_come_in_openai_shape() {
    let rig = rig(Reply::status(503), Reply::status(503)).await;
    let check = |reply: &HttpReply, status: StatusCode, code: &str, param: Value| {
        assert_eq!(reply.status, status, "{}", reply.body);
        let error = &reply.body["error"];
        assert!(
            error["message"].is_string() && error["type"].is_string(),
            "{error}"
        );
        assert_eq!(
            (error["code"].as_str(), error["param"].clone()),
            (Some(code), param)
        );
    };
    let bad_key = rig.app.as_tenant("sk-wrong");
    let url = format!("{}/v1/chat/completions", rig.app.address);
    let reply = send(
        bad_key
            .http
            .post(&url)
            .bearer_auth("sk-wrong")
            .body(SDK_BODY),
    )
    .await;
    check(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        Value::Null,
    );
    let unknown = json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]});
    check(
        &rig.chat(unknown, &[]).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
        json!("model"),
    );
    let bad_tool = json!({"model": "alpha", "messages": [{"role": "user", "content": "x"}],
                          "tools": [{"type": "function", "function": {"name": "two words"}}]});
    check(
        &rig.chat(bad_tool, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        json!("tools[0].function.name"),
    );
    let failed = rig
        .chat(
            json!({"model": "alpha", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await;
    check(
        &failed,
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        Value::Null,
    );
    assert_eq!(
        failed.body["error"]["attempts"].as_array().unwrap().len(),
        4
    );
}

#[tokio::test]
async fn models_are_listed_in_openai_format() {
    let rig = rig(Reply::answer("x"), Reply::answer("y")).await;
    let reply = rig.app.call(Method::GET, "/v1/models", None).await;
    assert_eq!(reply.body["object"], "list");
    let data = reply.body["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha", "beta", "echo"]);
    assert!(
        data.iter()
            .all(|m| m["object"] == "model" && m["created"].is_i64() && m["owned_by"].is_string())
    );
    let one = rig.app.call(Method::GET, "/v1/models/beta", None).await;
    assert_eq!(one.body["id"], "beta");
}

/// The failures client libraries handle by exception type: a prompt too long for every
/// model is a `BadRequestError` with OpenAI's code; a chain of rate-limited models a
/// `RateLimitError` that says when to retry. The session API keeps its contract codes.
#[tokio::test]
async fn chain_failures_come_with_the_codes_client_libraries_catch() {
    let too_long = || {
        Reply::error(
            400,
            "context_length_exceeded",
            "This model's maximum context length is 8192 tokens.",
        )
    };
    let rig = rig(too_long(), too_long()).await;
    let body = json!({"model": "alpha", "messages": [{"role": "user", "content": "x"}]});
    let reply = rig.chat(body.clone(), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "context_length_exceeded");
    assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    assert_eq!(rig.backup.seen().len(), 1, "the fallback was tried first");
    let id = rig.session().await;
    assert_eq!(rig.send(&id, "x").await.status, StatusCode::BAD_GATEWAY);

    let limited = |wait: &str| Reply::status(429).with_header("retry-after", wait);
    let rig = super::rig_with(
        crate::helpers::Backend::Memory,
        5,
        limited("30"),
        limited("20"),
        &[],
    )
    .await;
    let reply = rig.chat(body, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(reply.body["error"]["type"], "rate_limit_error");
    assert_eq!(
        reply.headers["retry-after"], "20",
        "the shortest wait an upstream asked for"
    );
    let id = rig.session().await;
    assert_eq!(rig.send(&id, "x").await.status, StatusCode::BAD_GATEWAY);
}
