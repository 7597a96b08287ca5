//! What an unauthenticated or hostile client can do to the service: every metric label from a
//! closed set, wrong methods answered 405 with `Allow`, stalled uploads cut, non-object JSON
//! refused, no request content quoted back, refusals logged quietly.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_relay::config::Settings;

use crate::{
    helpers::{Backend, TestApp, spawn_app, spawn_binary, spawn_with, test_settings},
    keys,
};

/// A method token and a path nobody registered, different on every call.
fn random_request(i: usize) -> (Method, String) {
    let token: String = (0..8)
        .map(|_| char::from(b'A' + rand::random::<u8>() % 26))
        .collect();
    let method = Method::from_bytes(format!("{token}{i}").as_bytes()).unwrap();
    let path = match i % 3 {
        0 => format!("/v1/sessions/{token}{i}/x"),
        1 => format!("/{token}/{i}"),
        _ => "/v1/sessions".to_string(),
    };
    (method, path)
}

async fn hammer(app: &TestApp, from: usize, count: usize) {
    for i in from..from + count {
        let (method, path) = random_request(i);
        let reply = app.call(method, &path, None).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
    }
}

/// Random methods and paths must not grow `/metrics` (nor the memory behind it): the service
/// runs as a process of its own, so its metrics are this test's alone.
#[tokio::test]
async fn random_methods_and_paths_leave_metrics_bounded() {
    let service = spawn_binary(&[]).await;
    let app = &service.app;
    // Every label value a refusal can have appears in the first round.
    hammer(app, 0, 60).await;
    let before = app.get_text("/metrics").await.len();
    hammer(app, 60, 600).await;
    let after = app.get_text("/metrics").await.len();
    assert!(
        after <= before + 2048,
        "/metrics grew from {before} to {after} bytes"
    );
    let text = app.get_text("/metrics").await;
    assert!(
        text.contains("method=\"other\""),
        "unknown methods share one label"
    );
}

#[tokio::test]
async fn a_known_path_with_a_wrong_method_is_405_with_allow() {
    let app = spawn_app(Backend::Memory).await;
    let id = app.new_session_id().await;
    let cases = [
        (Method::POST, "/healthz".to_string(), "GET"),
        (Method::PUT, "/v1/sessions".to_string(), "POST"),
        (
            Method::PUT,
            format!("/v1/sessions/{id}/messages"),
            "GET, POST",
        ),
        (
            Method::from_bytes(b"FROB").unwrap(),
            format!("/v1/sessions/{id}"),
            "DELETE, GET, PATCH",
        ),
        (Method::GET, "/v1/chat/completions".to_string(), "POST"),
    ];
    for (method, path, allow) in cases {
        let reply = app.call(method.clone(), &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.error_code(), "method_not_allowed", "{}", reply.body);
        assert!(reply.body["message"].is_string());
        assert!(reply.headers.contains_key("x-request-id"));
    }
    let unknown = app.call(Method::GET, "/v2/nothing", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
    assert!(!unknown.headers.contains_key("allow"));
    let sent = app
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    assert_eq!(
        sent.status,
        StatusCode::CREATED,
        "the right method still works"
    );
}

/// Words of Rust, not JSON, that an error body must never contain.
const RUST_WORDS: [&str; 6] = ["struct ", "enum ", "Session", "Body", "u32", "f32"];

fn assert_no_rust(label: &str, body: &serde_json::Value) {
    let text = body.to_string();
    for word in RUST_WORDS {
        assert!(!text.contains(word), "{label}: names a Rust type: {text}");
    }
}

/// Every JSON route refuses arrays and other non-objects, at the top and nested, with
/// `invalid_request`; none of them decodes an array by field position.
#[tokio::test]
async fn json_routes_refuse_anything_but_objects() {
    let app = spawn_with(keys::admin_settings(Backend::Memory)).await;
    let admin = app.as_tenant(keys::ADMIN_KEY);
    let id = app.new_session_id().await;
    let (key_id, _) = keys::create_key(&app, json!({"name": "k", "tenant": "acme"})).await;
    let routes = [
        (&app, Method::POST, "/v1/sessions".to_string()),
        (&app, Method::PATCH, format!("/v1/sessions/{id}")),
        (&app, Method::POST, format!("/v1/sessions/{id}/messages")),
        (
            &app,
            Method::POST,
            format!("/v1/sessions/{id}/client_tokens"),
        ),
        (&app, Method::POST, "/v1/chat/completions".to_string()),
        (&app, Method::POST, "/v1/sessions/import".to_string()),
        (&admin, Method::POST, "/v1/admin/keys".to_string()),
        (
            &admin,
            Method::POST,
            format!("/v1/admin/keys/{key_id}/rotate"),
        ),
    ];
    for (caller, method, path) in &routes {
        for body in [r#"["hello", null, null, null]"#, r#""hello""#, "42", "null"] {
            let reply = caller.call_raw(method.clone(), path, body.into()).await;
            let label = format!("{method} {path} {body}");
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{label}: {}",
                reply.body
            );
            let code = reply.body["error"]["code"]
                .as_str()
                .unwrap_or(reply.error_code());
            assert_eq!(code, "invalid_request", "{label}: {}", reply.body);
            assert_no_rust(&label, &reply.body);
        }
    }
    let history = app
        .call(Method::GET, &format!("/v1/sessions/{id}/messages"), None)
        .await;
    assert_eq!(history.body["data"], json!([]), "nothing was sent");
    let nested = app
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "echo", "messages": [["user", "hi"]]})),
        )
        .await;
    assert_eq!(nested.status, StatusCode::BAD_REQUEST, "{}", nested.body);
    assert_eq!(nested.body["error"]["param"], "messages[0]");
    assert_no_rust("nested message", &nested.body);
    let imported = app
        .call(
            Method::POST,
            "/v1/sessions/import",
            Some(json!({"sessions": [["legacy-1"], {"messages": [["user", "hi"]]}]})),
        )
        .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    assert_eq!(imported.body["imported"], 0, "{}", imported.body);
    assert_eq!(imported.body["failed"], 2, "{}", imported.body);
    assert_no_rust("import items", &imported.body);
}

/// Error bodies name the field at fault but never quote what was sent: query values, model
/// names, field names that are not names.
#[tokio::test]
async fn error_bodies_never_quote_request_content() {
    let app = spawn_app(Backend::Memory).await;
    let canary = "<script>alert(7)</script>";
    let id = app.new_session_id().await;
    let encoded = "%3Cscript%3Ealert(7)%3C%2Fscript%3E";
    let cases = [
        (
            Method::GET,
            format!("/v1/usage?group_by={encoded}"),
            None,
            Some("group_by"),
        ),
        (Method::GET, format!("/v1/usage?{encoded}=1"), None, None),
        (
            Method::GET,
            format!("/v1/sessions/{id}/messages?limit={encoded}"),
            None,
            None,
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            Some(json!({"model": canary})),
            Some("model"),
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            Some(json!({"fallback_models": ["echo", canary]})),
            Some("fallback_models[1]"),
        ),
        (
            Method::PATCH,
            format!("/v1/sessions/{id}"),
            Some(json!({"model": canary})),
            Some("model"),
        ),
        (
            Method::POST,
            format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": "hi", "model": canary})),
            Some("model"),
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            Some(json!({canary: 1})),
            None,
        ),
        (
            Method::POST,
            "/v1/sessions/import".into(),
            Some(
                json!({"sessions": [{"messages": [{"role": "user", "content": "x", "created_at": canary}]}]}),
            ),
            None,
        ),
    ];
    for (method, path, body, field) in cases {
        let reply = app.call(method.clone(), &path, body).await;
        let label = format!("{method} {path}");
        let text = reply.body.to_string();
        assert!(
            reply.status.is_client_error() || reply.status == 200,
            "{label}: {text}"
        );
        assert!(
            !text.contains("script") && !text.contains("alert"),
            "{label} quoted content: {text}"
        );
        if let Some(field) = field {
            assert_eq!(reply.body["field"], field, "{label}: {text}");
        }
    }
    let openai = app
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": canary, "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(openai.status, StatusCode::NOT_FOUND);
    assert_eq!(openai.body["error"]["code"], "model_not_found");
    assert!(
        !openai.body.to_string().contains("script"),
        "{}",
        openai.body
    );
}

#[tokio::test]
async fn a_missing_required_field_is_named() {
    let app = spawn_with(keys::admin_settings(Backend::Memory)).await;
    let id = app.new_session_id().await;
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"model": "echo"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert_eq!(sent.error_code(), "invalid_request");
    assert_eq!(sent.body["field"], "content", "{}", sent.body);
    let key = app
        .as_tenant(keys::ADMIN_KEY)
        .call(Method::POST, "/v1/admin/keys", Some(json!({"name": "k"})))
        .await;
    assert_eq!(key.body["field"], "tenant", "{}", key.body);
    let chat = app
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "echo", "messages": [{"content": "hi"}]})),
        )
        .await;
    assert_eq!(
        chat.body["error"]["param"], "messages[0].role",
        "{}",
        chat.body
    );
}

/// Opens a connection from `local` and sends the head of a request whose body never comes
/// (`Content-Length` promises more than is sent).
async fn stalled_upload(app: &TestApp, local: [u8; 4], path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((local, 0).into()).unwrap();
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{\"system_prompt\": \"",
        app.key
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection; `None` if it has not within `bound`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, bound: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(stream, &mut answer);
    tokio::time::timeout(bound, read).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

fn settings_with(edit: impl FnOnce(&mut session_relay::config::ServerSettings)) -> Settings {
    let mut settings = test_settings(Backend::Memory, None);
    edit(&mut settings.server);
    settings
}

/// A half-sent body (a JSON route, and the streamed import) is cut within the idle bound,
/// answered 408 and its connection closed, while the server keeps serving everyone else.
#[tokio::test]
async fn a_stalled_upload_is_cut_and_the_server_keeps_serving() {
    let app = spawn_with(settings_with(|s| s.body_idle_timeout_ms = 500)).await;
    for path in ["/v1/sessions", "/v1/sessions/import"] {
        let started = Instant::now();
        let mut stalled = stalled_upload(&app, [127, 0, 0, 1], path).await;
        // Served meanwhile, from the same address.
        assert_eq!(app.create_session(json!({})).await["object"], "session");
        let answer = read_until_closed(&mut stalled, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: a stalled upload still holds its connection"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: cut late"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
    }
}

/// A client that sends nothing, or only part of a request head, is disconnected too.
#[tokio::test]
async fn a_stalled_request_head_is_cut() {
    let app = spawn_with(settings_with(|s| s.client_request_timeout_ms = 300)).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut partial = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, b"GET /healthz HTTP/1.1\r\nHost: r")
        .await
        .unwrap();
    for stream in [&mut silent, &mut partial] {
        assert!(
            read_until_closed(stream, Duration::from_secs(3))
                .await
                .is_some(),
            "a stalled head still holds its connection"
        );
    }
}

/// Past `max_connections_per_peer` open connections from one address, a request is refused
/// with 429 and its connection closed; other addresses are served as before.
#[tokio::test]
async fn connections_per_client_address_are_bounded() {
    let app = spawn_with(settings_with(|s| s.max_connections_per_peer = 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stalled_upload(&app, [127, 0, 0, 7], "/v1/sessions").await);
    }
    let mut over = stalled_upload(&app, [127, 0, 0, 7], "/v1/sessions").await;
    let answer = read_until_closed(&mut over, Duration::from_secs(5))
        .await
        .expect("the connection over the bound is closed");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert_eq!(app.create_session(json!({})).await["object"], "session");
    drop(held);
    // The slots come back once those connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = stalled_upload(&app, [127, 0, 0, 7], "/v1/sessions").await;
        let cut = read_until_closed(&mut again, Duration::from_millis(300)).await;
        if cut.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {cut:?}");
    }
}

const USER_CANARY: &str = "user-canary-4e1d";
const AGENT_CANARY: &str = "agent-canary-9b7c";
const QUERY_CANARY: &str = "query-canary-2f8a";

/// Refusals a scanner or a broken client makes by the hundred: bad keys, unknown sessions,
/// each with a long query string and User-Agent.
async fn refusals(app: &TestApp, count: usize) {
    let padding = format!("{QUERY_CANARY}{}", "x".repeat(1500));
    let agent = format!("{AGENT_CANARY}{}", "y".repeat(500));
    for i in 0..count {
        let (key, path) = match i % 3 {
            0 => ("wrong-key", format!("/v1/sessions/abc?pad={padding}")),
            1 => (
                app.key.as_str(),
                format!("/v1/sessions/{i:032x}?pad={padding}"),
            ),
            _ => ("wrong-key", format!("/v1/users/{USER_CANARY}/sessions")),
        };
        let reply = app
            .http
            .get(format!("{}{path}", app.address))
            .bearer_auth(key)
            .header("user-agent", &agent)
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_client_error());
    }
}

/// The logging binary, with 401s answered at once (the slow-down is `keys.rs`' business).
async fn spawn_logged(level: &str) -> (crate::helpers::LoggedService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[auth]\nfailed_auth_max_delay_ms = 0\n").unwrap();
    let env = [
        ("SESSION_RELAY_CONFIG", config.display().to_string()),
        ("SESSION_RELAY_LOG_LEVEL", level.to_string()),
    ];
    (crate::helpers::spawn_logged(&env).await, dir)
}

/// At the default level refusals are counted, not logged one by one: hundreds of them
/// leave the logs nearly as they were, with no URL, query or User-Agent in them.
#[tokio::test]
async fn refusals_are_not_logged_one_by_one() {
    let (service, _dir) = spawn_logged("info").await;
    let started = service.logs().len();
    refusals(&service.app, 300).await;
    let logs = service.stop().await;
    let added = logs.len() - started;
    assert!(
        added < 4096,
        "{added} bytes of logs for 300 refusals:\n{}",
        &logs[started..]
    );
    for canary in [USER_CANARY, AGENT_CANARY, QUERY_CANARY] {
        assert!(!logs.contains(canary), "{canary} logged");
    }
}

/// Where requests are logged (debug), the URL keeps its route but not the user id in it,
/// nor the query string, nor the User-Agent.
#[tokio::test]
async fn logged_urls_carry_no_user_id() {
    let level = (
        "SESSION_RELAY_LOG_LEVEL",
        "session_relay=debug,info".to_string(),
    );
    let service = crate::helpers::spawn_logged(&[level]).await;
    refusals(&service.app, 9).await;
    let own = service
        .app
        .call(
            Method::GET,
            &format!("/v1/users/{USER_CANARY}/sessions"),
            None,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    let logs = service.stop().await;
    assert!(
        logs.contains("/v1/users/{user_id}/sessions"),
        "requests are logged:\n{logs}"
    );
    for canary in [USER_CANARY, AGENT_CANARY, QUERY_CANARY] {
        assert!(!logs.contains(canary), "{canary} logged:\n{logs}");
    }
}

/// With `server.metrics_listen`, `/metrics` is served there only: the public listener
/// answers 404, and the metrics address serves nothing else.
#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let metrics_port = crate::redis_server::free_port();
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let app = spawn_with(settings_with(|s| {
        s.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    }))
    .await;
    app.new_session_id().await;
    let public = app.call(Method::GET, "/metrics", None).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    let scraped = app
        .http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );
    for path in ["/v1/sessions", "/healthz", "/docs"] {
        let other = app
            .http
            .get(format!("{metrics}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Loopback mode (no key at all) says at startup, as a warning, that a proxy on the same
/// host makes every client local.
#[tokio::test]
async fn loopback_mode_warns_about_same_host_proxies() {
    let no_key = ("SESSION_RELAY_API_KEY", String::new());
    let service = crate::helpers::spawn_logged(&[no_key]).await;
    let logs = service.stop().await;
    let warning = logs
        .lines()
        .find(|line| line.contains("\"WARN\"") && line.contains("LOOPBACK"))
        .unwrap_or_else(|| panic!("no loopback warning:\n{logs}"));
    for words in ["reverse proxy", "every client", "SESSION_RELAY_API_KEY"] {
        assert!(warning.contains(words), "{words} not said: {warning}");
    }
}
