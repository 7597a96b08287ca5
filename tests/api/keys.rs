//! API keys over HTTP: the admin API, expiry, revocation and rotation across instances,
//! and the 401 slow-down.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::config::{Secret, Settings};

use crate::helpers::{ACME_KEY, BACKENDS, Backend, TestApp, spawn_with, test_settings};

pub const ADMIN_KEY: &str = "test-admin-key-0003";

pub fn admin_settings(backend: Backend) -> Settings {
    let mut settings = test_settings(backend, None);
    settings.auth.admin_key = Some(Secret::new(ADMIN_KEY));
    settings
}

/// Makes a key through the admin API; returns its id and plaintext.
pub async fn create_key(app: &TestApp, body: Value) -> (String, String) {
    let reply = app
        .as_tenant(ADMIN_KEY)
        .call(Method::POST, "/v1/admin/keys", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["key_id"].as_str().unwrap().to_string();
    (id, reply.body["key"].as_str().unwrap().to_string())
}

pub async fn status_with(app: &TestApp, key: &str) -> StatusCode {
    app.as_tenant(key)
        .call(Method::GET, "/v1/status", None)
        .await
        .status
}

#[tokio::test]
async fn admin_api_makes_lists_rotates_and_revokes_keys_on_both_stores() {
    for backend in BACKENDS {
        let app = spawn_with(admin_settings(backend)).await;
        let admin = app.as_tenant(ADMIN_KEY);
        let body = json!({"name": "web", "tenant": "initech", "rate_limit_rpm": 100, "daily_budget_usd": 2.5});
        let as_acme = app
            .call(Method::POST, "/v1/admin/keys", Some(body.clone()))
            .await;
        assert_eq!(
            as_acme.status,
            StatusCode::FORBIDDEN,
            "{backend:?}: a tenant key is not admin"
        );
        let nobody = app
            .as_tenant("wrong")
            .call(Method::GET, "/v1/admin/keys", None)
            .await;
        assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
        let bad = admin
            .call(
                Method::POST,
                "/v1/admin/keys",
                Some(json!({"name": "x", "tenant": "a b"})),
            )
            .await;
        assert_eq!(bad.body["field"], "tenant");
        assert_eq!(
            status_with(&app, ADMIN_KEY).await,
            StatusCode::FORBIDDEN,
            "admin is no tenant"
        );

        let (key_id, key) = create_key(&app, body).await;
        assert!(key.starts_with("sr_"), "{key}");
        assert_eq!(status_with(&app, &key).await, StatusCode::OK);
        let session = app.as_tenant(&key).create_session(json!({})).await;
        let path = format!("/v1/sessions/{}", session["session_id"].as_str().unwrap());
        assert_eq!(
            app.call(Method::GET, &path, None).await.status,
            StatusCode::NOT_FOUND
        );

        let listed = admin
            .call(Method::GET, "/v1/admin/keys?tenant=initech", None)
            .await;
        let entry = &listed.body["data"][0];
        assert_eq!(entry["key_id"], key_id.as_str());
        assert_eq!(entry["daily_budget_usd"], 2.5);
        assert!(key.starts_with(entry["prefix"].as_str().unwrap()));
        assert!(entry.get("key").is_none() && !listed.body.to_string().contains(&key[16..]));

        let rotate = format!("/v1/admin/keys/{key_id}/rotate");
        let rotated = admin
            .call(Method::POST, &rotate, Some(json!({"grace_seconds": 1})))
            .await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        let new_key = rotated.body["key"].as_str().unwrap().to_string();
        assert_eq!(rotated.body["retiring"].as_array().unwrap().len(), 1);
        assert_eq!(
            status_with(&app, &key).await,
            StatusCode::OK,
            "{backend:?}: grace"
        );
        assert_eq!(status_with(&app, &new_key).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            status_with(&app, &key).await,
            StatusCode::UNAUTHORIZED,
            "{backend:?}: grace over"
        );
        assert_eq!(status_with(&app, &new_key).await, StatusCode::OK);

        let revoke = format!("/v1/admin/keys/{key_id}");
        assert_eq!(
            admin.call(Method::DELETE, &revoke, None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            status_with(&app, &new_key).await,
            StatusCode::UNAUTHORIZED,
            "at once here"
        );
        let again = admin.call(Method::DELETE, &revoke, None).await;
        assert_eq!(
            (again.status, again.error_code()),
            (StatusCode::NOT_FOUND, "key_not_found")
        );
        assert_eq!(
            status_with(&app, ACME_KEY).await,
            StatusCode::OK,
            "static keys still work"
        );
    }
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let app = spawn_with(admin_settings(Backend::Memory)).await;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let (_, key) = create_key(
        &app,
        json!({"name": "temp", "tenant": "acme", "expires_at": soon}),
    )
    .await;
    assert_eq!(status_with(&app, &key).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(status_with(&app, &key).await, StatusCode::UNAUTHORIZED);
}

/// Polls until `key` is refused; returns how long that took.
async fn refused_within(app: &TestApp, key: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while status_with(app, key).await == StatusCode::OK {
        assert!(
            started.elapsed() < limit,
            "still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn revocation_and_rotation_reach_every_instance() {
    let settings = admin_settings(Backend::Redis);
    let (a, b) = (
        spawn_with(settings.clone()).await,
        spawn_with(settings).await,
    );
    let (key_id, key) = create_key(&a, json!({"name": "shared", "tenant": "acme"})).await;
    assert_eq!(
        status_with(&b, &key).await,
        StatusCode::OK,
        "B knows it (and caches it)"
    );
    let reply = a
        .as_tenant(ADMIN_KEY)
        .call(Method::DELETE, &format!("/v1/admin/keys/{key_id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    refused_within(&b, &key, Duration::from_secs(1)).await;

    let (key_id, old) = create_key(&a, json!({"name": "rotating", "tenant": "acme"})).await;
    assert_eq!(status_with(&b, &old).await, StatusCode::OK);
    let rotated = a
        .as_tenant(ADMIN_KEY)
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{key_id}/rotate"),
            Some(json!({"grace_seconds": 2})),
        )
        .await;
    let new = rotated.body["key"].as_str().unwrap().to_string();
    assert_eq!(
        status_with(&b, &new).await,
        StatusCode::OK,
        "the new key works on B at once"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        status_with(&b, &old).await,
        StatusCode::OK,
        "within the grace period"
    );
    let took = refused_within(&b, &old, Duration::from_millis(1500)).await;
    assert!(
        took > Duration::from_millis(500),
        "refused only once the grace ended"
    );
    assert_eq!(status_with(&b, &new).await, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_slowed_down_within_bounds() {
    let mut settings = admin_settings(Backend::Memory);
    settings.auth.failed_auth_max_delay_ms = 200;
    let app = spawn_with(settings).await;
    let wrong = app.as_tenant("sr_0123456789ab_not-a-real-secret");
    let mut last = Duration::ZERO;
    for _ in 0..15 {
        let started = Instant::now();
        assert_eq!(
            wrong.call(Method::GET, "/v1/status", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        last = started.elapsed();
    }
    assert!(
        last >= Duration::from_millis(200),
        "the 15th failure waited {last:?}"
    );
    assert!(last < Duration::from_millis(1000), "bounded: {last:?}");
    let started = Instant::now();
    assert_eq!(status_with(&app, ACME_KEY).await, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "a good key is not slowed"
    );
}
