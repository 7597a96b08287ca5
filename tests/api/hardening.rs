//! What an unauthenticated or hostile client can make of the service's answers: every metric
//! label from a closed set, wrong methods answered 405 with `Allow`, non-object JSON refused,
//! no request content quoted back. (Connections, logs and exposure: `exposure.rs`.)

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{Backend, TestApp, spawn_app, spawn_binary, spawn_with},
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
            "DELETE, GET, PATCH, PUT",
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
