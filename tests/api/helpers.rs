//! `spawn_app()` and a `TestApp` with typed helpers: every test runs the real server over
//! HTTP, against a real Redis or Redis Cluster (its own key prefix) or the memory store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::{
    config::{Secret, Settings, StaticKeySettings, StoreMode},
    startup::Application,
};

use crate::{
    redis_cluster::RedisCluster,
    redis_server::{RedisServer, free_port},
};

pub const ACME_KEY: &str = "test-key-acme-0001";
pub const GLOBEX_KEY: &str = "test-key-globex-0002";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Redis,
    /// The shared local Redis Cluster (`redis_cluster.rs`).
    Cluster,
    Memory,
}

/// Every store a scenario runs on.
pub const BACKENDS: [Backend; 3] = [Backend::Redis, Backend::Cluster, Backend::Memory];

pub struct TestApp {
    pub address: String,
    pub prefix: String,
    pub redis_url: Option<String>,
    pub http: reqwest::Client,
    pub key: String,
}

pub fn test_settings(backend: Backend, redis_url: Option<String>) -> Settings {
    let mut settings = Settings::from_toml("", &HashMap::new()).expect("default settings");
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.log.level = "error".into();
    settings.store.key_prefix = format!("t{}", &session_relay::domain::session::new_id()[..12]);
    match backend {
        Backend::Redis => {
            settings.store.redis_url =
                Some(redis_url.unwrap_or_else(|| RedisServer::shared().url()));
        }
        Backend::Cluster => {
            settings.store.redis_url =
                Some(redis_url.unwrap_or_else(|| RedisCluster::shared().seeds()));
            settings.store.mode = StoreMode::Cluster;
        }
        Backend::Memory => {}
    }
    // Tests make many 401s from 127.0.0.1 on purpose; keys.rs checks the slow-down itself.
    settings.auth.failed_auth_max_delay_ms = 0;
    settings.auth.keys = [("acme", ACME_KEY), ("globex", GLOBEX_KEY)]
        .into_iter()
        .map(|(tenant, key)| StaticKeySettings {
            name: format!("{tenant}-key"),
            tenant: tenant.into(),
            key_env: format!("{}_KEY", tenant.to_uppercase()),
            key: Some(Secret::new(key)),
        })
        .collect();
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(test_settings(backend, None)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    session_relay::telemetry::init(&settings.log);
    let prefix = settings.store.key_prefix.clone();
    let redis_url = settings.store.redis_url.clone();
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        prefix,
        redis_url,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        key: ACME_KEY.into(),
    }
}

/// The service binary as a process of its own (its own startup, its own metrics), with
/// `ACME_KEY` as its API key; stopped when dropped.
pub struct ServiceProcess {
    pub app: TestApp,
    _process: tokio::process::Child,
}

/// Starts the binary with `env` on top of a listen address, the key and quiet logs, and
/// returns once `/readyz` answers at all (whether it says ready is the test's business),
/// or after 10 s.
pub async fn spawn_binary(env: &[(&str, String)]) -> ServiceProcess {
    let port = free_port();
    let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-relay"))
        .env_clear()
        .env("SESSION_RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SESSION_RELAY_API_KEY", ACME_KEY)
        .env("SESSION_RELAY_LOG_LEVEL", "error")
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the session-relay binary runs");
    let app = process_app(port, env);
    for _ in 0..200 {
        if app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ServiceProcess {
        app,
        _process: process,
    }
}

/// The binary as a process of its own whose JSON logs (stdout and stderr) are kept, with
/// `ACME_KEY` as its API key (tenant `default` unless `env` says).
pub struct LoggedService {
    pub app: TestApp,
    process: tokio::process::Child,
    readers: Vec<tokio::task::JoinHandle<()>>,
    logs: Arc<Mutex<String>>,
}

/// Starts the binary on a free port with JSON logs and `env`; returns once it said where
/// it listens.
pub async fn spawn_logged(env: &[(&str, String)]) -> LoggedService {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-relay"))
        .env_clear()
        .env("SESSION_RELAY_LISTEN", "127.0.0.1:0")
        .env("SESSION_RELAY_API_KEY", ACME_KEY)
        .env("SESSION_RELAY_LOG_FORMAT", "json")
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the session-relay binary runs");
    let logs = Arc::new(Mutex::new(String::new()));
    let (port_tx, port_rx) = tokio::sync::oneshot::channel::<u16>();
    let mut port_tx = Some(port_tx);
    let mut readers = Vec::new();
    for stream in [
        Box::new(process.stdout.take().expect("stdout"))
            as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(process.stderr.take().expect("stderr")),
    ] {
        let logs = logs.clone();
        let mut port_tx = port_tx.take();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = listening_port(&line)
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
                let mut logs = logs.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        }));
    }
    let port = tokio::time::timeout(std::time::Duration::from_secs(20), port_rx)
        .await
        .expect("the binary says where it listens")
        .expect("port");
    let app = process_app(port, env);
    LoggedService {
        app,
        process,
        readers,
        logs,
    }
}

impl LoggedService {
    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Stops the process and returns everything it logged.
    pub async fn stop(mut self) -> String {
        self.process.kill().await.expect("kill");
        for reader in self.readers.drain(..) {
            reader.await.expect("reader");
        }
        self.logs()
    }
}

/// The port of the "listening" line of a JSON log.
fn listening_port(line: &str) -> Option<u16> {
    let value: Value = serde_json::from_str(line).ok()?;
    value["fields"]["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// A client of the binary running as a process on `port`, with `ACME_KEY`.
fn process_app(port: u16, env: &[(&str, String)]) -> TestApp {
    // Built before any in-process app installs the crypto provider reqwest needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        prefix: env
            .iter()
            .find(|(name, _)| *name == "SESSION_RELAY_KEY_PREFIX")
            .map_or_else(|| "sr".to_string(), |(_, prefix)| prefix.clone()),
        redis_url: None,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        key: ACME_KEY.into(),
    }
}

/// A response read whole: status, headers and JSON body (`Null` when not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn as_tenant(&self, key: &str) -> TestApp {
        TestApp {
            address: self.address.clone(),
            prefix: self.prefix.clone(),
            redis_url: self.redis_url.clone(),
            http: self.http.clone(),
            key: key.into(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Sends raw bytes as the body, for malformed input.
    pub async fn call_raw(&self, method: Method, path: &str, body: Vec<u8>) -> Reply {
        let request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body);
        read(request.send().await.expect("request sent")).await
    }

    /// A GET answered with text (`/metrics`, `/docs`).
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("body")
    }

    /// A sample of `/metrics` without labels (`name value`); 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let prefix = format!("{name} ");
        self.get_text("/metrics")
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    pub async fn create_session(&self, body: Value) -> Value {
        let reply = self.call(Method::POST, "/v1/sessions", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    pub async fn new_session_id(&self) -> String {
        self.create_session(json!({})).await["session_id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let url = self.redis_url.as_ref().expect("a Redis-backed app");
        redis::Client::open(url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Every key under this app's prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.redis().await;
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("scan");
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    /// The keys of one session (every key carries its tenant's scope and its id as a hash tag).
    pub async fn session_keys(&self, id: &str) -> Vec<String> {
        self.keys()
            .await
            .into_iter()
            .filter(|k| k.contains(&format!(":{id}}}:")))
            .collect()
    }

    /// Key `part` of tenant `acme`'s session `id` (`ACME_KEY`'s, the default caller).
    pub fn session_key(&self, id: &str, part: &str) -> String {
        acme_session_key(&self.prefix, id, part)
    }
}

/// Sends a request built by the caller (any headers, any body) and reads the reply whole.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    read(request.send().await.expect("request sent")).await
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// Key `part` of tenant `acme`'s session `id` under `prefix`.
pub fn acme_session_key(prefix: &str, id: &str, part: &str) -> String {
    let scope = session_relay::domain::scope::tenant_scope("acme");
    format!("{prefix}:{{{scope}:{id}}}:{part}")
}
