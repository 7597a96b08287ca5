//! Sending a message (the delta) over HTTP, against the real app, a private Redis and a
//! fake OpenAI-compatible upstream: what the upstream receives, what is stored, and how
//! failures, concurrency, idempotency and streaming behave.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::{
    config::{ModelSettings, ProviderKind, ProviderSettings, Settings},
    domain::{
        message::{Message, Role, Turn, message_id},
        tokens::{REPLY_PRIMING_TOKENS, TokenCounter, Tokenizer},
    },
};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream, echo_content},
    helpers::{Backend, GLOBEX_KEY, Reply, TestApp, spawn_with, test_settings},
};

pub(crate) const MODEL: &str = "fake-model";
const FALLBACK: &str = "fake-fallback";
/// Another name of `MODEL`, as `deepseek-chat` names a versioned model.
const ALIAS: &str = "fake-model-latest";
const CONTEXT_TOKENS: u32 = 4096;
/// USD per million tokens, input and output.
const MODEL_PRICES: (f64, f64) = (2.0, 8.0);
const FALLBACK_PRICES: (f64, f64) = (1.0, 4.0);

const ENGLISH: &str = "Hello, how are you today?";
const CHINESE: &str = "你好，世界";
const EMOJI: &str = "🚀🎉";

fn model_settings(name: &str, (input, output): (f64, f64)) -> ModelSettings {
    ModelSettings {
        name: name.into(),
        provider: "fake".into(),
        upstream_name: None,
        context_tokens: CONTEXT_TOKENS,
        input_usd_per_mtok: input,
        output_usd_per_mtok: output,
        fallbacks: Vec::new(),
        tokenizer: Some("o200k_base".into()),
        aliases: Vec::new(),
        ..ModelSettings::default()
    }
}

/// The app on Redis with two models served by one fake upstream.
async fn spawn_relay() -> (TestApp, FakeUpstream) {
    spawn_relay_on(Backend::Redis).await
}

pub(crate) async fn spawn_relay_on(backend: Backend) -> (TestApp, FakeUpstream) {
    spawn_relay_at(backend, None).await
}

/// As [`spawn_relay_on`], on the Redis at `redis_url` when one is given.
pub(crate) async fn spawn_relay_at(
    backend: Backend,
    redis_url: Option<String>,
) -> (TestApp, FakeUpstream) {
    let (settings, fake) = relay_settings(backend, redis_url).await;
    (spawn_with(settings).await, fake)
}

/// The settings of [`spawn_relay_at`] and the fake they name: apps spawned with clones
/// of them are instances of one service (one key prefix, one Redis, one upstream).
pub(crate) async fn relay_settings(
    backend: Backend,
    redis_url: Option<String>,
) -> (Settings, FakeUpstream) {
    let fake = FakeUpstream::start().await;
    let mut settings = test_settings(backend, redis_url);
    settings.providers.push(ProviderSettings {
        name: "fake".into(),
        kind: ProviderKind::Openai,
        base_url: Some(fake.base_url.clone()),
        api_key_env: None,
        api_key: None,
    });
    settings.models.push(ModelSettings {
        aliases: vec![ALIAS.into()],
        ..model_settings(MODEL, MODEL_PRICES)
    });
    settings
        .models
        .push(model_settings(FALLBACK, FALLBACK_PRICES));
    settings.sessions.default_model = MODEL.into();
    (settings, fake)
}

fn tokens(role: Role, content: &str) -> u32 {
    TokenCounter::shared().count_message(Tokenizer::O200kBase, role, content)
}

/// What the prompt of `messages` costs, as the relay counts it.
fn prompt_tokens(messages: &[(Role, String)]) -> u32 {
    messages
        .iter()
        .map(|(role, content)| tokens(*role, content))
        .sum::<u32>()
        + REPLY_PRIMING_TOKENS
}

fn nano_usd(prompt: u32, completion: u32, (input, output): (f64, f64)) -> u64 {
    (f64::from(prompt) * input * 1000.0 + f64::from(completion) * output * 1000.0).round() as u64
}

fn usd(nano: u64) -> f64 {
    nano as f64 / 1e9
}

fn wire(messages: &[(Role, String)]) -> Value {
    messages
        .iter()
        .map(|(role, content)| json!({"role": role.as_str(), "content": content}))
        .collect()
}

fn owned(role: Role, content: &str) -> (Role, String) {
    (role, content.to_string())
}

async fn send(app: &TestApp, id: &str, body: Value) -> Reply {
    app.call(
        Method::POST,
        &format!("/v1/sessions/{id}/messages"),
        Some(body),
    )
    .await
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Reply {
    app.call(Method::PATCH, &format!("/v1/sessions/{id}"), Some(body))
        .await
}

async fn send_keyed(app: &TestApp, id: &str, key: &str, body: Value) -> Reply {
    let response = app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", app.address))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// A streamed send read whole: status, content type and the `(event, data)` pairs.
async fn send_streaming(
    app: &TestApp,
    id: &str,
    content: &str,
) -> (StatusCode, String, Vec<(String, Value)>) {
    let response = app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", app.address))
        .bearer_auth(&app.key)
        .json(&json!({"content": content, "stream": true}))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("body");
    (status, content_type, parse_sse(&text))
}

fn parse_sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            let data = serde_json::from_str(&data).unwrap_or_else(|_| panic!("data of {block:?}"));
            (event, data)
        })
        .collect()
}

/// Every stored turn of a session, oldest first.
async fn stored(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=1000"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["has_more"], false);
    reply.body["data"].as_array().unwrap().clone()
}

async fn session(app: &TestApp, id: &str) -> Value {
    let reply = app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn create(app: &TestApp, body: Value) -> String {
    app.create_session(body).await["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn preview(app: &TestApp, id: &str) -> Value {
    let reply = app
        .call(Method::GET, &format!("/v1/sessions/{id}/context"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn assert_alternates(turns: &[Value]) {
    for (index, turn) in turns.iter().enumerate() {
        let role = if index % 2 == 0 { "user" } else { "assistant" };
        assert_eq!(turn["role"], role, "turn {index} of {turns:#?}");
    }
}

#[tokio::test]
async fn window_bound_context_is_system_then_newest_history_then_the_new_message() {
    let (app, fake) = spawn_relay().await;
    let system = "You are a terse assistant. 你好 🚀";
    let id = create(
        &app,
        json!({"system_prompt": system, "context_window": 2, "max_tokens": 100}),
    )
    .await;
    let budget = CONTEXT_TOKENS - 100;

    let mut history: Vec<(Role, String)> = Vec::new();
    let mut totals = (0u64, 0u64, 0u64);
    let mut assistant_ids = Vec::new();
    for (turn, content) in [ENGLISH, CHINESE, EMOJI, "And the last one?"]
        .into_iter()
        .enumerate()
    {
        let turn = u32::try_from(turn).unwrap();
        let (reported_prompt, reported_completion) = (50 + 10 * turn, 7 + turn);
        fake.set(Behaviour::echo(reported_prompt, reported_completion));
        let kept = history.len().min(2);
        let dropped = history.len() - kept;
        let mut expected = vec![owned(Role::System, system)];
        expected.extend(history[history.len() - kept..].iter().cloned());

        // The preview is the same prompt without the new message.
        let context = preview(&app, &id).await;
        assert_eq!(context["messages"], wire(&expected));
        assert_eq!(context["tokens"], prompt_tokens(&expected));
        assert_eq!(context["dropped_messages"], dropped);
        assert_eq!(context["budget_tokens"], budget);

        expected.push(owned(Role::User, content));
        let reply = send(&app, &id, json!({"content": content})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

        let request = fake.requests().last().unwrap().clone();
        assert_eq!(request["model"], MODEL);
        assert_eq!(request["max_tokens"], 100);
        assert_eq!(request["stream"], false);
        assert_eq!(request["messages"], wire(&expected), "turn {turn}");

        let answer = echo_content(&request);
        let nano = nano_usd(reported_prompt, reported_completion, MODEL_PRICES);
        let body = &reply.body;
        assert_eq!(body["session_id"], id.as_str());
        assert_eq!(body["assistant_message"], answer.as_str());
        assert_eq!(body["model_used"], MODEL);
        assert_eq!(body["fallback_count"], 0);
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": reported_prompt, "completion_tokens": reported_completion,
                   "total_tokens": reported_prompt + reported_completion})
        );
        assert_eq!(body["cost_usd"].as_f64().unwrap(), usd(nano));
        assert_eq!(
            body["context"],
            json!({"messages": expected.len(), "tokens": prompt_tokens(&expected),
                   "dropped_messages": dropped, "budget_tokens": budget, "summary_tokens": 0})
        );
        assistant_ids.push(body["message_id"].as_str().unwrap().to_string());
        totals.0 += u64::from(reported_prompt);
        totals.1 += u64::from(reported_completion);
        totals.2 += nano;
        history.push(owned(Role::User, content));
        history.push((Role::Assistant, answer));
    }
    assert_eq!(fake.calls(), 4);

    // A request's own max_tokens (and temperature) reach the upstream and shrink the budget.
    fake.set(Behaviour::echo(1, 1));
    let reply = send(
        &app,
        &id,
        json!({"content": "Short one", "max_tokens": 50, "temperature": 0.25}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let request = fake.requests().last().unwrap().clone();
    assert_eq!(request["max_tokens"], 50);
    assert_eq!(request["temperature"], 0.25);
    assert_eq!(reply.body["context"]["budget_tokens"], CONTEXT_TOKENS - 50);
    assistant_ids.push(reply.body["message_id"].as_str().unwrap().to_string());
    history.push(owned(Role::User, "Short one"));
    history.push((Role::Assistant, echo_content(&request)));
    totals.0 += 1;
    totals.1 += 1;
    totals.2 += nano_usd(1, 1, MODEL_PRICES);

    let turns = stored(&app, &id).await;
    assert_eq!(turns.len(), 10);
    assert_alternates(&turns);
    for (turn, (role, content)) in turns.iter().zip(&history) {
        assert_eq!(turn["role"], role.as_str());
        assert_eq!(turn["content"], content.as_str());
        assert_eq!(turn["tokens"], tokens(*role, content), "{turn}");
    }
    let stored_assistant_ids: Vec<&str> = turns
        .iter()
        .skip(1)
        .step_by(2)
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(stored_assistant_ids, assistant_ids);

    let view = session(&app, &id).await;
    assert_eq!(view["message_count"], 10);
    assert_eq!(view["usage"]["prompt_tokens"], totals.0);
    assert_eq!(view["usage"]["completion_tokens"], totals.1);
    assert_eq!(view["usage"]["cost_usd"].as_f64().unwrap(), usd(totals.2));
}

#[tokio::test]
async fn token_bound_context_keeps_the_newest_turns_that_fit() {
    let (app, fake) = spawn_relay().await;
    let system = "Be brief.";
    let id = create(
        &app,
        json!({"system_prompt": system, "max_context_tokens": 4000}),
    )
    .await;
    for content in [ENGLISH, CHINESE, EMOJI] {
        let reply = send(&app, &id, json!({"content": content})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let turns = stored(&app, &id).await;
    let history: Vec<(Role, String)> = turns
        .iter()
        .map(|t| {
            let role = if t["role"] == "user" {
                Role::User
            } else {
                Role::Assistant
            };
            owned(role, t["content"].as_str().unwrap())
        })
        .collect();
    let cost: Vec<u32> = history.iter().map(|(r, c)| tokens(*r, c)).collect();
    let new = "Hi";
    let fixed = tokens(Role::System, system) + tokens(Role::User, new) + REPLY_PRIMING_TOKENS;
    // Room for exactly the three newest turns; the preview (no new message) must not
    // find room for the fourth either.
    assert!(
        tokens(Role::User, new) < cost[2],
        "precondition of the preview check"
    );
    let budget = fixed + cost[3] + cost[4] + cost[5];
    let patched = patch(&app, &id, json!({"max_context_tokens": budget})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);

    let mut expected = vec![owned(Role::System, system)];
    expected.extend(history[3..].iter().cloned());
    let context = preview(&app, &id).await;
    assert_eq!(context["messages"], wire(&expected));
    assert_eq!(context["tokens"], prompt_tokens(&expected));
    assert_eq!(context["dropped_messages"], 3);
    assert_eq!(context["budget_tokens"], budget);

    expected.push(owned(Role::User, new));
    let reply = send(&app, &id, json!({"content": new})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(fake.last_messages(), wire(&expected));
    assert_eq!(
        reply.body["context"],
        json!({"messages": 5, "tokens": budget, "dropped_messages": 3, "budget_tokens": budget, "summary_tokens": 0})
    );

    // One token less than the three newest turns need: only two are kept.
    let answer = reply.body["assistant_message"].as_str().unwrap();
    let (user6, assistant7) = (tokens(Role::User, new), tokens(Role::Assistant, answer));
    let tight = fixed + cost[5] + user6 + assistant7 - 1;
    let patched = patch(&app, &id, json!({"max_context_tokens": tight})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let reply = send(&app, &id, json!({"content": new})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let expected = vec![
        owned(Role::System, system),
        owned(Role::User, new),
        owned(Role::Assistant, answer),
        owned(Role::User, new),
    ];
    assert_eq!(fake.last_messages(), wire(&expected));
    assert_eq!(
        reply.body["context"],
        json!({"messages": 4, "tokens": prompt_tokens(&expected), "dropped_messages": 6,
               "budget_tokens": tight, "summary_tokens": 0})
    );
    assert_eq!(session(&app, &id).await["message_count"], 10);
}

#[tokio::test]
async fn system_prompt_over_the_budget_is_context_exceeded_without_an_upstream_call() {
    let (app, fake) = spawn_relay().await;
    let system = "All work and no play makes Jack a dull boy. ".repeat(20);
    let id = create(
        &app,
        json!({"system_prompt": system, "max_context_tokens": 50}),
    )
    .await;
    let reply = send(&app, &id, json!({"content": "hello"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.error_code(), "context_exceeded");
    assert_eq!(reply.body["max_tokens"], 50);
    let needed = tokens(Role::System, &system) + tokens(Role::User, "hello") + REPLY_PRIMING_TOKENS;
    assert_eq!(reply.body["current_tokens"], needed);
    assert_eq!(fake.calls(), 0);
    assert!(stored(&app, &id).await.is_empty());
    assert_eq!(session(&app, &id).await["message_count"], 0);

    // The refusal released the session: with room, the next send goes through.
    let patched = patch(&app, &id, json!({"max_context_tokens": 4000})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let reply = send(&app, &id, json!({"content": "hello"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(fake.calls(), 1);
}

/// Writes `n` alternating turns straight into the session's Redis list. The content
/// counts down to the newest turn, so sessions of any length end the same way.
async fn inject_turns(app: &TestApp, id: &str, n: u64) {
    let counter = TokenCounter::shared();
    let mut conn = app.redis().await;
    let turns_key = app.session_key(id, "turns");
    let meta_key = app.session_key(id, "meta");
    let mut pipe = redis::pipe();
    let mut batch = Vec::new();
    for index in 0..n {
        let role = if index % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let content = format!("{} line {}: 你好 🚀", role.as_str(), n - index);
        let tokens = counter.count_message(Tokenizer::O200kBase, role, &content);
        let turn = Turn::new(
            message_id(index),
            Message::text(role, content),
            chrono::Utc::now(),
            tokens,
        );
        batch.push(serde_json::to_string(&turn).unwrap());
        if batch.len() == 1000 || index + 1 == n {
            pipe.cmd("RPUSH")
                .arg(&turns_key)
                .arg(std::mem::take(&mut batch))
                .ignore();
        }
    }
    pipe.cmd("HINCRBY").arg(&meta_key).arg("n").arg(n).ignore();
    let () = pipe.query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn ten_and_ten_thousand_turn_sessions_send_the_same_bounded_context() {
    let (app, fake) = spawn_relay().await;
    let system = "You answer in one line.";
    let new = "What next?";
    // The six newest turns of any injected session, and what they cost.
    let tail: Vec<(Role, String)> = (1..=6u64)
        .rev()
        .map(|k| {
            let role = if k % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            (role, format!("{} line {k}: 你好 🚀", role.as_str()))
        })
        .collect();
    let mut expected = vec![owned(Role::System, system)];
    expected.extend(tail.iter().cloned());
    expected.push(owned(Role::User, new));
    let needed = prompt_tokens(&expected);

    // Bound by the window, then by the token budget alone.
    for limits in [
        json!({"system_prompt": system, "context_window": 6}),
        json!({"system_prompt": system, "max_context_tokens": needed}),
    ] {
        let mut prompts = Vec::new();
        for n in [10u64, 10_000] {
            let id = create(&app, limits.clone()).await;
            inject_turns(&app, &id, n).await;
            let started = Instant::now();
            let reply = send(&app, &id, json!({"content": new})).await;
            let took = started.elapsed();
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{limits} n={n}: {}",
                reply.body
            );
            assert!(
                took < Duration::from_secs(2),
                "{limits} n={n}: took {took:?}"
            );
            assert_eq!(fake.last_messages(), wire(&expected), "{limits} n={n}");
            let context = &reply.body["context"];
            assert_eq!(context["messages"], 8, "{limits} n={n}");
            assert_eq!(context["tokens"], needed, "{limits} n={n}");
            assert_eq!(context["dropped_messages"], n - 6, "{limits} n={n}");
            assert_eq!(session(&app, &id).await["message_count"], n + 2);
            prompts.push(fake.last_messages());
        }
        assert_eq!(prompts[0], prompts[1]);
    }
}

#[tokio::test]
async fn parallel_sends_on_one_session_are_serialized() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({})).await;
    fake.set(Behaviour::slow_echo(Duration::from_millis(100)));
    let replies = futures_util::future::join_all(
        (0..20).map(|i| send(&app, &id, json!({"content": format!("parallel {i}")}))),
    )
    .await;

    let mut successes = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        match reply.status {
            StatusCode::OK => successes.push((i, reply.body.clone())),
            StatusCode::CONFLICT => {
                assert_eq!(reply.error_code(), "session_busy", "{}", reply.body);
                let retry_after = reply.body["retry_after"].as_u64().unwrap();
                assert!((1..=60).contains(&retry_after), "{}", reply.body);
            }
            other => panic!("send {i}: {other} {}", reply.body),
        }
    }
    assert!(!successes.is_empty());
    assert_eq!(fake.max_in_flight(), 1, "one upstream call at a time");
    assert_eq!(fake.calls(), successes.len());

    let turns = stored(&app, &id).await;
    assert_eq!(turns.len(), 2 * successes.len());
    assert_alternates(&turns);
    for pair in turns.chunks(2) {
        let question = pair[0]["content"].as_str().unwrap();
        let answer = pair[1]["content"].as_str().unwrap();
        assert!(answer.ends_with(&format!(": {question}")), "{pair:?}");
    }
    for (i, body) in &successes {
        let position = turns
            .iter()
            .position(|t| t["id"] == body["message_id"])
            .unwrap_or_else(|| panic!("reply {i} is stored: {body}"));
        assert_eq!(turns[position]["content"], body["assistant_message"]);
        assert_eq!(turns[position - 1]["content"], format!("parallel {i}"));
    }
    assert_eq!(
        session(&app, &id).await["message_count"],
        2 * successes.len()
    );
}

#[tokio::test]
async fn a_session_deleted_during_its_upstream_call_is_not_brought_back() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({"user_id": "leaving-user"})).await;
    fake.set(Behaviour::slow_echo(Duration::from_millis(500)));
    let (sent, deleted) = tokio::join!(send(&app, &id, json!({"content": "hello"})), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        app.call(Method::DELETE, &format!("/v1/sessions/{id}"), None)
            .await
    });
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(sent.status, StatusCode::NOT_FOUND, "{}", sent.body);
    assert_eq!(sent.error_code(), "session_not_found");
    assert_eq!(fake.calls(), 1);
    assert_eq!(app.session_keys(&id).await, Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.session_keys(&id).await, Vec::<String>::new());
    let read = app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    let listed = app
        .call(Method::GET, "/v1/users/leaving-user/sessions", None)
        .await;
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn upstream_failure_stores_nothing_and_releases_the_session() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({})).await;
    fake.set(Behaviour::error(500, "the fake broke"));
    let reply = send(&app, &id, json!({"content": "hello"})).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert_eq!(reply.error_code(), "upstream_error");
    // One entry per upstream call (retries of the one model included).
    let attempts = reply.body["attempts"].as_array().unwrap();
    assert!(!attempts.is_empty(), "{}", reply.body);
    assert_eq!(attempts.len(), fake.calls(), "{}", reply.body);
    for attempt in attempts {
        assert_eq!(attempt["model"], MODEL, "{}", reply.body);
        assert_eq!(attempt["status"], 500, "{}", reply.body);
        assert!(
            !attempt["error"].as_str().unwrap().is_empty(),
            "{}",
            reply.body
        );
    }
    assert!(stored(&app, &id).await.is_empty());
    let view = session(&app, &id).await;
    assert_eq!(view["message_count"], 0);
    assert_eq!(
        view["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
    );

    fake.set(Behaviour::reply("Recovered.", 12, 3));
    let reply = send(&app, &id, json!({"content": "hello again"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["assistant_message"], "Recovered.");
    assert_eq!(
        fake.last_messages(),
        json!([{"role": "user", "content": "hello again"}]),
        "the failed turn is not part of the history"
    );
    assert_eq!(session(&app, &id).await["message_count"], 2);

    // A failed send under an Idempotency-Key leaves the key free for the retry.
    fake.set(Behaviour::error(500, "the fake broke again"));
    let body = json!({"content": "retry me"});
    let failed = send_keyed(&app, &id, "retry-key", body.clone()).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
    fake.set(Behaviour::echo(10, 5));
    let retried = send_keyed(&app, &id, "retry-key", body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["assistant_message"], "echo[3]: retry me");
    assert_eq!(session(&app, &id).await["message_count"], 4);
}

#[tokio::test]
async fn a_fallback_model_answers_when_the_primary_fails() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({"fallback_models": [FALLBACK]})).await;
    fake.set_for_model(MODEL, Behaviour::error(503, "overloaded"));
    fake.set_for_model(FALLBACK, Behaviour::echo(40, 9));
    let reply = send(&app, &id, json!({"content": "Bonjour 🚀"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model_used"], FALLBACK);
    assert_eq!(reply.body["fallback_count"], 1);
    assert_eq!(reply.body["assistant_message"], "echo[1]: Bonjour 🚀");
    assert_eq!(
        reply.body["usage"],
        json!({"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49})
    );
    assert_eq!(
        reply.body["cost_usd"].as_f64().unwrap(),
        usd(nano_usd(40, 9, FALLBACK_PRICES))
    );
    // The primary first (retried or not), then the fallback once, with the same prompt.
    let requests = fake.requests();
    let (last, primary) = requests.split_last().unwrap();
    assert!(!primary.is_empty());
    assert!(primary.iter().all(|r| r["model"] == MODEL), "{requests:?}");
    assert_eq!(last["model"], FALLBACK);
    assert!(
        primary.iter().all(|r| r["messages"] == last["messages"]),
        "{requests:?}"
    );
    assert_eq!(
        last["messages"],
        json!([{"role": "user", "content": "Bonjour 🚀"}])
    );
    let turns = stored(&app, &id).await;
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1]["content"], "echo[1]: Bonjour 🚀");
}

#[tokio::test]
async fn idempotency_key_replays_refuses_in_flight_duplicates_and_rejects_other_bodies() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({})).await;
    let body = json!({"content": "Charge my card once"});

    let first = send_keyed(&app, &id, "key-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let replay = send_keyed(&app, &id, "key-1", body.clone()).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.body);
    assert_eq!(replay.body, first.body);
    assert_eq!(fake.calls(), 1, "a replay makes no upstream call");
    assert_eq!(session(&app, &id).await["message_count"], 2);

    let other = send_keyed(&app, &id, "key-1", json!({"content": "Charge it twice"})).await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    assert_eq!(other.error_code(), "idempotency_key_reused");
    assert_eq!(fake.calls(), 1);

    fake.set(Behaviour::slow_echo(Duration::from_millis(500)));
    let second_body = json!({"content": "A slow one"});
    let (original, duplicate) =
        tokio::join!(send_keyed(&app, &id, "key-2", second_body.clone()), async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            send_keyed(&app, &id, "key-2", second_body.clone()).await
        });
    assert_eq!(original.status, StatusCode::OK, "{}", original.body);
    assert_eq!(duplicate.status, StatusCode::CONFLICT, "{}", duplicate.body);
    assert_eq!(duplicate.error_code(), "idempotency_key_in_use");
    assert_eq!(fake.calls(), 2);
    let later = send_keyed(&app, &id, "key-2", second_body).await;
    assert_eq!(later.body, original.body);
    assert_eq!(fake.calls(), 2);
    assert_eq!(session(&app, &id).await["message_count"], 4);

    // Another tenant's use of the same key string is its own.
    fake.set(Behaviour::echo(10, 5));
    let globex = app.as_tenant(GLOBEX_KEY);
    let their_id = create(&globex, json!({})).await;
    let theirs = send_keyed(&globex, &their_id, "key-1", body).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert_eq!(theirs.body["session_id"], their_id.as_str());
    assert_eq!(
        theirs.body["assistant_message"],
        "echo[1]: Charge my card once"
    );
    assert_eq!(fake.calls(), 3);
    assert_eq!(session(&globex, &their_id).await["message_count"], 2);
    assert_eq!(session(&app, &id).await["message_count"], 4);
}

#[tokio::test]
async fn streaming_sends_deltas_then_one_done_and_stores_the_turns() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({"system_prompt": "Stream it."})).await;
    let pieces = ["Hel", "lo, ", "世界 ", "🚀🎉"];
    fake.set(Behaviour::Stream {
        pieces: pieces.iter().map(|p| (*p).to_string()).collect(),
        prompt_tokens: 21,
        completion_tokens: 6,
        gap: Duration::from_millis(10),
    });
    let (status, content_type, events) = send_streaming(&app, &id, CHINESE).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(fake.requests()[0]["stream"], true);

    let (last, deltas) = events.split_last().unwrap();
    let mut answer = String::new();
    for (event, data) in deltas {
        assert_eq!(event, "delta", "{events:?}");
        answer.push_str(data["content"].as_str().unwrap());
    }
    assert_eq!(answer, pieces.concat());
    assert_eq!(last.0, "done", "{events:?}");
    let done = &last.1;
    assert_eq!(done["session_id"], id.as_str());
    assert_eq!(done["assistant_message"], answer.as_str());
    assert_eq!(done["model_used"], MODEL);
    assert_eq!(done["fallback_count"], 0);
    assert_eq!(
        done["usage"],
        json!({"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27})
    );
    assert_eq!(
        done["cost_usd"].as_f64().unwrap(),
        usd(nano_usd(21, 6, MODEL_PRICES))
    );
    let sent = [
        owned(Role::System, "Stream it."),
        owned(Role::User, CHINESE),
    ];
    assert_eq!(
        done["context"],
        json!({"messages": 2, "tokens": prompt_tokens(&sent), "dropped_messages": 0,
               "budget_tokens": CONTEXT_TOKENS - 1024, "summary_tokens": 0})
    );

    let turns = stored(&app, &id).await;
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0]["content"], CHINESE);
    assert_eq!(turns[1]["content"], answer.as_str());
    assert_eq!(turns[1]["id"], done["message_id"]);
    assert_eq!(session(&app, &id).await["message_count"], 2);
}

#[tokio::test]
async fn a_stream_cut_by_the_upstream_ends_in_an_error_event_and_stores_nothing() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({})).await;
    fake.set(Behaviour::Cut {
        pieces: vec!["part".into(), "ial".into()],
    });
    let (status, _, events) = send_streaming(&app, &id, "Tell me everything").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = events.iter().map(|(event, _)| event.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "error"], "{events:?}");
    assert_eq!(events[0].1, json!({"content": "part"}));
    assert_eq!(events[1].1, json!({"content": "ial"}));
    assert_eq!(events[2].1["error"], "upstream_error", "{events:?}");
    assert!(stored(&app, &id).await.is_empty());
    assert_eq!(session(&app, &id).await["message_count"], 0);

    fake.set(Behaviour::echo(10, 5));
    let reply = send(&app, &id, json!({"content": "Again"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        fake.last_messages(),
        json!([{"role": "user", "content": "Again"}])
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_stores_nothing_and_frees_the_session() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({})).await;
    fake.set(Behaviour::Stream {
        pieces: vec!["tick ".to_string(); 20],
        prompt_tokens: 10,
        completion_tokens: 20,
        gap: Duration::from_millis(150),
    });
    let mut response = app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", app.address))
        .bearer_auth(&app.key)
        .json(&json!({"content": "Count slowly", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = String::new();
    while !received.contains("event: delta") {
        let chunk = response.chunk().await.unwrap().expect("a delta first");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(response);

    // The relay cancels its upstream call rather than reading the answer to its end.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.in_flight(), 0);
    assert_eq!(fake.aborted(), 1, "the upstream stream was cancelled");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(stored(&app, &id).await.is_empty());
    assert_eq!(session(&app, &id).await["message_count"], 0);

    fake.set(Behaviour::echo(10, 5));
    let deadline = Instant::now() + Duration::from_secs(3);
    let reply = loop {
        let reply = send(&app, &id, json!({"content": "Still there?"})).await;
        if reply.status != StatusCode::CONFLICT || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        fake.last_messages(),
        json!([{"role": "user", "content": "Still there?"}])
    );
    assert_eq!(session(&app, &id).await["message_count"], 2);
}

/// The user index must outlive the session, but lengthening it is a Redis call of its
/// own: a send does it (after answering) by a quarter TTL more than needed and notes so
/// in the session; the sends of that quarter leave the index alone.
#[tokio::test]
async fn sends_keep_the_user_index_alive_without_lengthening_it_each_time() {
    use redis::AsyncCommands;
    let (app, _fake) = spawn_relay().await;
    let id = create(&app, json!({"user_id": "index-user", "ttl_seconds": 4})).await;
    let index = app
        .keys()
        .await
        .into_iter()
        .find(|k| k.contains(":user:"))
        .expect("the user index");
    let meta = app.session_key(&id, "meta");
    let mut conn = app.redis().await;
    let probe = conn.clone();
    // Sends, then waits for the mark to change and the index to cover the session again.
    let settled = async |sent: &str, previous: Option<i64>| {
        let mut conn = probe.clone();
        let reply = send(&app, &id, json!({"content": sent})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mark: Option<i64> = conn.hget(&meta, "uidx_until").await.unwrap();
            let session_left: i64 = conn.pttl(&meta).await.unwrap();
            let index_left: i64 = conn.pttl(&index).await.unwrap();
            if mark.is_some() && mark != previous && index_left >= session_left {
                return (mark, index_left);
            }
            if Instant::now() > deadline {
                return (mark, index_left);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let (first, index_left) = settled("one", None).await;
    assert!(first.is_some(), "the first send lengthened the index");
    assert!(
        (4_500..=5_000).contains(&index_left),
        "a quarter more than the 4 s TTL: {index_left} ms"
    );
    // Within the quarter: no lengthening, the mark stays (the wait runs out unchanged).
    let (second, _) = settled("two", first).await;
    assert_eq!(
        second, first,
        "a send within the margin left the index alone"
    );
    let session_left: i64 = conn.pttl(&meta).await.unwrap();
    let index_left: i64 = conn.pttl(&index).await.unwrap();
    assert!(index_left >= session_left, "{index_left} < {session_left}");
    // Past the quarter, the next send lengthens it again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (third, index_left) = settled("three", first).await;
    assert!(third > first, "{third:?} after {first:?}");
    let session_left: i64 = conn.pttl(&meta).await.unwrap();
    assert!(index_left >= session_left, "{index_left} < {session_left}");
}

/// A session on an alias is served by the model it names; PATCHing the session's model
/// mid-conversation sends the same history to the new model.
#[tokio::test]
async fn an_alias_reaches_its_model_and_a_new_model_keeps_the_history() {
    let (app, fake) = spawn_relay().await;
    let id = create(&app, json!({"model": ALIAS, "system_prompt": "be brief"})).await;
    let first = send(&app, &id, json!({"content": ENGLISH})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(fake.requests()[0]["model"], MODEL);
    assert_eq!(first.body["model_used"], MODEL, "{}", first.body);

    let patched = patch(&app, &id, json!({"model": FALLBACK})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let second = send(&app, &id, json!({"content": CHINESE})).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let request = &fake.requests()[1];
    assert_eq!(request["model"], FALLBACK);
    assert_eq!(second.body["model_used"], FALLBACK, "{}", second.body);
    let contents: Vec<&str> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let first_reply = first.body["assistant_message"].as_str().unwrap();
    assert_eq!(contents, ["be brief", ENGLISH, first_reply, CHINESE]);
    assert_eq!(stored(&app, &id).await.len(), 4);
}

/// A session on an Anthropic model: the Messages API request (system prompt as its own
/// field, `max_tokens` always set), its reply and usage, streamed and not, end to end.
#[tokio::test]
async fn a_session_on_an_anthropic_model_sends_and_streams() {
    const CLAUDE: &str = "claude-fake";
    const CLAUDE_PRICES: (f64, f64) = (3.0, 15.0);
    let fake = FakeUpstream::start().await;
    let mut settings = test_settings(Backend::Redis, None);
    settings.providers.push(ProviderSettings {
        name: "fake".into(),
        kind: ProviderKind::Anthropic,
        base_url: Some(fake.base_url.clone()),
        api_key_env: None,
        api_key: Some(session_relay::config::Secret::new("anthropic-test-key")),
    });
    settings.models.push(model_settings(CLAUDE, CLAUDE_PRICES));
    let app = spawn_with(settings).await;
    let id = create(&app, json!({"model": CLAUDE, "system_prompt": "be brief"})).await;
    fake.set(Behaviour::reply("Hi there 👋", 12, 4));

    let reply = send(&app, &id, json!({"content": CHINESE})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let request = &fake.requests()[0];
    assert_eq!(request["model"], CLAUDE);
    assert_eq!(request["system"], "be brief");
    assert_eq!(
        request["messages"],
        json!([{"role": "user", "content": CHINESE}])
    );
    assert!(request["max_tokens"].as_u64().unwrap() > 0, "{request}");
    assert_eq!(reply.body["assistant_message"], "Hi there 👋");
    assert_eq!(reply.body["model_used"], CLAUDE);
    assert_eq!(
        reply.body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    );
    assert_eq!(
        reply.body["cost_usd"].as_f64().unwrap(),
        usd(nano_usd(12, 4, CLAUDE_PRICES))
    );

    let (status, _, events) = send_streaming(&app, &id, ENGLISH).await;
    assert_eq!(status, StatusCode::OK);
    let request = &fake.requests()[1];
    assert_eq!(request["stream"], true);
    assert_eq!(
        request["messages"].as_array().unwrap().len(),
        3,
        "{request}"
    );
    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(last.0, "done", "{events:?}");
    let streamed: String = deltas
        .iter()
        .map(|(_, data)| data["content"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "Hi there 👋");
    assert_eq!(last.1["assistant_message"], "Hi there 👋");
    assert_eq!(
        last.1["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    );
    assert_eq!(stored(&app, &id).await.len(), 4);
}

/// `/v1/models` lists every name a request may use, aliases included, so a client that
/// checks a name against the list accepts what the relay accepts.
#[tokio::test]
async fn models_and_their_aliases_are_listed() {
    let (app, _fake) = spawn_relay().await;
    let listed = app.call(Method::GET, "/v1/models", None).await;
    assert_eq!(listed.body["object"], "list");
    let ids: Vec<&str> = (listed.body["data"].as_array().unwrap().iter())
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["echo", MODEL, FALLBACK, ALIAS]);
    let alias = app
        .call(Method::GET, &format!("/v1/models/{ALIAS}"), None)
        .await;
    assert_eq!(alias.status, StatusCode::OK);
    assert_eq!(alias.body["id"], ALIAS);
    assert_eq!(alias.body["object"], "model");
}
