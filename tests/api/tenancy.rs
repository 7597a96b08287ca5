//! Tenant isolation across every session endpoint, and client tokens: one session's read
//! and send endpoints, nothing else, and dead with their session.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{BACKENDS, Backend, GLOBEX_KEY, TestApp, spawn_with},
    keys::{ADMIN_KEY, admin_settings},
    limits::{send, start_fake, with_fake},
};

#[tokio::test]
async fn another_tenant_finds_nothing_changes_nothing_and_calls_nothing() {
    for backend in BACKENDS {
        let fake = start_fake(10, 5).await;
        let app = spawn_with(with_fake(admin_settings(backend), &fake)).await;
        let created = app
            .create_session(json!({"model": "fake-gpt", "user_id": "u1", "metadata": {"k": "v"}}))
            .await;
        let id = created["session_id"].as_str().unwrap();
        assert_eq!(
            send(&app, id, json!({"content": "mine"})).await.status,
            StatusCode::OK
        );
        let before = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await
            .body;
        let globex = app.as_tenant(GLOBEX_KEY);
        let s = format!("/v1/sessions/{id}");
        let table = [
            (Method::GET, s.clone(), None),
            (
                Method::PATCH,
                s.clone(),
                Some(json!({"metadata": {"k": "stolen"}})),
            ),
            (Method::POST, format!("{s}/touch"), None),
            (Method::GET, format!("{s}/messages"), None),
            (
                Method::POST,
                format!("{s}/messages"),
                Some(json!({"content": "theirs"})),
            ),
            (
                Method::POST,
                format!("{s}/messages"),
                Some(json!({"content": "theirs", "stream": true})),
            ),
            (Method::GET, format!("{s}/context"), None),
            (Method::POST, format!("{s}/client_tokens"), None),
            (Method::GET, format!("{s}/export"), None),
            (Method::DELETE, s.clone(), None),
        ];
        for (method, path, body) in table {
            let reply = globex.call(method.clone(), &path, body).await;
            assert_eq!(
                (reply.status, reply.error_code()),
                (StatusCode::NOT_FOUND, "session_not_found"),
                "{backend:?} {method} {path}"
            );
        }
        let listed = globex
            .call(Method::GET, "/v1/users/u1/sessions", None)
            .await;
        assert_eq!(listed.body["data"], json!([]));
        // The same user id exports A's session for A, nothing for B.
        let theirs = app.call(Method::GET, "/v1/users/u1/export", None).await;
        assert_eq!(theirs.body["session_id"], json!(id), "{backend:?}");
        let exported = globex.call(Method::GET, "/v1/users/u1/export", None).await;
        assert_eq!(
            (exported.status, exported.body),
            (StatusCode::OK, Value::Null),
            "{backend:?}: an empty export"
        );
        let usage = globex.call(Method::GET, "/v1/usage", None).await;
        assert_eq!(
            usage.body["data"],
            json!([]),
            "{backend:?}: usage is per tenant"
        );
        assert_eq!(
            globex
                .call(Method::GET, "/v1/admin/keys", None)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        let after = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await
            .body;
        assert_eq!(after, before, "{backend:?}: A's session is unchanged");
        assert_eq!(fake.calls(), 1, "{backend:?}: no upstream call for B");
    }
}

async fn token_for(app: &TestApp, id: &str, body: Option<Value>) -> String {
    let reply = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/client_tokens"),
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert!(reply.body["expires_at"].is_string());
    reply.body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_client_token_acts_for_its_session_only_and_dies_with_it() {
    for backend in BACKENDS {
        let mut settings = admin_settings(backend);
        settings.server.cors_allowed_origins = vec!["https://app.example.com".into()];
        let app = spawn_with(settings).await;
        let id = app.create_session(json!({"user_id": "u1"})).await["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        let other = app.new_session_id().await;
        let browser = app.as_tenant(&token_for(&app, &id, None).await);
        let s = format!("/v1/sessions/{id}");
        assert_eq!(
            send(&browser, &id, json!({"content": "hello"}))
                .await
                .status,
            StatusCode::OK
        );
        let stream = browser
            .http
            .post(format!("{}{s}/messages", app.address))
            .bearer_auth(&browser.key)
            .json(&json!({"content": "again", "stream": true}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(stream.contains("event: done"), "{backend:?}: {stream}");
        for path in [s.clone(), format!("{s}/messages"), format!("{s}/context")] {
            assert_eq!(
                browser.call(Method::GET, &path, None).await.status,
                StatusCode::OK,
                "{path}"
            );
        }
        let history = browser
            .call(Method::GET, &format!("{s}/messages"), None)
            .await;
        assert_eq!(history.body["data"].as_array().unwrap().len(), 4);
        let o = format!("/v1/sessions/{other}");
        let forbidden = [
            (Method::GET, o.clone()),
            (Method::POST, format!("{o}/messages")),
            (Method::PATCH, s.clone()),
            (Method::DELETE, s.clone()),
            (Method::POST, format!("{s}/touch")),
            (Method::POST, format!("{s}/client_tokens")),
            (Method::POST, "/v1/sessions".into()),
            (Method::GET, "/v1/users/u1/sessions".into()),
            (Method::GET, "/v1/admin/keys".into()),
            (Method::GET, "/v1/usage".into()),
            (Method::GET, "/v1/status".into()),
            (Method::POST, "/v1/sessions/import".into()),
            (Method::GET, format!("{s}/export")),
        ];
        for (method, path) in forbidden {
            let reply = browser
                .call(method.clone(), &path, Some(json!({"content": "x"})))
                .await;
            assert_eq!(
                (reply.status, reply.error_code()),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{backend:?} {method} {path}"
            );
        }
        let preflight = app
            .http
            .request(Method::OPTIONS, format!("{}{s}/messages", app.address))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );

        let short = app.as_tenant(&token_for(&app, &id, Some(json!({"ttl_seconds": 1}))).await);
        assert_eq!(
            short.call(Method::GET, &s, None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.call(Method::DELETE, &s, None).await.status,
            StatusCode::NO_CONTENT
        );
        let dead = browser.call(Method::GET, &s, None).await;
        assert_eq!(
            dead.status,
            StatusCode::UNAUTHORIZED,
            "{backend:?}: dead with its session"
        );
        if backend == Backend::Redis {
            assert!(
                app.session_keys(&id).await.is_empty(),
                "the tokens went with the session"
            );
        }
        let id = app.new_session_id().await;
        let short = app.as_tenant(&token_for(&app, &id, Some(json!({"ttl_seconds": 1}))).await);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let expired = short
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(
            expired.status,
            StatusCode::UNAUTHORIZED,
            "{backend:?}: expired"
        );
        let admin = app.as_tenant(ADMIN_KEY);
        assert_eq!(
            admin
                .call(Method::GET, &format!("/v1/sessions/{id}"), None)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
}
