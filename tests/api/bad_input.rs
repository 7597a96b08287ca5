//! Bad input on every endpoint: each case answers the contract's error (never a 500),
//! with an `X-Request-Id` and a flat `{"error", "message", ...}` body, and none of them
//! changes anything.

use std::{collections::HashSet, time::Duration};

use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE},
};
use serde_json::{Value, json};
use session_relay::domain::session::new_id;

use crate::helpers::{BACKENDS, Backend, Reply, TestApp, send, spawn_app};

const LIMIT_BYTES: u64 = 1024 * 1024;
const GOOD_USER: &str = "bad-input-owner";
/// Every failed create in the table names this user: its listing must stay empty.
const BAD_USER: &str = "bad-input-nobody";

enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

enum Auth {
    Good,
    Missing,
    Header(&'static str),
}

struct Case {
    method: Method,
    path: String,
    body: Body,
    auth: Auth,
    status: StatusCode,
    code: &'static str,
    /// The `field` the body must name; `None`: not checked.
    field: Option<String>,
    label: String,
}

impl Case {
    fn new(method: &Method, path: &str, body: Body, label: impl Into<String>) -> Case {
        Case {
            method: method.clone(),
            path: path.to_string(),
            body,
            auth: Auth::Good,
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            field: None,
            label: label.into(),
        }
    }

    fn field(mut self, field: &str) -> Case {
        self.field = Some(field.to_string());
        self
    }

    fn expect(mut self, status: StatusCode, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }

    fn auth(mut self, auth: Auth) -> Case {
        self.auth = auth;
        self
    }
}

/// A JSON body with `user_id` set to [`BAD_USER`] where the endpoint accepts one.
fn with_bad_user(create: bool, mut body: Value) -> Value {
    if create && let Value::Object(map) = &mut body {
        map.entry("user_id").or_insert(json!(BAD_USER));
    }
    body
}

fn body_cases(method: &Method, path: &str, create: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let raw = |text: &[u8], label: &str| Case::new(method, path, Body::Raw(text.to_vec()), label);
    let json_case = |body: Value, label: &str| {
        Case::new(
            method,
            path,
            Body::Json(with_bad_user(create, body)),
            label.to_string(),
        )
    };

    // Malformed JSON and JSON that is not an object.
    for text in [
        &b"{"[..],
        b"{\"model\": }",
        b"{\"model\": \"echo\",}",
        b"{\"model\": \"echo\"} {}",
        b"{'model': 'echo'}",
        b"nul",
        b"[]",
        b"\"a string\"",
        b"42",
        b"null",
        b"{\"context_window\": 1e400}",
    ] {
        cases.push(raw(
            text,
            &format!("malformed: {}", String::from_utf8_lossy(text)),
        ));
    }
    // Invalid UTF-8 inside a JSON string, and an escaped lone surrogate.
    cases.push(raw(
        b"{\"system_prompt\": \"ab\xff\xfe cd\"}",
        "invalid UTF-8 in a string",
    ));
    cases.push(raw(
        b"{\"metadata\": {\"k\xc3\x28\": 1}}",
        "invalid UTF-8 in a metadata key",
    ));
    cases.push(raw(
        b"{\"system_prompt\": \"\\ud800\"}",
        "lone surrogate escape",
    ));

    // Mass assignment: fields the client may never set.
    for (field, value) in [
        ("tenant", json!("globex")),
        ("created_at", json!("2020-01-01T00:00:00Z")),
        (
            "usage",
            json!({"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}),
        ),
        ("message_count", json!(1000)),
        ("revision", json!(7)),
        ("Model", json!("echo")),
    ] {
        cases.push(
            json_case(json!({ field: value }), &format!("unknown field {field}")).field(field),
        );
    }
    cases.push(
        json_case(
            json!({"model": "echo", "metadata": {"a": 1}, "tenant": "globex"}),
            "unknown field after valid ones",
        )
        .field("tenant"),
    );

    // Wrong types.
    for (field, value) in [
        ("ttl_seconds", json!("60")),
        ("ttl_seconds", json!(1.5)),
        ("ttl_seconds", json!(true)),
        ("temperature", json!("hot")),
        ("context_window", json!(true)),
        ("max_tokens", json!([1])),
        ("max_context_tokens", json!({})),
        ("metadata", json!([])),
        ("metadata", json!("plan=pro")),
        ("fallback_models", json!("echo")),
        ("model", json!(5)),
        ("model", json!({"name": "echo"})),
        ("system_prompt", json!({"text": "hi"})),
        ("max_cost_usd", json!("1.0")),
    ] {
        cases.push(
            json_case(
                json!({ field: value }),
                &format!("wrong type {field}={value}"),
            )
            .field(field),
        );
    }
    cases.push(
        json_case(json!({"fallback_models": [1]}), "wrong item type").field("fallback_models[0]"),
    );

    // Out of range.
    for (field, value) in [
        ("ttl_seconds", json!(-1)),
        ("ttl_seconds", json!(0)),
        ("ttl_seconds", json!(1_000_000_000_000_u64)),
        ("ttl_seconds", json!(u64::MAX)),
        ("temperature", json!(5)),
        ("temperature", json!(-0.1)),
        ("context_window", json!(0)),
        ("context_window", json!(-3)),
        ("context_window", json!(4_294_967_296_u64)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(1_000_000_000)),
        ("max_context_tokens", json!(0)),
        ("max_cost_usd", json!(-1)),
        ("model", json!("no-such-model")),
        ("model", json!("")),
        ("fallback_models", json!(vec!["echo"; 9])),
        ("system_prompt", json!("x".repeat(70 * 1024))),
        ("metadata", json!({"blob": "y".repeat(20 * 1024)})),
    ] {
        let shown: String = value.to_string().chars().take(40).collect();
        cases.push(
            json_case(
                json!({ field: value }),
                &format!("out of range {field}={shown}"),
            )
            .field(field),
        );
    }
    // An unknown fallback is named by its position in the list.
    cases.push(
        json_case(
            json!({"fallback_models": ["echo", "no-such-model"]}),
            "unknown fallback",
        )
        .field("fallback_models[1]"),
    );
    if create {
        for (value, label) in [
            (json!(""), "empty"),
            (json!("a\u{0}b"), "control character"),
            (json!("u".repeat(300)), "300 characters"),
            (json!(42), "a number"),
        ] {
            cases.push(
                Case::new(
                    method,
                    path,
                    Body::Json(json!({ "user_id": value })),
                    format!("user_id {label}"),
                )
                .field("user_id"),
            );
        }
    } else {
        cases.push(json_case(json!({"user_id": "other"}), "user_id is fixed").field("user_id"));
    }

    // Too large: refused by size, with the limit.
    let mut huge = b"{\"system_prompt\": \"".to_vec();
    huge.resize(huge.len() + 10 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\"}");
    cases.push(raw(&huge, "10 MB body").expect(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    cases
}

fn all_cases(good: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(body_cases(&Method::POST, "/v1/sessions", true));
    cases.extend(body_cases(
        &Method::PATCH,
        &format!("/v1/sessions/{good}"),
        false,
    ));

    // Unknown, overlong and odd session ids: 404, whatever the id looks like.
    let long_id = "a".repeat(10 * 1024);
    let unknown = new_id();
    for id in [
        unknown.as_str(),
        long_id.as_str(),
        "%7Bhash%7D",
        "..%2F..%2Fetc",
        "x%00y",
        &good.to_uppercase(),
    ] {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::PATCH, ""),
            (Method::DELETE, ""),
            (Method::POST, "/touch"),
            (Method::GET, "/messages"),
        ] {
            let body = if method == Method::PATCH {
                Body::Json(json!({"metadata": {"k": "v"}}))
            } else {
                Body::None
            };
            let shown: String = id.chars().take(20).collect();
            cases.push(
                Case::new(
                    &method,
                    &format!("/v1/sessions/{id}{suffix}"),
                    body,
                    format!("session id {shown}… ({} bytes)", id.len()),
                )
                .expect(StatusCode::NOT_FOUND, "session_not_found"),
            );
        }
    }
    for method in [Method::GET, Method::DELETE] {
        cases.push(
            Case::new(
                &method,
                &format!("/v1/users/{long_id}/sessions"),
                Body::None,
                "10 KB user id",
            )
            .field("user_id"),
        );
    }

    // Bad query strings on the paginated listings.
    let messages = format!("/v1/sessions/{good}/messages");
    let listing = format!("/v1/users/{GOOD_USER}/sessions");
    for base in [&messages, &listing] {
        for (query, field) in [
            ("limit=0", Some("limit")),
            ("limit=1001", Some("limit")),
            ("limit=abc", None),
            ("limit=-1", None),
            ("limit=", None),
            ("after=garbage", Some("after")),
            ("after=0_00000000000000000000000000000000", Some("after")),
            (
                "after=7fffffffffffffff_0123456789abcdef0123456789abcdef",
                Some("after"),
            ),
            (
                "after=ffffffffffffffff_0123456789abcdef0123456789abcdef",
                Some("after"),
            ),
            ("bogus=1", None),
        ] {
            let mut case = Case::new(
                &Method::GET,
                &format!("{base}?{query}"),
                Body::None,
                format!("query {query}"),
            );
            if let Some(field) = field {
                case = case.field(field);
            }
            cases.push(case);
        }
    }

    // Missing or wrong credentials, on every endpoint. The bodies are valid: only the
    // key is wrong, and nothing may happen.
    let endpoints = [
        (
            Method::POST,
            "/v1/sessions".to_string(),
            Some(json!({"user_id": BAD_USER})),
        ),
        (Method::GET, format!("/v1/sessions/{good}"), None),
        (
            Method::PATCH,
            format!("/v1/sessions/{good}"),
            Some(json!({"metadata": {"hacked": true}})),
        ),
        (Method::DELETE, format!("/v1/sessions/{good}"), None),
        (Method::POST, format!("/v1/sessions/{good}/touch"), None),
        (Method::GET, format!("/v1/sessions/{good}/messages"), None),
        (Method::GET, format!("/v1/users/{GOOD_USER}/sessions"), None),
        (
            Method::DELETE,
            format!("/v1/users/{GOOD_USER}/sessions"),
            None,
        ),
        (Method::GET, "/v1/status".to_string(), None),
    ];
    for (method, path, body) in endpoints {
        for (auth, label) in [
            (Auth::Missing, "no Authorization"),
            (Auth::Header("Bearer wrong-key"), "unknown key"),
            (Auth::Header("Bearer "), "empty bearer"),
            (Auth::Header("Basic dGVzdDp0ZXN0"), "basic auth"),
            (Auth::Header("test-key-acme-0001"), "no scheme"),
            (
                Auth::Header("Bearer test-key-acme-0001x"),
                "key plus a byte",
            ),
            (Auth::Header("Bearer test-key-acme-000"), "key minus a byte"),
        ] {
            let body = body.clone().map_or(Body::None, Body::Json);
            cases.push(
                Case::new(&method, &path, body, label)
                    .auth(auth)
                    .expect(StatusCode::UNAUTHORIZED, "invalid_api_key"),
            );
        }
    }
    cases
}

async fn run(app: &TestApp, case: &Case) -> Reply {
    let (method, path) = (case.method.clone(), case.path.as_str());
    let reply = async {
        let header = match (&case.auth, &case.body) {
            (Auth::Good, Body::None) => return app.call(method, path, None).await,
            (Auth::Good, Body::Json(value)) => {
                return app.call(method, path, Some(value.clone())).await;
            }
            (Auth::Good, Body::Raw(bytes)) => {
                return app.call_raw(method, path, bytes.clone()).await;
            }
            (Auth::Missing, _) => None,
            (Auth::Header(value), _) => Some(*value),
        };
        let mut request = app.http.request(method, format!("{}{path}", app.address));
        if let Some(value) = header {
            request = request.header(AUTHORIZATION, value);
        }
        request = match &case.body {
            Body::None => request,
            Body::Json(value) => request.json(value),
            Body::Raw(bytes) => request
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
        };
        send(request).await
    };
    tokio::time::timeout(Duration::from_secs(10), reply)
        .await
        .unwrap_or_else(|_| panic!("{} {}: no answer in 10 s", case.method, case.label))
}

#[tokio::test]
async fn bad_input_on_every_endpoint_is_refused_cleanly_and_changes_nothing() {
    let mut failures = Vec::new();
    let mut total = 0;
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let good = app
            .create_session(json!({
                "user_id": GOOD_USER, "system_prompt": "Be kind.", "temperature": 0.3,
                "context_window": 7, "ttl_seconds": 600, "metadata": {"plan": "pro"}
            }))
            .await;
        let good_id = good["session_id"].as_str().unwrap().to_string();
        let good_path = format!("/v1/sessions/{good_id}");
        let before = app.call(Method::GET, &good_path, None).await;
        assert_eq!(before.status, StatusCode::OK);
        let keys_before = if backend == Backend::Redis {
            let mut keys = app.keys().await;
            keys.sort();
            keys
        } else {
            Vec::new()
        };

        let cases = all_cases(&good_id);
        let mut request_ids = HashSet::new();
        total += cases.len();
        for case in &cases {
            let reply = run(&app, case).await;
            let what = format!(
                "{backend:?} {} {}… [{}]",
                case.method,
                case.path.chars().take(60).collect::<String>(),
                case.label
            );
            if reply.status.is_server_error() {
                failures.push(format!(
                    "{what}: a server error: {} {}",
                    reply.status, reply.body
                ));
                continue;
            }
            let request_id = reply
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if request_id.is_empty() || !request_ids.insert(request_id) {
                failures.push(format!(
                    "{what}: no X-Request-Id of its own ({})",
                    reply.status
                ));
            }
            let flat = reply.body.is_object()
                && reply.body["error"].is_string()
                && reply.body["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty());
            let field_ok = case
                .field
                .as_ref()
                .is_none_or(|f| reply.body["field"].as_str() == Some(f.as_str()));
            let limit_ok = case.status != StatusCode::PAYLOAD_TOO_LARGE
                || reply.body["limit_bytes"].as_u64() == Some(LIMIT_BYTES);
            if reply.status != case.status
                || reply.error_code() != case.code
                || !flat
                || !field_ok
                || !limit_ok
            {
                failures.push(format!(
                    "{what}: expected {} {} field={:?}, got {} {}",
                    case.status,
                    case.code,
                    case.field,
                    reply.status,
                    reply.body.to_string().chars().take(300).collect::<String>()
                ));
            }
        }

        // Nothing was half-written: the good session is exactly as it was, no bad create
        // left a session or an index behind.
        let after = app.call(Method::GET, &good_path, None).await;
        assert_eq!(after.status, StatusCode::OK, "{backend:?}");
        assert_eq!(
            after.body, before.body,
            "{backend:?}: the session is unchanged"
        );
        let history = app
            .call(Method::GET, &format!("{good_path}/messages"), None)
            .await;
        assert_eq!(history.body["data"], json!([]));
        let owner = app
            .call(
                Method::GET,
                &format!("/v1/users/{GOOD_USER}/sessions"),
                None,
            )
            .await;
        let listed: Vec<&Value> = owner.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["session_id"])
            .collect();
        assert_eq!(listed, vec![&json!(good_id)], "{backend:?}");
        let nobody = app
            .call(Method::GET, &format!("/v1/users/{BAD_USER}/sessions"), None)
            .await;
        assert_eq!(nobody.status, StatusCode::OK);
        assert_eq!(
            nobody.body["data"],
            json!([]),
            "{backend:?}: no bad create stored"
        );
        if backend == Backend::Redis {
            let mut keys_after = app.keys().await;
            keys_after.sort();
            assert_eq!(keys_after, keys_before, "no key was added or removed");
        }

        // The same endpoints still work with good input.
        let status = app.call(Method::GET, "/v1/status", None).await;
        assert_eq!(status.status, StatusCode::OK);
        assert_eq!(status.body["status"], "ok");
        let patched = app
            .call(
                Method::PATCH,
                &good_path,
                Some(json!({"temperature": 2, "ttl_seconds": 2_592_000})),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["temperature"], 2.0);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        total,
        failures.join("\n")
    );
}
