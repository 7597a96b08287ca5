//! No plaintext key or client token anywhere in Redis, and none (nor message content)
//! in the logs of the real binary.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{ACME_KEY, Backend, TestApp, spawn_logged, spawn_with},
    keys::{ADMIN_KEY, admin_settings, create_key, status_with},
    redis_server::RedisServer,
};

/// Every value of every key under the app's prefix: `DUMP` and a typed read of each.
async fn everything_in_redis(app: &TestApp) -> Vec<u8> {
    let mut conn = app.redis().await;
    let mut bytes = Vec::new();
    for key in app.keys().await {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        bytes.extend(dump);
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let read = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
            _ => redis::cmd("SMEMBERS").arg(&key).clone(),
        };
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![read.query_async(&mut conn).await.unwrap()],
            _ => read.query_async(&mut conn).await.unwrap(),
        };
        bytes.extend(values.concat());
        bytes.extend(key.as_bytes());
    }
    bytes
}

/// What no one may learn: a client token ends in its (not secret) session id.
fn secret_part(secret: &str) -> &str {
    match secret.strip_prefix("srt_") {
        Some(token) => &token[..64],
        None => &secret[secret.len() - 16..],
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_plaintext_key_or_token_is_stored_in_redis() {
    let app = spawn_with(admin_settings(Backend::Redis)).await;
    let (key_id, key) = create_key(&app, json!({"name": "n", "tenant": "acme", "rate_limit_rpm": 1000, "rate_limit_tpm": 100000, "daily_budget_usd": 1.0})).await;
    let rotated = app
        .as_tenant(ADMIN_KEY)
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{key_id}/rotate"),
            None,
        )
        .await;
    let new_key = rotated.body["key"].as_str().unwrap().to_string();
    let tenant = app.as_tenant(&new_key);
    let id = tenant.new_session_id().await;
    let token = tenant
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/client_tokens"),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = app
        .as_tenant(&token)
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": "hi"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let stored = everything_in_redis(&app).await;
    assert!(stored.len() > 1000, "the scan saw the data");
    for secret in [&key, &new_key, &token, ADMIN_KEY, ACME_KEY] {
        // The secret part alone, too: no encoding of the whole key hides it.
        let part = secret_part(secret);
        assert!(
            !contains(&stored, secret) && !contains(&stored, part),
            "found {part}"
        );
    }
}

/// Runs the real binary at the most verbose level (trace, dependencies included) through
/// every way a secret could reach a log.
#[tokio::test]
async fn no_key_token_or_content_reaches_the_logs() {
    let redis = RedisServer::shared().url();
    let prefix = format!("tlog{}", &session_relay::domain::session::new_id()[..10]);
    let env = [
        ("REDIS_URL", redis),
        ("SESSION_RELAY_KEY_PREFIX", prefix),
        ("SESSION_RELAY_ADMIN_KEY", ADMIN_KEY.to_string()),
        ("SESSION_RELAY_API_TENANT", "acme".to_string()),
        ("SESSION_RELAY_LOG_LEVEL", "trace".to_string()),
    ];
    let service = spawn_logged(&env).await;
    let app = &service.app;
    let secrets = exercise_every_credential(app).await;
    let logs = service.stop().await;
    assert!(
        logs.contains("API key revoked"),
        "the logs were captured:\n{logs}"
    );
    // Request spans name the tenant and the model; store calls have spans of their own.
    for field in [
        r#""tenant":"acme""#,
        r#""model":"echo""#,
        r#""name":"redis""#,
    ] {
        assert!(logs.contains(field), "no {field} in the logs:\n{logs}");
    }
    for secret in secrets
        .iter()
        .map(String::as_str)
        .chain([ADMIN_KEY, ACME_KEY, SECRET_CONTENT])
    {
        assert!(
            !logs.contains(secret_part(secret)),
            "a secret is in the logs"
        );
    }
    assert!(
        !logs.to_lowercase().contains("bearer "),
        "an Authorization header is in the logs"
    );
}

const SECRET_CONTENT: &str = "my card number is 4111-1111-1111-1111";

/// Makes, uses, rotates, misuses and revokes keys and a client token; returns the secrets.
async fn exercise_every_credential(app: &TestApp) -> Vec<String> {
    let (key_id, key) = create_key(
        app,
        json!({"name": "logged", "tenant": "acme", "rate_limit_rpm": 1000}),
    )
    .await;
    let rotated = app
        .as_tenant(ADMIN_KEY)
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{key_id}/rotate"),
            None,
        )
        .await;
    let new_key = rotated.body["key"].as_str().unwrap().to_string();
    let id = app.as_tenant(&new_key).new_session_id().await;
    let token = app
        .as_tenant(&key)
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/client_tokens"),
            None,
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let send = format!("/v1/sessions/{id}/messages");
    let as_token = app.as_tenant(&token);
    let sent = as_token
        .call(
            Method::POST,
            &send,
            Some(json!({"content": SECRET_CONTENT})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    assert_eq!(
        as_token
            .call(Method::GET, "/v1/admin/keys", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let last = if new_key.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &new_key[..new_key.len() - 1]);
    assert_eq!(status_with(app, &wrong).await, StatusCode::UNAUTHORIZED);
    let revoke = format!("/v1/admin/keys/{key_id}");
    app.as_tenant(ADMIN_KEY)
        .call(Method::DELETE, &revoke, None)
        .await;
    assert_eq!(status_with(app, &new_key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        as_token.call(Method::GET, &send, None).await.status,
        StatusCode::UNAUTHORIZED,
        "dies with its key"
    );
    vec![key, new_key, token, wrong]
}
