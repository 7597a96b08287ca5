//! The Responses and Conversations APIs over HTTP: pagination edges, refusals in OpenAI's
//! shape, one record seen through both APIs, item deletion, and the answer stored before
//! `response.completed` is written.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    fake_upstream::Behaviour,
    helpers::{Backend, Reply, TestApp},
    messages::{MODEL, spawn_relay_at, spawn_relay_on},
};

async fn post(app: &TestApp, path: &str, body: Value) -> Reply {
    app.call(Method::POST, path, Some(body)).await
}

async fn respond(app: &TestApp, body: Value) -> Value {
    let reply = post(app, "/v1/responses", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn openai_error(reply: &Reply, status: StatusCode, param: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let error = &reply.body["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "{error}"
    );
    assert_eq!(error["param"], json!(param), "{error}");
}

#[tokio::test]
async fn bad_input_is_refused_in_openais_shape_and_names_the_field() {
    let (app, fake) = spawn_relay_on(Backend::Memory).await;
    let model = |extra: Value| {
        let mut body = json!({"model": MODEL});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (
            json!({"input": [{"type": "web_search_call", "id": "ws_1"}]}),
            "input[0].type",
        ),
        (
            json!({"input": "x", "tools": [{"type": "file_search"}]}),
            "tools[0].type",
        ),
        (json!({"input": "x", "background": true}), "background"),
        (json!({"input": "x", "temperature": 3}), "temperature"),
        (
            json!({"input": "x", "previous_response_id": "resp_x", "conversation": "conv_y"}),
            "previous_response_id",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "input[0].content[0]",
        ),
        (json!({"input": "x", "frobnicate": true}), "frobnicate"),
    ];
    for (extra, param) in cases {
        openai_error(
            &post(&app, "/v1/responses", model(extra)).await,
            StatusCode::BAD_REQUEST,
            param,
        );
    }
    let items: Vec<Value> = (0..21)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    openai_error(
        &post(&app, "/v1/conversations", json!({"items": items})).await,
        StatusCode::BAD_REQUEST,
        "items",
    );
    for id in [
        "resp_nope",
        "resp_x_1_00000000000000000000000000000000",
        "conv_{x}",
    ] {
        let reply = app
            .call(Method::GET, &format!("/v1/responses/{id}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}: {}", reply.body);
        assert!(reply.body["error"]["message"].is_string());
    }
    let unknown = post(
        &app,
        "/v1/responses",
        json!({"model": "no-such-model", "input": "x"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"]["code"], "model_not_found");
    assert_eq!(fake.calls(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn item_pages_walk_both_ways_and_refuse_foreign_cursors() {
    let (app, _fake) = spawn_relay_on(Backend::Redis).await;
    let items: Vec<Value> = (0..7)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let conversation = post(&app, "/v1/conversations", json!({"items": items}))
        .await
        .body;
    let id = conversation["id"].as_str().unwrap().to_string();
    let list = |query: String| {
        let app = app.as_tenant(&app.key);
        let id = id.clone();
        async move {
            app.call(
                Method::GET,
                &format!("/v1/conversations/{id}/items?{query}"),
                None,
            )
            .await
        }
    };
    let texts = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_string())
            .collect()
    };
    let first = list("limit=3&order=asc".into()).await.body;
    assert_eq!(texts(&first), ["m0", "m1", "m2"]);
    assert_eq!(
        (first["has_more"].clone(), first["first_id"].clone()),
        (json!(true), first["data"][0]["id"].clone())
    );
    let rest = list(format!(
        "limit=10&order=asc&after={}",
        first["last_id"].as_str().unwrap()
    ))
    .await
    .body;
    assert_eq!(texts(&rest), ["m3", "m4", "m5", "m6"]);
    assert_eq!(rest["has_more"], false);
    let newest = list("limit=2".into()).await.body;
    assert_eq!(texts(&newest), ["m6", "m5"], "newest first by default");
    let end = list(format!(
        "order=asc&after={}",
        rest["last_id"].as_str().unwrap()
    ))
    .await
    .body;
    assert_eq!(
        (
            texts(&end).len(),
            end["first_id"].clone(),
            end["has_more"].clone()
        ),
        (0, Value::Null, json!(false))
    );
    let oldest = list(format!(
        "order=desc&after={}",
        first["first_id"].as_str().unwrap()
    ))
    .await
    .body;
    assert_eq!(texts(&oldest).len(), 0);
    let older = list(format!(
        "limit=3&after={}",
        newest["last_id"].as_str().unwrap()
    ))
    .await
    .body;
    assert_eq!(
        texts(&older),
        ["m4", "m3", "m2"],
        "newest first, after the cursor"
    );
    for bad in ["limit=0", "limit=101", "order=sideways", "after=msg_zz"] {
        let reply = list(bad.into()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
    }
    // A cursor of another conversation is no cursor of this one.
    let other = post(
        &app,
        "/v1/conversations",
        json!({"items": [{"role": "user", "content": "elsewhere"}]}),
    )
    .await
    .body;
    let other_items = app
        .call(
            Method::GET,
            &format!("/v1/conversations/{}/items", other["id"].as_str().unwrap()),
            None,
        )
        .await
        .body;
    let foreign = list(format!(
        "after={}",
        other_items["data"][0]["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{}", foreign.body);
}

#[tokio::test]
async fn a_conversation_is_a_session_and_a_session_is_a_conversation() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply("from the session API", 10, 5));
    let session = app.new_session_id().await;
    let sent = post(
        &app,
        &format!("/v1/sessions/{session}/messages"),
        json!({"content": "hello"}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK);
    let items = app
        .call(
            Method::GET,
            &format!("/v1/conversations/conv_{session}/items?order=asc"),
            None,
        )
        .await
        .body;
    assert_eq!(
        items["data"][1]["content"][0]["text"],
        "from the session API"
    );
    let response_id = format!(
        "resp_{session}_{}",
        sent.body["message_id"].as_str().unwrap()
    );
    let response = app
        .call(Method::GET, &format!("/v1/responses/{response_id}"), None)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.body["output"][0]["content"][0]["text"],
        "from the session API"
    );

    fake.set(Behaviour::reply("from the Responses API", 10, 5));
    let made = respond(
        &app,
        json!({"model": MODEL, "input": "hi", "previous_response_id": response_id}),
    )
    .await;
    let history = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{session}/messages"),
            None,
        )
        .await
        .body;
    let texts: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "hello",
            "from the session API",
            "hi",
            "from the Responses API"
        ]
    );
    let input = app
        .call(
            Method::GET,
            &format!("/v1/responses/{}/input_items", made["id"].as_str().unwrap()),
            None,
        )
        .await
        .body;
    assert_eq!(
        input["data"].as_array().unwrap().len(),
        1,
        "its own input only: {input}"
    );
}

#[tokio::test]
async fn deleting_a_call_deletes_its_output_and_the_context_stays_valid() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::calls(&[
        ("call_a", "look", "{}"),
        ("call_b", "look", "{}"),
    ]));
    let tools = json!([{"type": "function", "name": "look", "parameters": {"type": "object"}}]);
    let asked = respond(
        &app,
        json!({"model": MODEL, "input": "look twice", "tools": tools}),
    )
    .await;
    let outputs = json!([{"type": "function_call_output", "call_id": "call_a", "output": "A"},
                         {"type": "function_call_output", "call_id": "call_b", "output": "B"}]);
    fake.set(Behaviour::reply("done", 10, 5));
    let answered = respond(
        &app,
        json!({"model": MODEL, "input": outputs, "previous_response_id": asked["id"]}),
    )
    .await;
    let session = answered["id"]
        .as_str()
        .unwrap()
        .strip_prefix("resp_")
        .unwrap()
        .split('_')
        .next()
        .unwrap()
        .to_string();
    let items = app
        .call(
            Method::GET,
            &format!("/v1/conversations/conv_{session}/items?order=asc"),
            None,
        )
        .await
        .body;
    let call_a = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["call_id"] == "call_a" && i["type"] == "function_call")
        .unwrap();
    let path = format!(
        "/v1/conversations/conv_{session}/items/{}",
        call_a["id"].as_str().unwrap()
    );
    assert_eq!(
        app.call(Method::DELETE, &path, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let after = app
        .call(
            Method::GET,
            &format!("/v1/conversations/conv_{session}/items?order=asc"),
            None,
        )
        .await
        .body;
    let kinds: Vec<(String, String)> = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap().into(),
                i["call_id"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        !kinds.iter().any(|(_, call)| call == "call_a"),
        "the call and its output went together: {kinds:?}"
    );
    assert!(
        kinds.contains(&("function_call".into(), "call_b".into())),
        "its sibling stayed: {kinds:?}"
    );
    respond(
        &app,
        json!({"model": MODEL, "input": "and now?", "conversation": format!("conv_{session}")}),
    )
    .await;
    let sent = fake.last_messages().to_string();
    assert!(
        !sent.contains("call_a") && sent.contains("call_b"),
        "{sent}"
    );
}

/// Forwards loopback TCP to `target`, holding back each piece a client sends by `delay`:
/// every Redis command of the service behind it takes that much longer.
async fn slow_proxy(target: u16, delay: std::time::Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
        }
    });
    port
}

/// The answer is committed before `response.completed` is written: the moment that event
/// arrives, the answer is in Redis (looked at directly, while the service's own Redis
/// commands are slowed down by a proxy, so a commit still under way would show), and a
/// follow-up on it is admitted — 100 times over.
#[tokio::test]
async fn the_answer_is_stored_before_completed_is_written() {
    let redis = crate::redis_server::RedisServer::shared();
    let proxy = slow_proxy(redis.port, std::time::Duration::from_millis(3)).await;
    let (app, fake) =
        spawn_relay_at(Backend::Redis, Some(format!("redis://127.0.0.1:{proxy}"))).await;
    let mut direct = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    fake.set(Behaviour::Stream {
        pieces: vec!["one ".into(), "two".into()],
        prompt_tokens: 5,
        completion_tokens: 2,
        gap: std::time::Duration::ZERO,
    });
    let mut previous: Option<String> = None;
    // The previous stream stays open until the follow-up has been admitted.
    let mut open: Option<reqwest::Response> = None;
    for round in 0..100 {
        let mut body = json!({"model": MODEL, "input": format!("round {round}"), "stream": true, "truncation": "auto"});
        if let Some(id) = &previous {
            body["previous_response_id"] = json!(id);
        }
        let mut response = app
            .http
            .post(format!("{}/v1/responses", app.address))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        drop(open.take());
        let mut seen = String::new();
        let completed = loop {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream ended before response.completed");
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let done = seen.split("\n\n").find_map(|event| {
                let data = event.strip_prefix("event: response.completed\ndata: ")?;
                serde_json::from_str::<Value>(data).ok()
            });
            if let Some(done) = done {
                break done;
            }
        };
        let id = completed["response"]["id"].as_str().unwrap().to_string();
        let (session, answer) = id.strip_prefix("resp_").unwrap().split_once('_').unwrap();
        let index = i64::from_str_radix(answer.split('_').next().unwrap(), 16).unwrap();
        let stored: Option<String> = redis::cmd("LINDEX")
            .arg(app.session_key(session, "turns"))
            .arg(index)
            .query_async(&mut direct)
            .await
            .unwrap();
        assert!(
            stored.is_some_and(|t| t.contains(answer)),
            "round {round}: not stored when completed arrived"
        );
        previous = Some(id);
        open = Some(response);
    }
    assert_eq!(fake.calls(), 100);
}

/// A client token acts for its own session through these APIs too: its conversation and
/// its responses, nothing else, and no new conversation.
#[tokio::test]
async fn a_client_token_reaches_only_its_own_conversation() {
    let (app, _fake) = spawn_relay_on(Backend::Redis).await;
    let mine = app.new_session_id().await;
    let other = app.new_session_id().await;
    let issued = post(
        &app,
        &format!("/v1/sessions/{mine}/client_tokens"),
        json!({}),
    )
    .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let browser = app.as_tenant(issued.body["token"].as_str().unwrap());
    let made = post(
        &browser,
        "/v1/responses",
        json!({"model": MODEL, "input": "hi", "conversation": format!("conv_{mine}")}),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let next = json!({"model": MODEL, "input": "again", "previous_response_id": made.body["id"]});
    assert_eq!(
        post(&browser, "/v1/responses", next).await.status,
        StatusCode::OK
    );
    let items = browser
        .call(
            Method::GET,
            &format!("/v1/conversations/conv_{mine}/items"),
            None,
        )
        .await;
    assert_eq!(items.status, StatusCode::OK, "{}", items.body);
    let read = browser
        .call(
            Method::GET,
            &format!("/v1/responses/{}", made.body["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/responses".to_string(),
            Some(json!({"model": MODEL, "input": "new"})),
        ),
        (
            Method::POST,
            "/v1/responses".to_string(),
            Some(json!({"model": MODEL, "input": "x", "conversation": format!("conv_{other}")})),
        ),
        (
            Method::GET,
            format!("/v1/conversations/conv_{other}/items"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/responses/{}", made.body["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::POST,
            "/v1/conversations".to_string(),
            Some(json!({})),
        ),
    ] {
        let reply = browser.call(method.clone(), &path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.body
        );
    }
}
