//! Graceful shutdown: readiness turns 503, in-flight sends finish, leases are released,
//! and streams still running when the grace period ends are told so before they close.

use std::{net::TcpListener, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, web};
use redis::AsyncCommands;
use serde_json::json;
use session_relay::{
    config::{ModelSettings, ProviderKind, ProviderSettings, Settings},
    startup::Application,
};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    helpers::{ACME_KEY, Backend, test_settings},
};

/// An OpenAI-compatible upstream that answers after `delay`.
fn slow_upstream(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move || async move {
                tokio::time::sleep(delay).await;
                HttpResponse::Ok().json(json!({
                    "id": "c1", "object": "chat.completion", "model": "slow",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "late answer"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                }))
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/v1")
}

fn settings_with_upstream(upstream: String, grace_seconds: u64, drain_delay_ms: u64) -> Settings {
    let mut settings = test_settings(Backend::Redis, None);
    settings.server.shutdown_grace_seconds = grace_seconds;
    settings.server.drain_delay_ms = drain_delay_ms;
    settings.providers.push(ProviderSettings {
        name: "slow".into(),
        kind: ProviderKind::Openai,
        base_url: Some(upstream),
        api_key_env: None,
        api_key: None,
    });
    settings.models.push(ModelSettings {
        name: "slow".into(),
        provider: "slow".into(),
        upstream_name: None,
        context_tokens: 8192,
        input_usd_per_mtok: 0.0,
        output_usd_per_mtok: 0.0,
        fallbacks: Vec::new(),
        tokenizer: None,
        aliases: Vec::new(),
        ..ModelSettings::default()
    });
    settings
}

struct Running {
    base: String,
    prefix: String,
    redis_url: String,
    trigger: session_relay::shutdown::ShutdownTrigger,
    stopped: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

async fn start(settings: Settings) -> Running {
    let prefix = settings.store.key_prefix.clone();
    let redis_url = settings.store.redis_url.clone().unwrap();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let trigger = app.shutdown_trigger();
    let stopped = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Running {
        base,
        prefix,
        redis_url,
        trigger,
        stopped: Some(stopped),
        http,
    }
}

impl Running {
    async fn new_session(&self) -> String {
        let reply: serde_json::Value = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .bearer_auth(ACME_KEY)
            .json(&json!({"model": "slow"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["session_id"].as_str().unwrap().to_string()
    }

    fn send(&self, id: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let request = self
            .http
            .post(format!("{}/v1/sessions/{id}/messages", self.base))
            .bearer_auth(ACME_KEY)
            .json(&json!({"content": "are you still there?"}));
        tokio::spawn(request.send())
    }

    async fn wait_stopped(&mut self) {
        let stopped = self.stopped.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), stopped)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn lease_exists(&self, id: &str) -> bool {
        let mut conn = redis::Client::open(self.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        conn.exists(crate::helpers::acme_session_key(&self.prefix, id, "lease"))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn draining_fails_readiness_and_lets_in_flight_sends_finish() {
    let mut app = start(settings_with_upstream(
        slow_upstream(Duration::from_millis(800)),
        10,
        400,
    ))
    .await;
    let id = app.new_session().await;
    let in_flight = app.send(&id);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(app.lease_exists(&id).await, "the send holds its lease");

    app.trigger.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readiness fails as soon as draining starts"
    );

    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status(), 200, "the in-flight send finished");
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["assistant_message"], "late answer");
    app.wait_stopped().await;
    assert!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn leases_still_held_after_the_grace_period_are_released() {
    let mut app = start(settings_with_upstream(
        slow_upstream(Duration::from_secs(30)),
        1,
        0,
    ))
    .await;
    let id = app.new_session().await;
    let in_flight = app.send(&id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.lease_exists(&id).await);

    app.trigger.trigger();
    app.wait_stopped().await;
    assert!(
        !app.lease_exists(&id).await,
        "the lease was released at shutdown, not left to lapse"
    );
    let cut = in_flight.await.unwrap();
    assert!(
        cut.is_err() || cut.unwrap().status() != 200,
        "the unfinished send did not succeed"
    );
}

#[tokio::test]
async fn streams_still_running_when_the_grace_period_ends_get_an_error_event() {
    let fake = FakeUpstream::start().await;
    fake.set(Behaviour::Stream {
        pieces: (0..40).map(|i| format!("piece {i} ")).collect(),
        prompt_tokens: 5,
        completion_tokens: 40,
        gap: Duration::from_millis(250),
    });
    let mut app = start(settings_with_upstream(fake.base_url.clone(), 1, 0)).await;
    let id = app.new_session().await;
    let response = app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", app.base))
        .bearer_auth(ACME_KEY)
        .json(&json!({"content": "a long story, please", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Everything the client receives, until the stream ends or is cut.
    let received = tokio::spawn(async move {
        let mut text = String::new();
        let mut body = response.bytes_stream();
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut body).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    tokio::time::sleep(Duration::from_millis(700)).await;

    app.trigger.trigger();
    let text = tokio::time::timeout(Duration::from_secs(5), received)
        .await
        .expect("the stream ended")
        .unwrap();
    app.wait_stopped().await;
    assert!(text.contains("event: delta"), "{text}");
    assert!(
        text.contains("event: error"),
        "the stream was cut without an error event: {text}"
    );
    assert!(!text.contains("event: done"), "{text}");
    assert!(text.contains("shutting_down"), "{text}");
    assert!(!app.lease_exists(&id).await, "the lease was given back");
}
