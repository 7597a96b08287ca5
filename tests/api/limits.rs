//! Rate limits shared across instances, spending caps checked before the upstream call,
//! and usage — against a fake OpenAI-compatible upstream of our own.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::config::Settings;

use crate::{
    helpers::{BACKENDS, Backend, GLOBEX_KEY, TestApp, spawn_with},
    keys::{admin_settings, create_key},
};

/// An OpenAI-compatible upstream that always reports the same usage and counts its calls.
pub(crate) struct Fake {
    url: String,
    calls: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
struct FakeUsage(u32, u32);

async fn completions(
    body: web::Json<Value>,
    usage: web::Data<FakeUsage>,
    calls: web::Data<Arc<AtomicUsize>>,
) -> HttpResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    let FakeUsage(prompt, completion) = **usage;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion});
    if body["stream"] == true {
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"content": "fake "}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "answer"}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": usage}),
        ];
        let mut sse: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        sse.push_str("data: [DONE]\n\n");
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(sse);
    }
    HttpResponse::Ok().json(json!({
        "id": "fake", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fake answer"}, "finish_reason": "stop"}],
        "usage": usage,
    }))
}

pub(crate) async fn start_fake(prompt_tokens: u32, completion_tokens: u32) -> Fake {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(FakeUsage(prompt_tokens, completion_tokens)))
            .app_data(web::Data::new(counter.clone()))
            .route("/v1/chat/completions", web::post().to(completions))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    Fake { url, calls }
}

impl Fake {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// `fake-gpt` at $2 / $4 per million prompt / completion tokens, served by the fake.
pub(crate) fn with_fake(settings: Settings, fake: &Fake) -> Settings {
    with_upstream(settings, &format!("{}/v1", fake.url))
}

/// `fake-gpt` as [`with_fake`] has it, served by any OpenAI-compatible API at `base_url`.
pub(crate) fn with_upstream(mut settings: Settings, base_url: &str) -> Settings {
    let toml = format!(
        "[[providers]]\nname = \"fake\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\n\
         [[models]]\nname = \"fake-gpt\"\nprovider = \"fake\"\ncontext_tokens = 8192\n\
         input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 4.0\n"
    );
    let extra = Settings::from_toml(&toml, &HashMap::new()).unwrap();
    settings.providers = extra.providers;
    settings.models = extra.models;
    settings
}

pub(crate) async fn send(app: &TestApp, id: &str, body: Value) -> crate::helpers::Reply {
    app.call(
        Method::POST,
        &format!("/v1/sessions/{id}/messages"),
        Some(body),
    )
    .await
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn two_instances_share_one_requests_per_minute_limit() {
    let settings = admin_settings(Backend::Redis);
    let (a, b) = (
        spawn_with(settings.clone()).await,
        spawn_with(settings).await,
    );
    let (_, key) = create_key(
        &a,
        json!({"name": "rpm", "tenant": "acme", "rate_limit_rpm": 60}),
    )
    .await;
    let (a, b) = (a.as_tenant(&key), b.as_tenant(&key));
    let mut replies = Vec::new();
    for round in 0..10 {
        let batch = (0..20).map(|i| {
            let app = if (round + i) % 2 == 0 { &a } else { &b };
            app.call(Method::GET, "/v1/status", None)
        });
        replies.extend(join_all(batch).await);
    }
    let accepted = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!((60..=63).contains(&accepted), "accepted {accepted} of 200");
    let limited = replies
        .iter()
        .rfind(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert_eq!(limited.error_code(), "rate_limit_exceeded");
    let retry_after = limited.body["retry_after"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&retry_after),
        "one request comes back every second"
    );
    assert_eq!(
        limited.headers["retry-after"].to_str().unwrap(),
        retry_after.to_string()
    );
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        b.call(Method::GET, "/v1/status", None).await.status,
        StatusCode::OK,
        "retry_after is truthful"
    );
}

#[tokio::test]
async fn the_memory_store_limits_requests_the_same_way() {
    let app = spawn_with(admin_settings(Backend::Memory)).await;
    let (_, key) = create_key(
        &app,
        json!({"name": "rpm", "tenant": "acme", "rate_limit_rpm": 30}),
    )
    .await;
    let app = app.as_tenant(&key);
    let replies = join_all((0..45).map(|_| app.call(Method::GET, "/v1/status", None))).await;
    let accepted = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!((30..=31).contains(&accepted), "accepted {accepted} of 45");
    let limited = replies
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert_eq!(
        limited.body["retry_after"], 2,
        "30 per minute: one every 2 s"
    );
}

#[tokio::test]
async fn tokens_per_minute_reserve_the_worst_case_and_give_back_the_rest() {
    for backend in BACKENDS {
        let fake = start_fake(20, 10).await;
        let app = spawn_with(with_fake(admin_settings(backend), &fake)).await;
        let (_, key) = create_key(
            &app,
            json!({"name": "tpm", "tenant": "acme", "rate_limit_tpm": 2500}),
        )
        .await;
        let app = app.as_tenant(&key);
        let id = app
            .create_session(json!({"model": "fake-gpt", "max_tokens": 1000}))
            .await["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        // Each send reserves ~1010 tokens and uses 30: without the refund the third is refused.
        for _ in 0..3 {
            let reply = send(&app, &id, json!({"content": "hi"})).await;
            assert_eq!(reply.status, StatusCode::OK, "{backend:?}: {}", reply.body);
        }
        // More than the bucket holds waits until it is full again: ~90 tokens at 2500/min.
        let big = send(&app, &id, json!({"content": "hi", "max_tokens": 2600})).await;
        assert_eq!(
            big.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{backend:?}: {}",
            big.body
        );
        assert!(
            (1..=4).contains(&big.body["retry_after"].as_u64().unwrap()),
            "{}",
            big.body
        );
        assert_eq!(
            fake.calls(),
            3,
            "{backend:?}: the refused send made no upstream call"
        );
    }
}

#[tokio::test]
async fn spending_caps_stop_before_the_upstream_call_and_usage_adds_up() {
    for backend in BACKENDS {
        // Every call costs 1000 × $2/M + 500 × $4/M = $0.004.
        let fake = start_fake(1000, 500).await;
        let app = spawn_with(with_fake(admin_settings(backend), &fake)).await;
        let capped = app
            .create_session(json!({"model": "fake-gpt", "max_tokens": 200, "max_cost_usd": 0.0045}))
            .await;
        let id = capped["session_id"].as_str().unwrap();
        // The worst case of a call is ~$0.00085 (a short prompt and 200 completion tokens at
        // $4/M): the first fits under $0.0045, the second ($0.004 spent) does not.
        let first = send(&app, id, json!({"content": "one"})).await;
        assert!(
            close(&first.body["cost_usd"], 0.004),
            "{backend:?}: {}",
            first.body
        );
        let second = send(&app, id, json!({"content": "two"})).await;
        assert_eq!(
            second.status,
            StatusCode::PAYMENT_REQUIRED,
            "{backend:?}: {}",
            second.body
        );
        assert_eq!(second.error_code(), "budget_exceeded");
        assert!(
            close(&second.body["limit_usd"], 0.0045) && close(&second.body["spent_usd"], 0.004)
        );
        assert_eq!(
            fake.calls(),
            1,
            "{backend:?}: the upstream saw exactly one call"
        );

        let (key_id, key) = create_key(
            &app,
            json!({"name": "daily", "tenant": "initech", "daily_budget_usd": 0.005}),
        )
        .await;
        let initech = app.as_tenant(&key);
        let id = initech
            .create_session(json!({"model": "fake-gpt", "max_tokens": 100}))
            .await["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            send(&initech, &id, json!({"content": "a"})).await.status,
            StatusCode::OK
        );
        let streamed = initech
            .http
            .post(format!("{}/v1/sessions/{id}/messages", initech.address))
            .bearer_auth(&key)
            .json(&json!({"content": "b", "stream": true}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(streamed.contains("event: done"), "{streamed}");
        let over = send(&initech, &id, json!({"content": "c"})).await;
        assert_eq!(
            over.status,
            StatusCode::PAYMENT_REQUIRED,
            "{backend:?}: {}",
            over.body
        );
        assert!(close(&over.body["limit_usd"], 0.005) && close(&over.body["spent_usd"], 0.008));
        assert_eq!(fake.calls(), 3, "{backend:?}");

        let usage = initech
            .call(Method::GET, "/v1/usage?group_by=model", None)
            .await;
        let line = &usage.body["data"][0];
        assert_eq!(
            (line["model"].as_str(), line["requests"].as_u64()),
            (Some("fake-gpt"), Some(2))
        );
        assert_eq!(
            (
                line["prompt_tokens"].as_u64(),
                line["completion_tokens"].as_u64()
            ),
            (Some(2000), Some(1000))
        );
        assert!(close(&line["cost_usd"], 0.008), "{}", usage.body);
        let by_key = initech
            .call(Method::GET, "/v1/usage?group_by=key", None)
            .await;
        assert_eq!(by_key.body["data"][0]["key_id"], key_id.as_str());
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let by_day = app
            .call(
                Method::GET,
                &format!("/v1/usage?from={today}&to={today}&group_by=day"),
                None,
            )
            .await;
        assert_eq!(by_day.body["data"][0]["day"], today.as_str());
        assert!(
            close(&by_day.body["total"]["cost_usd"], 0.004),
            "acme's own: {}",
            by_day.body
        );
        let globex = app
            .as_tenant(GLOBEX_KEY)
            .call(Method::GET, "/v1/usage", None)
            .await;
        assert_eq!(
            (
                globex.body["data"].clone(),
                globex.body["total"]["requests"].clone()
            ),
            (json!([]), json!(0))
        );
    }
}

#[tokio::test]
async fn stateless_relay_calls_are_budgeted_and_recorded_like_session_sends() {
    // Every call costs 1000 × $2/M + 500 × $4/M = $0.004; the key may spend $0.005 a day.
    let fake = start_fake(1000, 500).await;
    let app = spawn_with(with_fake(admin_settings(Backend::Redis), &fake)).await;
    let (_, key) = create_key(
        &app,
        json!({"name": "relay", "tenant": "initech", "daily_budget_usd": 0.005}),
    )
    .await;
    let relay = app.as_tenant(&key);
    let body = |stream: bool| {
        json!({"model": "fake-gpt", "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let first = relay
        .call(Method::POST, "/v1/chat/completions", Some(body(false)))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let streamed = relay
        .http
        .post(format!("{}/v1/chat/completions", relay.address))
        .bearer_auth(&key)
        .json(&body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("data: [DONE]"), "{streamed}");
    let over = relay
        .call(Method::POST, "/v1/chat/completions", Some(body(false)))
        .await;
    // On the relay a spending cap is OpenAI's quota error, which the SDKs raise as a
    // rate-limit error; the session API keeps its 402.
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert_eq!(over.body["error"]["code"], "insufficient_quota");
    assert_eq!(
        fake.calls(),
        2,
        "the refused call never reached the upstream"
    );

    let usage = relay
        .call(Method::GET, "/v1/usage?group_by=model", None)
        .await;
    let line = &usage.body["data"][0];
    assert_eq!(line["requests"].as_u64(), Some(2), "{}", usage.body);
    assert_eq!(line["prompt_tokens"].as_u64(), Some(2000));
    assert!(close(&line["cost_usd"], 0.008), "{}", usage.body);
}

/// `GET /v1/status` tells a key its own limits, what it spent today and what remains of
/// its daily budget; a key without limits sees nulls and what it spent.
#[tokio::test]
async fn status_reports_the_keys_limits_and_what_remains_of_its_budget() {
    for backend in BACKENDS {
        // Every call costs 1000 × $2/M + 500 × $4/M = $0.004.
        let fake = start_fake(1000, 500).await;
        let app = spawn_with(with_fake(admin_settings(backend), &fake)).await;
        let (key_id, key) = create_key(
            &app,
            json!({"name": "budgeted", "tenant": "initech", "rate_limit_rpm": 100, "daily_budget_usd": 0.01}),
        )
        .await;
        let initech = app.as_tenant(&key);
        let fresh = initech.call(Method::GET, "/v1/status", None).await;
        assert_eq!(fresh.status, StatusCode::OK, "{backend:?}: {}", fresh.body);
        let status = &fresh.body["key"];
        assert_eq!(status["key_id"], key_id.as_str());
        assert_eq!(
            (status["name"].as_str(), status["tenant"].as_str()),
            (Some("budgeted"), Some("initech"))
        );
        assert_eq!(status["rate_limit_rpm"], 100);
        assert!(status["rate_limit_tpm"].is_null());
        assert!(close(&status["daily_budget_usd"], 0.01));
        assert!(
            close(&status["today"]["remaining_usd"], 0.01),
            "{backend:?}: {status}"
        );
        let id = initech
            .create_session(json!({"model": "fake-gpt", "max_tokens": 100}))
            .await;
        let id = id["session_id"].as_str().unwrap();
        assert_eq!(
            send(&initech, id, json!({"content": "a"})).await.status,
            StatusCode::OK
        );
        let after = initech.call(Method::GET, "/v1/status", None).await.body;
        let today = &after["key"]["today"];
        assert!(close(&today["spent_usd"], 0.004), "{backend:?}: {today}");
        assert!(close(&today["reserved_usd"], 0.0), "{backend:?}: {today}");
        assert!(
            close(&today["remaining_usd"], 0.006),
            "{backend:?}: {today}"
        );
        assert_eq!(
            today["day"],
            chrono::Utc::now().format("%Y-%m-%d").to_string()
        );

        // A configured key: no limits, and what it spent today.
        let id = app
            .create_session(json!({"model": "fake-gpt", "max_tokens": 100}))
            .await;
        let id = id["session_id"].as_str().unwrap();
        assert_eq!(
            send(&app, id, json!({"content": "b"})).await.status,
            StatusCode::OK
        );
        let own = app.call(Method::GET, "/v1/status", None).await.body;
        let status = &own["key"];
        assert_eq!(status["key_id"], "static:acme-key");
        assert!(status["rate_limit_rpm"].is_null() && status["daily_budget_usd"].is_null());
        assert!(
            close(&status["today"]["spent_usd"], 0.004),
            "{backend:?}: {status}"
        );
        assert!(status["today"]["remaining_usd"].is_null());
    }
}
