//! What a client can hold or learn by connecting: stalled uploads and heads are cut, one
//! address' connections are bounded, refusals are logged quietly and without user data,
//! `/metrics` can live on an address of its own, loopback mode warns about proxies.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_relay::config::Settings;

use crate::helpers::{Backend, LoggedService, TestApp, spawn_with, test_settings};

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
async fn spawn_logged(level: &str) -> (LoggedService, tempfile::TempDir) {
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
