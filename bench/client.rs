//! What the load sends. Every request body is serialized once and shared, so the driver
//! spends as little as possible of the cores it shares with the service.
//!
//! A stateful send on a session of `CONTEXT_TURNS` turns makes the service send upstream
//! exactly the body of the baseline (system prompt, ten turns, the new message), and the
//! stateless request carries that same body: the three differ only in who builds it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::load::Outcome;

pub const MODEL: &str = "bench-model";
/// Routed to the fake's 50 ms mode.
pub const SLOW_MODEL: &str = "bench-model-slow";
/// Routed to the fake's tool-calling mode: every answer calls a tool.
pub const TOOL_MODEL: &str = "bench-model-tools";
/// Routed to the fake's summarizer mode.
pub const SUMMARY_MODEL: &str = "bench-summarizer";
/// 200 bytes of ordinary prose: the size of every stored message and of every new one.
pub const TEXT: &str = "Thanks for the quick reply. Could you check whether the refund for order 44719 \
    went out, and if it did, tell me when it should reach my card? I also need the invoice \
    sent to my new postal address. Ta.";
pub const CONTEXT_TURNS: usize = 10;
const SYSTEM: &str = "You are a terse support assistant.";

/// The service's configuration (besides what the environment sets): the fake upstream in
/// both modes, as an OpenAI-compatible provider.
pub fn service_toml(upstream: &str) -> String {
    let mut toml = String::new();
    for (model, mode) in [
        (MODEL, "instant"),
        (SLOW_MODEL, "slow"),
        (TOOL_MODEL, "tools"),
        (SUMMARY_MODEL, "summary"),
    ] {
        toml.push_str(&format!(
            "[[providers]]\nname = \"fake-{mode}\"\nkind = \"openai\"\nbase_url = \"{upstream}/{mode}/v1\"\n\n\
             [[models]]\nname = \"{model}\"\nprovider = \"fake-{mode}\"\ncontext_tokens = 128000\n\
             input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 8.0\n\n"
        ));
    }
    toml
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    relay: Arc<str>,
    upstream: Arc<str>,
    bodies: Arc<Bodies>,
}

struct Bodies {
    send: Bytes,
    chat: Bytes,
    direct: Bytes,
    /// The same conversation offering three tools, to the relay and to the fake;
    /// `[1]` streamed.
    tool_chat: [Bytes; 2],
    tool_direct: [Bytes; 2],
    /// A Responses API request up to its last field, which names what it continues.
    respond: String,
}

/// Three function tools with a few typed parameters each, as an agent offers them.
fn three_tools() -> Value {
    let tool = |name: &str, description: &str, params: &[(&str, &str)]| {
        let properties: serde_json::Map<String, Value> = params
            .iter()
            .map(|(p, kind)| {
                (
                    p.to_string(),
                    json!({"type": kind, "description": format!("The {p}.")}),
                )
            })
            .collect();
        json!({"type": "function", "function": {"name": name, "description": description,
               "parameters": {"type": "object", "properties": properties,
                              "required": params.iter().map(|(p, _)| *p).collect::<Vec<_>>()}}})
    };
    json!([
        tool(
            "lookup_order",
            "Find an order by its number.",
            &[("order_id", "string")]
        ),
        tool(
            "refund_status",
            "Whether a refund was sent, and when.",
            &[("order_id", "string"), ("currency", "string")]
        ),
        tool(
            "update_address",
            "Change the postal address of an account.",
            &[("street", "string"), ("city", "string"), ("zip", "string")]
        ),
    ])
}

fn tool_request(stream: bool, direct: bool) -> Bytes {
    let mut body = json!({"model": TOOL_MODEL, "messages": upstream_messages(), "tools": three_tools(),
                          "tool_choice": "auto", "stream": stream});
    if direct {
        body["max_tokens"] = json!(1024);
    }
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    bytes(body)
}

fn stored_turns(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": TEXT}))
        .collect()
}

fn upstream_messages() -> Vec<Value> {
    let mut messages = vec![json!({"role": "system", "content": SYSTEM})];
    messages.extend(stored_turns(CONTEXT_TURNS));
    messages.push(json!({"role": "user", "content": TEXT}));
    messages
}

fn bytes(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

impl Client {
    pub fn new(relay: String, upstream: String) -> Client {
        // reqwest is built without a default TLS provider; only plain HTTP is used here,
        // but the client refuses to build without one. Err: already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(512)
            // Bounds every request, so every load loop ends.
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let bodies = Bodies {
            send: bytes(json!({"content": TEXT})),
            chat: bytes(json!({"model": MODEL, "messages": upstream_messages()})),
            direct: bytes(
                json!({"model": MODEL, "messages": upstream_messages(), "max_tokens": 1024, "stream": false}),
            ),
            tool_chat: [false, true].map(|stream| tool_request(stream, false)),
            tool_direct: [false, true].map(|stream| tool_request(stream, true)),
            respond: {
                let body = json!({"model": MODEL, "input": TEXT, "truncation": "auto"});
                let body = body.to_string();
                format!("{},", &body[..body.len() - 1])
            },
        };
        Client {
            http,
            relay: relay.into(),
            upstream: upstream.into(),
            bodies: Arc::new(bodies),
        }
    }

    async fn post(&self, url: String, body: Bytes) -> Result<Bytes, String> {
        let reply = (self.http.post(url))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = reply.status();
        let body = reply.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("{status}: {start}"));
        }
        Ok(body)
    }

    /// The baseline: the upstream request, straight to the fake (`slow`: its 50 ms mode).
    pub async fn direct(&self, slow: bool) -> Outcome {
        let mode = if slow { "slow" } else { "instant" };
        let url = format!("{}/{mode}/v1/chat/completions", self.upstream);
        self.post(url, self.bodies.direct.clone()).await.map(drop)
    }

    /// A stateful send: only the new message; the service adds the context.
    pub async fn send(&self, session: &str) -> Outcome {
        let url = format!("{}/v1/sessions/{session}/messages", self.relay);
        self.post(url, self.bodies.send.clone()).await.map(drop)
    }

    /// Sends once and returns how many messages the service says it sent upstream, so the
    /// run can check that a send and its baseline carry the same body.
    pub async fn upstream_messages(&self, session: &str) -> u64 {
        let url = format!("{}/v1/sessions/{session}/messages", self.relay);
        let reply = self.post(url, self.bodies.send.clone()).await.unwrap();
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        reply["context"]["messages"].as_u64().unwrap()
    }

    /// The three-tool request straight to the fake's tool mode (`stream`: as SSE, read to
    /// the end).
    pub async fn tool_direct(&self, stream: bool) -> Outcome {
        let url = format!("{}/tools/v1/chat/completions", self.upstream);
        let body = self.bodies.tool_direct[usize::from(stream)].clone();
        self.post(url, body).await.map(drop)
    }

    /// The three-tool request through the relay; the answer calls a tool.
    pub async fn tool_chat(&self, stream: bool) -> Outcome {
        let url = format!("{}/v1/chat/completions", self.relay);
        let body = self.bodies.tool_chat[usize::from(stream)].clone();
        let reply = self.post(url, body).await?;
        let called = if stream {
            reply.windows(14).any(|w| w == b"\"tool_calls\":[")
        } else {
            reply.windows(12).any(|w| w == b"\"tool_calls\"")
        };
        called
            .then_some(())
            .ok_or_else(|| "the answer called no tool".to_string())
    }

    /// A Responses API request continuing `previous` (a response id, or `conv_<session>`
    /// for the first of a chain); returns the new response's id. Only the id is read of
    /// the answer, as a send's answer is not read at all.
    pub async fn respond(&self, previous: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Created {
            id: String,
        }
        let field = match previous.starts_with("conv_") {
            true => "conversation",
            false => "previous_response_id",
        };
        let body = format!("{}\"{field}\":\"{previous}\"}}", self.bodies.respond);
        let url = format!("{}/v1/responses", self.relay);
        let reply = self.post(url, Bytes::from(body)).await?;
        let created: Created = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
        Ok(created.id)
    }

    /// A stateless OpenAI-format request carrying the whole context.
    pub async fn chat(&self) -> Outcome {
        let url = format!("{}/v1/chat/completions", self.relay);
        self.post(url, self.bodies.chat.clone()).await.map(drop)
    }

    pub async fn create(&self) -> Result<String, String> {
        let body = json!({"model": MODEL, "user_id": "bench-user", "system_prompt": SYSTEM, "context_window": CONTEXT_TURNS});
        let reply = self.post(format!("{}/v1/sessions", self.relay), bytes(body));
        let reply: Value = serde_json::from_slice(&reply.await?).map_err(|e| e.to_string())?;
        Ok(reply["session_id"]
            .as_str()
            .ok_or("no session_id")?
            .to_string())
    }

    /// A session of `max_context_tokens` with the `compaction` policy (summarized by the
    /// fake's summarizer mode), no turns yet.
    pub async fn create_compacting(&self, budget: u32, mut compaction: Value) -> String {
        compaction["model"] = json!(SUMMARY_MODEL);
        let body = json!({"model": MODEL, "system_prompt": SYSTEM, "max_context_tokens": budget,
                          "compaction": compaction});
        let reply = self.post(format!("{}/v1/sessions", self.relay), bytes(body));
        let reply: Value = serde_json::from_slice(&reply.await.unwrap()).unwrap();
        reply["session_id"].as_str().unwrap().to_string()
    }

    /// Sends `text` on `session`; returns the prompt tokens the service says it sent.
    pub async fn say(&self, session: &str, text: &str) -> Result<u64, String> {
        let url = format!("{}/v1/sessions/{session}/messages", self.relay);
        let reply = self.post(url, bytes(json!({"content": text}))).await?;
        let reply: Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
        (reply["context"]["tokens"].as_u64()).ok_or_else(|| "no context.tokens".to_string())
    }

    pub async fn get(&self, session: &str) -> Outcome {
        let url = format!("{}/v1/sessions/{session}", self.relay);
        let reply = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = reply.status();
        reply.bytes().await.map_err(|e| e.to_string())?;
        status.is_success().then_some(()).ok_or(status.to_string())
    }

    /// Makes `sessions` sessions of `turns` stored turns each through the import endpoint,
    /// in requests of a few MB; returns their ids.
    pub async fn seed(&self, model: &str, sessions: usize, turns: usize) -> Vec<String> {
        let session = json!({
            "model": model, "user_id": "bench-user", "system_prompt": SYSTEM,
            "context_window": CONTEXT_TURNS, "messages": stored_turns(turns),
        });
        let per_request = (4_000_000 / (turns * 260 + 200)).clamp(1, 500);
        let mut ids = Vec::new();
        while ids.len() < sessions {
            let batch = per_request.min(sessions - ids.len());
            let body = json!({"sessions": vec![session.clone(); batch]});
            let url = format!("{}/v1/sessions/import", self.relay);
            let reply = self.post(url, bytes(body)).await.unwrap();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            for result in reply["results"].as_array().unwrap() {
                assert_eq!(result["status"], "created", "import failed: {result}");
                ids.push(result["session_id"].as_str().unwrap().to_string());
            }
        }
        ids
    }
}
