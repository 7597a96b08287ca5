//! Rich turns through the sessions API: tool calls and their results kept in a session,
//! content parts of every kind stored and sent as given, and all of it through export
//! and import unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    fake_upstream::Behaviour,
    helpers::{BACKENDS, Backend, TestApp},
    import_export::import_raw,
    messages::{MODEL, spawn_relay_on},
};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

async fn send(app: &TestApp, id: &str, body: Value) -> crate::helpers::Reply {
    app.call(
        Method::POST,
        &format!("/v1/sessions/{id}/messages"),
        Some(body),
    )
    .await
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = app
        .call(Method::GET, &format!("/v1/sessions/{id}/messages"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_tool_call_and_its_result_are_kept_in_the_session() {
    for backend in BACKENDS {
        let (app, fake) = spawn_relay_on(backend).await;
        let id = app
            .create_session(json!({"system_prompt": "Use tools.", "tools": [weather_tool()]}))
            .await["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        fake.set(Behaviour::calls(&[(
            "call_1",
            "get_weather",
            r#"{"city":"Oslo"}"#,
        )]));
        let asked = send(&app, &id, json!({"content": "Weather in Oslo?"})).await;
        assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
        assert_eq!(asked.body["finish_reason"], "tool_calls");
        assert_eq!(
            asked.body["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(asked.body["assistant_message"], "");
        // The session's tools went upstream.
        assert_eq!(
            fake.requests()[0]["tools"][0]["function"]["name"],
            "get_weather"
        );

        // The open call must be answered before anything else, and only an open call.
        let skipped = send(&app, &id, json!({"content": "never mind"})).await;
        assert_eq!(skipped.status, StatusCode::BAD_REQUEST, "{}", skipped.body);
        assert_eq!(skipped.body["field"], "content");
        let stray = send(
            &app,
            &id,
            json!({"messages": [
            {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}]}),
        )
        .await;
        assert_eq!(stray.status, StatusCode::BAD_REQUEST);
        assert_eq!(stray.body["field"], "messages[0].tool_call_id");
        assert_eq!(fake.calls(), 1, "refused sends never reach the upstream");

        fake.set(Behaviour::reply("It is sunny in Oslo.", 40, 8));
        let answered = send(
            &app,
            &id,
            json!({"messages": [
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"sunny\"}"}]}),
        )
        .await;
        assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
        assert_eq!(answered.body["finish_reason"], "stop");
        let upstream = fake.last_messages();
        assert_eq!(
            upstream[0],
            json!({"role": "system", "content": "Use tools."})
        );
        assert_eq!(upstream[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(upstream[2]["content"], Value::Null);
        assert_eq!(
            upstream[3],
            json!({"role": "tool", "content": "{\"sky\": \"sunny\"}", "tool_call_id": "call_1"})
        );

        let turns = history(&app, &id).await;
        let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "tool", "assistant"],
            "{backend:?}"
        );
        assert_eq!(
            turns[1]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Oslo"}"#
        );
        assert_eq!(turns[2]["tool_call_id"], "call_1");
        let context = app
            .call(Method::GET, &format!("/v1/sessions/{id}/context"), None)
            .await;
        assert_eq!(context.body["messages"][2]["tool_calls"][0]["id"], "call_1");
    }
}

#[tokio::test]
async fn a_streamed_tool_call_is_relayed_in_pieces_and_stored_whole() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    let id = app.new_session_id().await;
    let args = r#"{"city":"Bergen","unit":"celsius"}"#;
    fake.set(Behaviour::calls(&[("call_7", "get_weather", args)]));
    let body = json!({"content": "Weather?", "stream": true, "tools": [weather_tool()]});
    let text = app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", app.address))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter_map(|event| {
            let (name, data) = event.split_once("\ndata: ")?;
            Some((
                name.strip_prefix("event: ")?,
                serde_json::from_str(data).ok()?,
            ))
        })
        .collect();
    let pieces: String = events
        .iter()
        .filter(|(name, _)| *name == "delta")
        .filter_map(|(_, data)| data["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(pieces, args, "{text}");
    let deltas = events.iter().filter(|(name, _)| *name == "delta").count();
    assert!(deltas >= 3, "the call came in pieces: {text}");
    let (name, done) = events.last().unwrap();
    assert_eq!(*name, "done");
    assert_eq!(done["tool_calls"][0]["function"]["arguments"], args);
    assert_eq!(done["finish_reason"], "tool_calls");
    let turns = history(&app, &id).await;
    assert_eq!(turns[1]["tool_calls"][0]["id"], "call_7");
    assert_eq!(turns[1]["tool_calls"][0]["function"]["arguments"], args);
}

/// A session holding every kind of part, tool calls and their results, a name and a
/// refusal: what export writes, import reads back, and exports again byte for byte.
fn rich_session() -> Value {
    json!({
        "session_id": "rich-1",
        "model": MODEL,
        "tools": [weather_tool()],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
        "messages": [
            {"role": "user", "name": "ada", "content": [
                {"type": "text", "text": "Here is a photo, a recording and a file."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                {"type": "file", "file": {"file_id": "file-abc"}}],
             "created_at": "2024-05-01T10:00:00.123456789Z"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}],
             "created_at": "2024-05-01T10:00:01Z"},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny", "created_at": "2024-05-01T10:00:02Z"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}], "created_at": "2024-05-01T10:00:02Z"},
            {"role": "assistant", "content": "", "refusal": "I can't say that.", "created_at": "2024-05-01T10:00:03Z"},
            {"role": "developer", "content": "Be kind.", "created_at": "2024-05-01T10:00:04Z"}
        ]
    })
}

async fn export(app: &TestApp, id: &str) -> String {
    let response = app
        .http
        .get(format!("{}/v1/sessions/{id}/export", app.address))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn import(app: &TestApp, line: &str) {
    let reply = import_raw(app, "create", line.as_bytes().to_vec(), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["imported"], 1, "{}", reply.body);
}

#[tokio::test]
async fn every_part_and_call_survives_the_store_export_and_import() {
    for backend in BACKENDS {
        let (first, _) = spawn_relay_on(backend).await;
        import(&first, &format!("{}\n", rich_session())).await;
        let turns = history(&first, "rich-1").await;
        let given = rich_session()["messages"].as_array().unwrap().clone();
        for (turn, given) in turns.iter().zip(&given) {
            for field in [
                "role",
                "content",
                "name",
                "tool_calls",
                "tool_call_id",
                "refusal",
            ] {
                // A refusal's empty content reads as `null`, as OpenAI shows it.
                let shown = match &turn[field] {
                    Value::Null if field == "content" => json!(""),
                    other => other.clone(),
                };
                if let Some(value) = given.get(field) {
                    assert_eq!(&shown, value, "{backend:?} {field} of {turn}");
                }
            }
        }
        let session = first
            .call(Method::GET, "/v1/sessions/rich-1", None)
            .await
            .body;
        assert_eq!(session["tools"][0], weather_tool());
        assert_eq!(session["response_format"]["json_schema"]["strict"], true);

        let exported = export(&first, "rich-1").await;
        let (second, _) = spawn_relay_on(backend).await;
        import(&second, &exported).await;
        assert_eq!(export(&second, "rich-1").await, exported, "{backend:?}");
        let line: Value = serde_json::from_str(&exported).unwrap();
        assert_eq!(line["messages"], rich_session()["messages"], "{backend:?}");
    }
}

#[tokio::test]
async fn tool_definitions_and_images_count_in_the_context() {
    let (app, _) = spawn_relay_on(Backend::Redis).await;
    let plain = app.new_session_id().await;
    let with_tools = app.create_session(json!({"tools": [weather_tool()]})).await["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = |id: String| {
        let app = app.as_tenant(&app.key);
        async move {
            app.call(Method::GET, &format!("/v1/sessions/{id}/context"), None)
                .await
                .body["tokens"]
                .as_u64()
                .unwrap()
        }
    };
    let (without, with) = (tokens(plain.clone()).await, tokens(with_tools).await);
    assert!(
        with > without + 20,
        "tools cost tokens: {without} vs {with}"
    );

    // An image of known size counts by the tile rule: 2048 × 4096 is 1105 tokens.
    let png = {
        use base64::Engine;
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend(2048u32.to_be_bytes());
        b.extend(4096u32.to_be_bytes());
        b.extend([8, 6, 0, 0, 0]);
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let sent = send(
        &app,
        &plain,
        json!({"content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let turns = history(&app, &plain).await;
    // 3 framing + "user" + the image
    assert_eq!(turns[0]["tokens"], 3 + 1 + 1105);
}
