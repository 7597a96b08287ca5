//! Upstream faults, one by one: what the caller got, and what the upstream saw (attempt
//! counts, spacing, nothing after the deadline). Model `alpha` (upstream fake `primary`)
//! falls back to `beta` (fake `backup`). Timeouts are short so the suite stays fast.

mod breaker;
mod calls;
mod context;
mod defaults;
mod low_rate;
mod openai_sdk;
mod per_model;
mod relay;
mod streams;

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};
use session_relay::config::Settings;

use crate::{
    faults::{Fake, Reply},
    helpers::{Backend, Reply as HttpReply, TestApp, send, spawn_with, test_settings},
};

pub struct Rig {
    pub app: TestApp,
    pub primary: Fake,
    pub backup: Fake,
}

/// Test timings: an attempt gets 1 s, a stream 500 ms to its first token and between
/// chunks, one retry per model after 50–100 ms; the breaker stays out of the way.
const ROUTING: [(&str, &str); 10] = [
    ("attempt_timeout_ms", "1000"),
    ("first_token_timeout_ms", "500"),
    ("idle_timeout_ms", "500"),
    ("max_retries", "1"),
    ("backoff_base_ms", "50"),
    ("backoff_max_ms", "100"),
    ("breaker_min_requests", "1000"),
    ("breaker_consecutive_failures", "1000"),
    ("breaker_cooldown_ms", "500"),
    ("probe_timeout_ms", "1000"),
];

pub async fn rig(primary: Reply, backup: Reply) -> Rig {
    rig_with(Backend::Memory, 5, primary, backup, &[]).await
}

pub async fn rig_with(
    backend: Backend,
    deadline_seconds: u64,
    primary: Reply,
    backup: Reply,
    routing: &[(&str, &str)],
) -> Rig {
    let mut knobs: HashMap<&str, &str> = ROUTING.into_iter().collect();
    knobs.extend(routing.iter().copied());
    let server = format!("request_timeout_seconds = {deadline_seconds}");
    build(backend, &server, primary, backup, &knobs, ["", ""]).await
}

/// The service as shipped: every `[server]` and `[routing]` setting at its default.
pub async fn rig_at_defaults(primary: Reply, backup: Reply) -> Rig {
    build(
        Backend::Memory,
        "",
        primary,
        backup,
        &HashMap::new(),
        ["", ""],
    )
    .await
}

/// With `[routing]` as the tests have it, and `extra` added to the tables of models
/// `alpha` and `beta`.
pub async fn rig_with_models(primary: Reply, backup: Reply, extra: [&str; 2]) -> Rig {
    let knobs: HashMap<&str, &str> = ROUTING.into_iter().collect();
    let server = "request_timeout_seconds = 5";
    build(Backend::Memory, server, primary, backup, &knobs, extra).await
}

async fn build(
    backend: Backend,
    server: &str,
    primary: Reply,
    backup: Reply,
    knobs: &HashMap<&str, &str>,
    [alpha_extra, beta_extra]: [&str; 2],
) -> Rig {
    let (primary, backup) = (Fake::start(primary).await, Fake::start(backup).await);
    let routing: String = knobs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let file = format!(
        r#"
[server]
{server}
[[providers]]
name = "primary"
kind = "openai"
base_url = "{primary}"
api_key_env = "FAKE_PRIMARY_KEY"
[[providers]]
name = "backup"
kind = "openai"
base_url = "{backup}"
[[models]]
name = "alpha"
provider = "primary"
upstream_name = "alpha-upstream"
fallbacks = ["beta"]
{alpha_extra}
[[models]]
name = "beta"
provider = "backup"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
{beta_extra}
[routing]
{routing}"#,
        primary = primary.base_url,
        backup = backup.base_url,
    );
    let env = HashMap::from([(
        "FAKE_PRIMARY_KEY".to_string(),
        "sk-fake-primary".to_string(),
    )]);
    let parsed = Settings::from_toml(&file, &env).unwrap();
    let mut settings = test_settings(backend, None);
    settings.providers = parsed.providers;
    settings.models = parsed.models;
    settings.routing = parsed.routing;
    settings.server.request_timeout_seconds = parsed.server.request_timeout_seconds;
    let app = spawn_with(settings).await;
    Rig {
        app,
        primary,
        backup,
    }
}

impl Rig {
    pub async fn session(&self) -> String {
        let created = self.app.create_session(json!({"model": "alpha"})).await;
        created["session_id"].as_str().unwrap().to_string()
    }

    pub async fn send(&self, id: &str, content: &str) -> HttpReply {
        let path = format!("/v1/sessions/{id}/messages");
        let body = json!({ "content": content });
        self.app.call(Method::POST, &path, Some(body)).await
    }

    pub async fn history(&self, id: &str) -> Vec<Value> {
        let path = format!("/v1/sessions/{id}/messages");
        let reply = self.app.call(Method::GET, &path, None).await;
        reply.body["data"].as_array().unwrap().clone()
    }

    /// `POST /v1/chat/completions` with the API key and any extra headers.
    pub async fn chat(&self, body: Value, headers: &[(&str, &str)]) -> HttpReply {
        let mut request = self
            .app
            .http
            .post(format!("{}/v1/chat/completions", self.app.address))
            .bearer_auth(&self.app.key)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request).await
    }

    /// A streamed `POST /v1/chat/completions`: the text of its content deltas, and every
    /// `data:` payload.
    pub async fn chat_stream(&self, body: Value) -> (String, Vec<Value>) {
        let response = self
            .app
            .http
            .post(format!("{}/v1/chat/completions", self.app.address))
            .bearer_auth(&self.app.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let data = data_lines(response).await;
        let text = (data.iter())
            .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
            .collect();
        (text, data)
    }

    pub async fn breaker(&self, model: &str) -> String {
        let status = self.app.call(Method::GET, "/v1/status", None).await;
        status.body["models"][model]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Milliseconds between consecutive requests a fake saw.
pub fn gaps_ms(fake: &Fake) -> Vec<u128> {
    let seen = fake.seen();
    seen.windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect()
}

/// The `data:` payloads of an OpenAI event stream, `[DONE]` included as a string.
pub async fn data_lines(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into())))
        .collect()
}
